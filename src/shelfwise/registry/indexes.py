"""Search index versions: built from the store's catalogue, checksummed, gated, activated and rolled
back like model versions.

Layout under the root (``var/indexes`` by default)::

    <version>/index.json          id, mode, catalogue fingerprint, items, metrics, gate, sha256 of every file
    <version>/engine/...          ``SearchEngine.save`` output (items, keyword index, vectors, config)
    <version>/ranker/...          the learned search ranker (``mode == "ltr"`` only)
    ACTIVE.json                   {"active": id, "history": [older ids]}

The served mode (``bm25``, ``hybrid`` or ``ltr``) belongs to the version, and every search answer
names the version it came from. Item vectors come from the on-disk embedding cache keyed by each
item's text (``search/embedding_cache.py``): a new version embeds only new or changed items.

A labelled set (queries + graded judgments) gates a version: its nDCG@10 on the set must reach the
active version's on the same set (``tolerance`` below it at most), else ``GateRefusedError``; with no
labelled set the version is registered with ``gate: {"labelled": false}`` and activated.

    >>> reg = IndexRegistry(Path("var/indexes"))                              # doctest: +SKIP
    >>> info = reg.build(items, mode="hybrid", embeddings=Path("var/embeddings"))  # doctest: +SKIP
    >>> engine = reg.load(reg.active)                                          # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from filelock import FileLock, Timeout

from shelfwise.core.clock import now_ms
from shelfwise.data.schemas import Item
from shelfwise.registry.versions import (
    CorruptArtifactError,
    GateRefusedError,
    ModelRegistry,
    Pointer,
    RegistryError,
    sha256_file,
    write_json_atomic,
)
from shelfwise.search.engine import SearchConfig, SearchEngine

INDEX_FILE = "index.json"
BUILD_LOCK = ".build.lock"
BUILD_TIMEOUT_S = 1800.0  # a hybrid index over a big catalogue embeds for minutes on a first start
FORMAT = 1
ServedMode = Literal["bm25", "hybrid", "ltr"]
SERVED_MODES: tuple[str, ...] = ("bm25", "hybrid", "ltr")
ProgressFn = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Labelled:
    """A labelled query set: ``queries`` {qid: text}, ``qrels`` {qid: {item_id: grade}}."""

    name: str
    queries: Mapping[str, str]
    qrels: Mapping[str, Mapping[str, int]]

    @property
    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for qid in sorted(self.queries):
            h.update(f"{qid}\t{self.queries[qid]}\n".encode())
            for item, grade in sorted(self.qrels.get(qid, {}).items()):
                h.update(f"{item}={grade};".encode())
        return h.hexdigest()[:16]


@dataclass(frozen=True)
class IndexInfo:
    version: str
    mode: str
    items: int
    catalogue: str  # fingerprint of the catalogue it was built from
    created_at: str
    metrics: dict[str, Any]
    gate: dict[str, Any]
    embedded: int  # items whose vectors were computed for this version (the rest came from the cache)
    files: dict[str, str]
    store_id: str | None
    path: Path

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "path"}
        out["format"] = FORMAT
        return out

    @classmethod
    def from_json(cls, payload: Mapping[str, Any], path: Path) -> IndexInfo:
        fields = {k: payload.get(k) for k in cls.__dataclass_fields__ if k != "path"}
        return cls(**fields, path=path)  # type: ignore[arg-type]


def catalogue_fingerprint(items: Sequence[Item]) -> str:
    """Changes when any item is added, removed or changes a field search reads."""
    h = hashlib.sha256()
    for it in sorted(items, key=lambda i: i.item_id):
        h.update(
            json.dumps(
                [
                    it.item_id,
                    it.title,
                    it.description,
                    it.brand,
                    it.category,
                    it.price,
                    it.available,
                    sorted((it.attributes or {}).items()),
                ],
                default=str,
            ).encode()
        )
    return h.hexdigest()[:16]


class IndexRegistry(ModelRegistry):
    """Search index versions; shares the model registry's pointer, lock and activation rules.
    ``shard_engine``: where a sharded version's shards are held when it is loaded (``threads``: in
    this process; ``ray``: one Ray actor each, shared by every process on the cluster)."""

    def __init__(self, root: Path | str, *, shard_engine: str = "threads") -> None:
        super().__init__(root)
        self.shard_engine = shard_engine

    @contextlib.contextmanager
    def building(self, timeout_s: float = BUILD_TIMEOUT_S) -> Iterator[None]:
        """Held while a version is chosen or built: processes starting together build one version
        (the others wait, then find it active). Apart from the registry lock, which guards quick
        pointer writes only."""
        lock = FileLock(str(self.root / BUILD_LOCK), timeout=timeout_s)
        try:
            lock.acquire()
        except Timeout:
            raise RegistryError(
                f"another process has been building a search index under {self.root} for {timeout_s:.0f} s",
                hint="wait for it, or remove a stale .build.lock if no shelfwise process runs",
            ) from None
        try:
            yield
        finally:
            lock.release()

    def versions(self) -> list[str]:
        return (
            sorted(p.name for p in self.root.iterdir() if (p / INDEX_FILE).is_file())
            if self.root.exists()
            else []
        )

    def index_info(self, version: str) -> IndexInfo:
        path = self.root / version / INDEX_FILE
        if not path.is_file():
            raise RegistryError(
                f"no search index version {version!r}", hint="`shelfwise index list` shows them"
            )
        return IndexInfo.from_json(json.loads(path.read_text()), path.parent)

    def list_indexes(self) -> list[IndexInfo]:
        return [self.index_info(v) for v in self.versions()]

    def verify(self, version: str) -> list[str]:
        info = self.index_info(version)
        problems = []
        for rel, digest in info.files.items():
            f = info.path / rel
            if not f.is_file():
                problems.append(f"{rel}: missing")
            elif sha256_file(f) != digest:
                problems.append(f"{rel}: checksum mismatch")
        return problems

    def load(self, version: str, *, encoder: Any = None) -> SearchEngine:  # type: ignore[override]
        problems = self.verify(version)
        if problems:
            raise CorruptArtifactError(f"search index {version!r} is corrupt: {'; '.join(problems[:5])}")
        info = self.index_info(version)
        engine = SearchEngine.load(info.path / "engine", encoder=encoder, shard_engine=self.shard_engine)
        if (info.path / "ranker").is_dir():
            from shelfwise.search.ltr import LambdaRanker

            engine.ranker = LambdaRanker.load(info.path / "ranker")
        return engine

    def rollback(self) -> Pointer:
        try:
            return super().rollback()
        except RegistryError:
            raise RegistryError("no earlier search index version to roll back to") from None

    def served_versions(self) -> list[str]:
        """The versions a server may answer from now or next: the active one, a shadow or canary
        candidate, and the one ``rollback`` would go back to."""
        pointer, kept = self.pointer(), self.versions()
        back = next((v for v in reversed(pointer.history) if v in kept), None)
        wanted = (pointer.active, pointer.candidate.version if pointer.candidate else None, back)
        return list(dict.fromkeys(v for v in wanted if v))

    def shard_actors(self, *, also_served: Sequence[str] = (), stop: bool = False) -> dict[str, Any]:
        """The Ray shard actors on the cluster (``SHELFWISE_SHARD_ENGINE=ray``): each index they
        hold, by its key, with the versions here it is, its shards, and whether it is served
        (``served_versions`` plus ``also_served``, e.g. the versions experiment arms answer from).
        ``stop``: end the actors of every index not served (an index no version here names
        included: a deleted version, or one of another registry on the cluster, is ended too, so
        run it against the registry the cluster serves). Actors are detached and otherwise live
        until the cluster stops, each holding its shard in memory."""
        from shelfwise.search.shard_actors import index_key, list_actors, stop_actors
        from shelfwise.search.shards import SHARDS_FILE

        keys: dict[str, list[str]] = {}
        for version in self.versions():
            engine_dir = self.root / version / "engine"
            if (engine_dir / SHARDS_FILE).is_file():
                keys.setdefault(index_key(engine_dir), []).append(version)
        served = set(self.served_versions()) | set(also_served)
        keep = frozenset(k for k, versions in keys.items() if served & set(versions))
        held = list_actors()
        rows = [
            {"key": key, "versions": keys.get(key, []), "shards": shards, "served": key in keep}
            for key, shards in held.items()
        ]
        ended = stop_actors(keep=keep) if stop else []
        return {"served_versions": sorted(served), "indexes": rows, "stopped": ended}

    # --- building --------------------------------------------------------------------------------
    def build(
        self,
        items: Sequence[Item],
        *,
        mode: str = "hybrid",
        embeddings: Path | None = None,
        encoder: Any = None,
        labelled: Labelled | None = None,
        tolerance: float = 0.0,
        force: bool = False,
        activate: bool = True,
        store_id: str | None = None,
        progress: ProgressFn | None = None,
        shards: int = 1,
    ) -> IndexInfo:
        """Build, evaluate (when ``labelled``), gate, register and (by default) activate a version.
        ``shards`` > 1: the index is partitioned (``shelfwise.search.shards``), shards built in
        parallel processes and queried by scatter-gather."""
        if mode not in SERVED_MODES:
            raise RegistryError(f"unknown search mode {mode!r}", hint=f"one of {', '.join(SERVED_MODES)}")
        if mode == "ltr" and labelled is None:
            raise RegistryError("mode ltr learns from judgments", hint="give --queries and --qrels")
        if shards < 1 or (shards > 1 and mode == "ltr"):
            raise RegistryError(f"cannot build {shards} shards in mode {mode}", hint="shards >= 1; ltr: 1")
        dense = mode in ("hybrid", "ltr")
        vectors, embedded = None, 0
        if dense:
            from shelfwise.search.dense import DIM, Encoder
            from shelfwise.search.documents import embedding_text
            from shelfwise.search.embedding_cache import EmbeddingCache

            encoder = encoder or Encoder()
            if items:
                cache = EmbeddingCache(
                    embeddings or self.root.parent / "embeddings", f"all-MiniLM-L6-v2/{DIM}"
                )
                vectors = cache.vectors([embedding_text(it) for it in items], encoder.encode)
                embedded = cache.misses
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".building.", dir=self.root))
        try:
            if shards > 1:
                from shelfwise.search.shards import build_sharded

                engine = build_sharded(
                    items,
                    tmp / "engine",
                    shards=shards,
                    config=SearchConfig(dense=dense),
                    encoder=encoder,
                    vectors=vectors,
                )
            else:
                engine = SearchEngine.build(
                    list(items),
                    SearchConfig(dense=dense),
                    encoder=encoder,
                    vectors=vectors,
                    progress=progress,
                )
            return self._register(
                engine,
                tmp,
                items,
                mode=mode,
                labelled=labelled,
                tolerance=tolerance,
                force=force,
                embedded=embedded,
                store_id=store_id,
                activate=activate,
                sharded=shards > 1,
            )
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _register(
        self,
        engine: SearchEngine,
        tmp: Path,
        items: Sequence[Item],
        *,
        mode: str,
        labelled: Labelled | None,
        tolerance: float,
        force: bool,
        embedded: int,
        store_id: str | None,
        activate: bool,
        sharded: bool,
    ) -> IndexInfo:
        if mode == "ltr":
            from shelfwise.search.ltr import LambdaRanker

            assert labelled is not None
            engine.ranker = LambdaRanker().fit(engine, labelled.queries, labelled.qrels)
        metrics: dict[str, Any] = {}
        if labelled is not None and items:
            metrics = evaluate_index(engine, labelled, mode)
        gate = self._gate(metrics, labelled, tolerance=tolerance, force=force)
        version = self.new_version_id(f"index-{mode}")
        try:
            if not sharded:  # a sharded index was saved as it was built
                engine.save(tmp / "engine")
            if engine.ranker is not None and mode == "ltr":
                engine.ranker.save(tmp / "ranker")
            files = {str(p.relative_to(tmp)): sha256_file(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
            info = IndexInfo(
                version=version,
                mode=mode,
                items=len(engine),
                catalogue=catalogue_fingerprint(items),
                created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                metrics=metrics,
                gate=gate,
                embedded=embedded,
                files=files,
                store_id=store_id,
                path=self.root / version,
            )
            write_json_atomic(tmp / INDEX_FILE, info.to_dict())
            tmp.rename(self.root / version)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if activate:
            self.activate(version)
        return info

    def _gate(
        self, metrics: Mapping[str, Any], labelled: Labelled | None, *, tolerance: float, force: bool
    ) -> dict[str, Any]:
        if labelled is None:
            return {"labelled": False, "passed": True}
        gate: dict[str, Any] = {
            "labelled": True,
            "set": labelled.name,
            "fingerprint": labelled.fingerprint,
            "metric": "ndcg@10",
            "candidate": metrics.get("ndcg@10"),
            "active": None,
            "active_version": self.active,
            "tolerance": tolerance,
        }
        if self.active is not None:
            active = self.index_info(self.active)
            same_set = active.gate.get("fingerprint") == labelled.fingerprint
            if same_set and active.metrics.get("ndcg@10") is not None:
                gate["active"] = active.metrics["ndcg@10"]
        gate["passed"] = gate["active"] is None or gate["candidate"] >= gate["active"] - tolerance
        if not gate["passed"] and not force:
            raise GateRefusedError(
                f"search index gate: nDCG@10 {gate['candidate']:.4f} on {labelled.name} is below the active "
                f"version's {gate['active']:.4f}",
                hint="keep the active version, or build with --force to register it anyway",
            )
        return gate


def evaluate_index(engine: SearchEngine, labelled: Labelled, mode: str) -> dict[str, Any]:
    """nDCG@10, MRR@10 and Recall@100 of ``engine`` in ``mode`` on a labelled set (what the
    served search answers, computed in-process)."""
    from shelfwise.search.evaluate import evaluation_report

    report = evaluation_report(
        lambda q: engine.search(q, k=100, mode=mode, facets=False).item_ids,
        dict(labelled.queries),
        {k: dict(v) for k, v in labelled.qrels.items()},
    )
    keep = ("ndcg@10", "mrr@10", "recall@100", "queries")
    return {k: report[k] for k in keep if k in report} | {"set": labelled.name, "at_ms": now_ms()}


def wanted_mode(registry: IndexRegistry, mode: str = "auto") -> str:
    """The mode a served index should have: ``mode``, or for ``auto`` the active version's mode
    (``hybrid`` for a shop's first index)."""
    active = registry.active
    if mode != "auto":
        return mode
    return registry.index_info(active).mode if active is not None else "hybrid"


def current_index(
    registry: IndexRegistry, items: Sequence[Item], mode: str, *, fingerprint: str | None = None
) -> IndexInfo | None:
    """A registered version in ``mode`` built from exactly ``items``: the active one first, then
    the newest inactive one (a keyword version served while a hybrid one was being built)."""
    fingerprint = fingerprint or catalogue_fingerprint(items)
    active = registry.active
    candidates = ([active] if active is not None else []) + sorted(registry.versions(), reverse=True)
    for version in candidates:
        try:
            info = registry.index_info(version)
        except RegistryError:
            continue
        if info.mode == mode and info.catalogue == fingerprint:
            return info
    return None


def ensure_index(
    registry: IndexRegistry,
    items: Sequence[Item],
    *,
    mode: str = "auto",
    embeddings: Path | None = None,
    encoder: Any = None,
    store_id: str | None = None,
    progress: ProgressFn | None = None,
    activate: bool = True,
) -> tuple[SearchEngine, IndexInfo, bool]:
    """The index to serve over ``items``: the active version when it was built from this catalogue
    (and in ``mode``, unless ``mode`` is ``auto``), else a new version built now (the active
    version's mode, or ``hybrid`` for a shop's first index; only new or changed items are embedded).
    With ``activate=False`` (a stand-in served while another version is built) an inactive version
    of the same catalogue and mode is reused, and a new one is registered without activating it.
    Returns (engine, its version, whether it was built now)."""
    active = registry.active
    info = registry.index_info(active) if active is not None else None
    wanted = wanted_mode(registry, mode)
    fingerprint = catalogue_fingerprint(items)
    if not activate:
        info = current_index(registry, items, wanted, fingerprint=fingerprint)
    if info is not None and info.mode == wanted and info.catalogue == fingerprint:
        try:
            return registry.load(info.version, encoder=encoder), info, False
        except CorruptArtifactError:
            pass  # a damaged active version is rebuilt below, never served
    if wanted == "ltr":  # judgments are not in the store: keep the ranker's mode only by an explicit build
        wanted = "hybrid"
    built = registry.build(
        items,
        mode=wanted,
        embeddings=embeddings,
        encoder=encoder,
        store_id=store_id,
        progress=progress,
        activate=activate,
    )
    return registry.load(built.version, encoder=encoder), built, True
