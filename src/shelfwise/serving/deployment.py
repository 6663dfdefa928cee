"""The models a serving process holds, swapped as one reference.

``LiveModels.current`` is a frozen ``Deployment`` (active version, optional candidate). A request
reads it once and uses that snapshot throughout, so activation or rollback — which build a new
``Deployment`` and assign it in one statement — never shows a request half of one model and half
of another. Loaded versions are kept (the last ``keep``), so rolling back to one is a pointer
write plus that assignment. Other processes notice a new pointer through ``sync`` (a watcher
thread calls it every ``interval`` seconds).

Canary routing hashes the user id (sha256) into 10,000 buckets: the same shopper always lands on
the same side, and ``percent`` of shoppers see the candidate.
"""

from __future__ import annotations

import gc
import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp

from shelfwise.features.dataset import IdMap
from shelfwise.recommend.base import Recommender
from shelfwise.registry.toplists import TopLists, covers, load_top_lists
from shelfwise.registry.versions import (
    ERASED_PREFIX,
    Candidate,
    LoadedVersion,
    ModelRegistry,
    Pointer,
    Precomputed,
    check_store,
    tombstone_ids,
)
from shelfwise.serving.signals import ErasureCounter

Role = Literal["active", "canary", "shadow"]
BUCKETS = 10_000


def canary_bucket(user_id: str) -> int:
    """A stable bucket in ``[0, 10000)`` for a user id."""
    return (
        int.from_bytes(hashlib.sha256(user_id.encode("utf-8", "surrogatepass")).digest()[:8], "big") % BUCKETS
    )


def in_canary(user_id: str, percent: float) -> bool:
    return canary_bucket(user_id) < round(percent * BUCKETS / 100.0)


def top_overlap(a: list[str], b: list[str], k: int = 10) -> float:
    """Share of the first ``k`` items two lists have in common (1.0 for two empty lists)."""
    sa, sb = set(a[:k]), set(b[:k])
    denom = max(len(sa), len(sb))
    return len(sa & sb) / denom if denom else 1.0


@dataclass(frozen=True)
class Deployment:
    active: LoadedVersion
    candidate: LoadedVersion | None = None
    candidate_mode: Literal["shadow", "canary"] | None = None
    percent: float = 0.0

    def route(self, user_id: str | None) -> tuple[LoadedVersion, Role]:
        """Which version answers this user."""
        if (
            self.candidate is not None
            and self.candidate_mode == "canary"
            and user_id is not None
            and in_canary(user_id, self.percent)
        ):
            return self.candidate, "canary"
        return self.active, "active"

    @property
    def shadow(self) -> LoadedVersion | None:
        return self.candidate if self.candidate_mode == "shadow" else None


def forget_user_in_model(model: Recommender, user_id: str) -> bool:
    """Remove a user from a model in memory: their rows of history and exclusions are emptied,
    their id is replaced by a tombstone and any per-user arrays (factors) are zeroed. Returns
    whether the model knew them."""
    st = model.state
    idx = int(st.user_map.to_internal([user_id], strict=False)[0])
    if idx < 0:
        return False
    n_users = len(st.user_map)
    keep = np.ones(n_users, np.float32)
    keep[idx] = 0
    mask = sp.diags(keep)
    history = sp.csr_matrix(mask @ st.history)
    history.eliminate_zeros()
    seen = sp.csr_matrix(mask @ st.seen)
    seen.eliminate_zeros()
    arrays = model._arrays()
    changed = {}
    for name, arr in arrays.items():
        if name.startswith("user") and getattr(arr, "ndim", 0) >= 1 and arr.shape[0] == n_users:
            arr = np.array(arr, copy=True)
            arr[idx] = 0
            changed[name] = arr
    # each assignment is atomic; a request in flight sees the old or the new matrix, both consistent
    st.history = history
    st.seen = seen
    st.user_map = IdMap(tombstone_ids(st.user_map.external, idx))
    if changed:
        model._set_arrays({**arrays, **changed})
    return True


def _stored_lists(loaded: LoadedVersion, k: int) -> TopLists | None:
    """The version's precomputed top lists (``registry.toplists``) when they are long enough and
    match the model's users; None sends the precompute back to scoring."""
    if loaded.info.path is None:
        return None
    lists = load_top_lists(loaded.info.path)
    return lists if covers(lists, k, loaded.recommender) else None


def settle_heap() -> None:
    """One full collection, then every object alive moves to the collector's permanent generation
    (``gc.freeze``). A serving process holds a few hundred thousand long-lived objects (models, id
    maps, precomputed lists); left in the oldest generation, each full collection walks them all,
    tens of milliseconds with the interpreter lock held, which a request then waits for (issue 14:
    one uncached recommendation in a hundred took 4-6x the median). Called when a version has been
    loaded and its lists precomputed; what was frozen before is thawed first, so a version retired
    since is still collected."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


class LiveModels:
    """The serving process's view of the registry; see the module docstring."""

    def __init__(
        self,
        registry: ModelRegistry,
        *,
        keep: int = 3,
        precompute_users: int = 20_000,
        precompute_k: int = 50,
        store_id: str | None = None,
    ) -> None:
        self.registry = registry
        self.store_id = store_id  # versions trained on another store are refused (``check_store``)
        self.keep = keep
        self.current: Deployment | None = None
        # when (Unix time) this process began answering with the current active version: what a
        # drill compares with the moment it asked for a release or a rollback (``/healthz``)
        self.serving_since: float | None = None
        self._loaded: OrderedDict[str, LoadedVersion] = OrderedDict()
        self._lock = threading.RLock()
        self._stamp: tuple[int, int] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None
        self.erasures = ErasureCounter(registry)
        self._erasure_stamp = self.erasures.stamp()
        self.on_erasure: list[Callable[[], None]] = []  # told when another process erased someone
        self.on_tick: list[Callable[[], None]] = []  # run by the watcher at every interval
        self.precompute_users, self.precompute_k = precompute_users, precompute_k
        self._precomputing: set[str] = set()
        self._warm: dict[str, threading.Event] = {}  # per version: set once its precompute ended
        # users scored per model call while precomputing: small batches let request threads in
        # between them, and the hybrid keeps which retriever proposed each item (its reasons) only
        # for calls of at most 32 rows; above that it ranks every retriever again per shopper
        self.precompute_batch = 8
        # requests in flight (set by the container): the precompute waits for them between
        # batches, at most ``precompute_yield_s`` a batch so it still ends under steady traffic
        self.busy: Callable[[], bool] = lambda: False
        self.precompute_yield_s = 0.25

    # --- loading --------------------------------------------------------------------------------
    def _get(self, version: str) -> LoadedVersion:
        with self._lock:
            loaded = self._loaded.get(version)
            if loaded is None:
                check_store(self.registry.info(version), self.store_id)  # before the cost of loading
                loaded = self.registry.load(version)  # verifies every checksum first
                self._loaded[version] = loaded
            self._loaded.move_to_end(version)
            pinned = {version}
            if self.current is not None:
                pinned.add(self.current.active.version)
            for old in list(self._loaded):
                if len(self._loaded) <= self.keep:
                    break
                if old not in pinned:
                    del self._loaded[old]
            return loaded

    def loaded(self, version: str) -> LoadedVersion | None:
        """The version when it is in memory already (never loads: the request path asks)."""
        return self._loaded.get(version)

    def preload(self, version: str) -> None:
        """Load (and verify) a version ahead of need, e.g. the previous one for instant rollback."""
        self._get(version)

    def _deploy(self, pointer: Pointer) -> Deployment | None:
        if pointer.active is None:
            return None
        active = self._get(pointer.active)
        cand: Candidate | None = pointer.candidate
        candidate = self._get(cand.version) if cand is not None else None
        return Deployment(
            active=active,
            candidate=candidate,
            candidate_mode=cand.mode if cand is not None else None,
            percent=cand.percent if cand is not None else 0.0,
        )

    def sync(self, *, force: bool = False) -> Deployment | None:
        """Follow the registry's pointer if it changed; a version that fails to load (corrupt) is
        not deployed and the current deployment stays."""
        with self._lock:
            self._follow_erasures()
            stamp = self.registry.pointer_stamp()
            if not force and stamp == self._stamp and self.current is not None:
                return self.current
            pointer = self.registry.pointer()
            try:
                deployment = self._deploy(pointer)
            except Exception as exc:  # a corrupt version never replaces a working one
                self.last_error = str(exc)
                self._stamp = stamp
                raise
            self._stamp = stamp
            self.last_error = None
            before = self.current.active.version if self.current is not None else None
            if deployment is not None and deployment.active.version != before:
                # stamped before the swap: whoever sees the new version sees its stamp
                self.serving_since = time.time()
            self.current = deployment  # the one swap every request sees
            if deployment is not None:
                self._precompute(deployment.active)
            if pointer.history:
                previous = pointer.history[-1]
                if previous not in self._loaded and previous in self.registry.versions():
                    try:
                        self._get(previous)
                    except Exception as exc:  # rollback would then load (and fail) on demand
                        self.last_error = f"previous version {previous}: {exc}"
            return deployment

    # --- operations -----------------------------------------------------------------------------
    def activate(self, version: str) -> Deployment | None:
        with self._lock:
            self._get(version)  # load and verify before the pointer moves
            self.registry.activate(version)
            return self.sync(force=True)

    def rollback(self) -> Deployment | None:
        with self._lock:
            self.registry.rollback()
            return self.sync(force=True)

    def set_candidate(self, candidate: Candidate | None) -> Deployment | None:
        with self._lock:
            if candidate is not None:
                self._get(candidate.version)
            self.registry.set_candidate(candidate)
            return self.sync(force=True)

    def forget_user(self, user_id: str) -> list[str]:
        """Remove a user from every loaded model in memory (and its precomputed list); returns the
        versions that knew them."""
        touched = []
        with self._lock:
            for version, loaded in self._loaded.items():
                hit = [forget_user_in_model(m, user_id) for m in loaded.models.values()]
                hit.append(loaded.precomputed.pop(user_id, None) is not None)
                if any(hit):
                    touched.append(version)
        return touched

    def knows_user(self, user_id: str) -> list[str]:
        """Loaded versions whose in-memory models (or precomputed lists) still hold this user."""
        with self._lock:
            return [
                v
                for v, loaded in self._loaded.items()
                if user_id in loaded.precomputed
                or any(user_id in m.state.user_map.index for m in loaded.models.values())
            ]

    # --- erasures by other processes ------------------------------------------------------------
    def _follow_erasures(self) -> None:
        """Another process erased someone (the registry's erasure counter moved): every loaded
        version's artifacts on disk already carry tombstones for them, so forget in memory each
        user whose id on disk is now a tombstone, then tell ``on_erasure`` listeners (caches)."""
        stamp = self.erasures.stamp()
        if stamp == self._erasure_stamp:
            return
        self._erasure_stamp = stamp
        for loaded in self._loaded.values():
            path = loaded.info.path
            if path is None:
                continue
            for component, model in loaded.models.items():
                ids_file = path / component / "user_ids.npy"
                if not ids_file.is_file():
                    continue
                disk = np.load(ids_file, allow_pickle=False)
                memory = model.state.user_map.external
                if len(disk) != len(memory):
                    continue
                gone = (disk != memory) & np.char.startswith(disk.astype(str), ERASED_PREFIX)
                for user_id in memory[gone].tolist():
                    forget_user_in_model(model, str(user_id))
                    loaded.precomputed.pop(str(user_id), None)
        for listener in self.on_erasure:
            try:
                listener()
            except Exception as exc:  # a listener's failure must not stop the watcher
                self.last_error = f"erasure listener: {exc}"

    # --- precomputed lists ----------------------------------------------------------------------
    def _precompute(self, loaded: LoadedVersion) -> None:
        """Fill ``loaded.precomputed`` in a background thread: the recommender's unfiltered top
        ``precompute_k`` for its most active ``precompute_users`` users, so a request with no
        session, context or filters is a slice (as Gorse serves from its offline cache). A user
        erased meanwhile is never added (checked under the lock)."""
        if self.precompute_users <= 0 or loaded.precomputed or loaded.version in self._precomputing:
            return
        self._precomputing.add(loaded.version)
        warm = self._warm.setdefault(loaded.version, threading.Event())
        warm.clear()

        def build() -> None:
            try:
                model = loaded.recommender
                st = model.state
                activity = np.diff(st.history.indptr)
                rows = np.argsort(-activity, kind="stable")[: self.precompute_users]
                rows = rows[activity[rows] > 0]
                users = st.user_map.external[rows].tolist()
                stored = _stored_lists(loaded, self.precompute_k)
                step = self.precompute_batch
                for start in range(0, len(users), step):
                    if self._stop.is_set():
                        return
                    waited = 0.0
                    while self.busy() and waited < self.precompute_yield_s:
                        time.sleep(0.002)
                        waited += 0.002
                    batch = [str(u) for u in users[start : start + step]]
                    if stored is not None:  # batch scoring kept them with the version: slice them
                        recs = [
                            model._package(
                                u,
                                stored.items[r, : self.precompute_k],
                                stored.scores[r, : self.precompute_k],
                                st.history.indices[st.history.indptr[r] : st.history.indptr[r + 1]],
                            )
                            for u, r in zip(batch, rows[start : start + step].tolist(), strict=True)
                        ]
                    else:
                        recs = model.recommend(batch, self.precompute_k)
                    items = model.state.item_map.index
                    ready = [
                        Precomputed(rec, np.fromiter((items[i] for i in rec.items), np.int64, len(rec.items)))
                        for rec in recs
                        if rec.items
                    ]
                    with self._lock:
                        known = model.state.user_map.index
                        for pre in ready:
                            if pre.rec.user in known:
                                loaded.precomputed[pre.rec.user] = pre
                    time.sleep(0.001)  # let request threads in between batches
            except Exception as exc:  # requests then take the model path, as before
                self.last_error = f"precompute {loaded.version}: {exc}"
            finally:
                self._precomputing.discard(loaded.version)
                if not self._stop.is_set():
                    settle_heap()  # the lists are long-lived: out of the collector's way
                warm.set()

        threading.Thread(target=build, name="shelfwise-precompute", daemon=True).start()

    def wait_warm(self, timeout: float) -> bool:
        """Wait at most ``timeout`` seconds for the active version's precomputed lists (True: built,
        or none to build)."""
        current = self.current
        if current is None:
            return True
        warm = self._warm.get(current.active.version)
        return warm is None or warm.wait(timeout)

    @property
    def loaded_versions(self) -> list[str]:
        return list(self._loaded)

    def loaded_models(self) -> list[Recommender]:
        """Every model of every loaded version (e.g. to mark an item unavailable in all of them)."""
        with self._lock:
            return [m for loaded in self._loaded.values() for m in loaded.models.values()]

    # --- watching other processes ---------------------------------------------------------------
    def start_watching(self, interval: float = 0.5, pointer_interval: float = 0.1) -> None:
        """Follow the registry's pointer every ``pointer_interval`` seconds (two ``stat`` calls
        when nothing changed) and run the ``on_tick`` listeners every ``interval``. A release or a
        rollback made through another process is served here at most ``pointer_interval`` later
        (it was ``interval``: half of the drill's 1 s rollback budget went to waiting for it)."""
        if self._thread is not None:
            return
        step = min(interval, pointer_interval)

        def loop() -> None:
            ticked = time.monotonic()
            while not self._stop.wait(step):
                try:
                    self.sync()
                except Exception as exc:
                    self.last_error = str(exc)
                if time.monotonic() - ticked < interval:
                    continue
                ticked = time.monotonic()
                for listener in self.on_tick:
                    try:
                        listener()
                    except Exception as exc:
                        self.last_error = f"watcher: {exc}"

        self._thread = threading.Thread(target=loop, name="shelfwise-registry-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
