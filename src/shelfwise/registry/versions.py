"""Model versions on disk: one directory per version, checksummed, and an ``ACTIVE.json`` pointer.

Layout under the registry root (``var/models`` by default)::

    <version>/version.json          id, components, config, data window, metrics, sha256 of every file
    <version>/recommender/...       ``Recommender.save`` output (``.npy`` + metadata.json)
    <version>/bought_together/...   the bundles model, when the version has one
    ACTIVE.json                     {"active": id, "history": [older ids], "candidate": {...} | null}

A version directory is written under a temporary name and renamed into place, so a reader sees a
whole version or none. ``ACTIVE.json`` is written to a temporary file and ``os.replace``d, so every
reader sees the old pointer or the new one. Loading verifies every file's sha256 first: a corrupt or
missing artifact raises ``CorruptArtifactError`` and is never loaded.

Every read-modify-write of the registry (activation, rollback, candidates, erasure rewrites, and
the files serving processes signal each other with: ``shelfwise.serving.signals``) runs under one
lock file (``.lock``, with ``filelock``), so two processes doing them at once never lose each
other's change.

Each version records the id of the store it was trained on (``store_id``, see ``Store.store_id``):
a serving process refuses a version bound to another store (``StoreMismatchError``), so one
registry never silently serves a model of another shop's data.

    >>> reg = ModelRegistry(Path("var/models"))                    # doctest: +SKIP
    >>> info = reg.register({"recommender": model}, metrics={...})  # doctest: +SKIP
    >>> reg.activate(info.version); reg.rollback()                  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from filelock import FileLock, Timeout

from shelfwise.core.errors import ConflictError, NotFoundError, ShelfwiseError
from shelfwise.recommend.base import METADATA, Recommendation, Recommender

VERSION_FILE = "version.json"
POINTER = "ACTIVE.json"
LOCK = ".lock"  # held for every read-modify-write of the registry, across processes
LOCK_TIMEOUT_S = 120.0  # an erasure rewriting big versions holds it for seconds, not minutes
FORMAT = 1
COMPONENTS = ("recommender", "bought_together")
ERASED_PREFIX = "~erased~"
CSR_PARTS = ("data", "indices", "indptr")


class RegistryError(ConflictError):
    """A model version cannot be registered, activated or loaded, or the registry is in a bad state."""

    exit_code = 5


class UnknownVersionError(NotFoundError, RegistryError):
    """No version of that id is registered."""


class CorruptArtifactError(RegistryError):
    """A version's file is missing or its sha256 does not match: the version is never loaded."""


class GateRefusedError(RegistryError):
    """The release gate refused a candidate that is worse than the active model on held-out data."""


class StoreMismatchError(RegistryError):
    """A version was trained on another store's data: it is not served over this store."""


def check_store(info: VersionInfo, store_id: str | None) -> None:
    """Refuse a version bound to a store other than ``store_id`` (None: the caller has no store).
    A version registered without a store (before versions were bound, or trained from a file) passes."""
    if store_id is None or info.store_id is None or info.store_id == store_id:
        return
    raise StoreMismatchError(
        f"model version {info.version} was trained on another store (store id {info.store_id[:12]}), "
        f"not on this one ({store_id[:12]}): it is not served here",
        hint="train a version on this store in a registry of its own (SHELFWISE_MODELS_DIR=DIR "
        "shelfwise models train --db URL), or serve the store it was trained on",
    )


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_json_atomic(path: Path, payload: Mapping[str, Any]) -> None:
    """Write JSON to a temporary file in the same directory, fsync it, then ``os.replace`` it."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(payload, indent=2, default=str))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class VersionInfo:
    """What ``version.json`` says about one version."""

    version: str
    created_at: str
    components: dict[str, str]  # component → model name
    config: dict[str, Any]  # component → model config
    metrics: dict[str, Any]
    data_window: dict[str, Any]
    files: dict[str, str]
    parent: str | None = None
    evaluation: dict[str, Any] = field(default_factory=dict)
    erasures: int = 0
    store_id: str | None = None  # the store it was trained on (None: registered unbound)
    path: Path | None = None

    @property
    def model(self) -> str:
        return self.components.get("recommender", next(iter(self.components.values()), "?"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "model": self.model,
            "created_at": self.created_at,
            "components": self.components,
            "config": self.config,
            "metrics": self.metrics,
            "data_window": self.data_window,
            "evaluation": self.evaluation,
            "parent": self.parent,
            "erasures": self.erasures,
            "store_id": self.store_id,
            "files": len(self.files),
        }

    @classmethod
    def from_json(cls, payload: Mapping[str, Any], path: Path | None = None) -> VersionInfo:
        return cls(
            version=payload["version"],
            created_at=payload["created_at"],
            components=dict(payload["components"]),
            config=dict(payload.get("config", {})),
            metrics=dict(payload.get("metrics", {})),
            data_window=dict(payload.get("data_window", {})),
            files=dict(payload["files"]),
            parent=payload.get("parent"),
            evaluation=dict(payload.get("evaluation", {})),
            erasures=int(payload.get("erasures", 0)),
            store_id=payload.get("store_id"),
            path=path,
        )


@dataclass(frozen=True)
class Candidate:
    """A version that sees live traffic beside the active one: ``shadow`` scores every request
    without being shown; ``canary`` answers ``percent`` of users (by a stable hash of their id)."""

    version: str
    mode: Literal["shadow", "canary"]
    percent: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "mode": self.mode, "percent": self.percent}


@dataclass(frozen=True)
class Pointer:
    active: str | None
    history: tuple[str, ...] = ()  # previously active versions, most recent last
    candidate: Candidate | None = None
    updated_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "active": self.active,
            "history": list(self.history),
            "candidate": self.candidate.to_dict() if self.candidate else None,
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True)
class Precomputed:
    """One user's precomputed top list and the model rows of its items (for availability checks)."""

    rec: Recommendation
    rows: np.ndarray


@dataclass
class LoadedVersion:
    """A verified version in memory: its info and its models by component. ``precomputed`` holds
    the recommender's unfiltered top list per known user (pseudonym → ``Recommendation``), filled
    in the background after deployment (``LiveModels``) and emptied of a user on erasure."""

    info: VersionInfo
    models: dict[str, Recommender]
    precomputed: dict[str, Precomputed] = field(default_factory=dict)

    @property
    def version(self) -> str:
        return self.info.version

    @property
    def recommender(self) -> Recommender:
        return self.models["recommender"]

    @property
    def bought_together(self) -> Recommender | None:
        return self.models.get("bought_together")


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class ModelRegistry:
    """Versions under ``root``; see the module docstring. Safe for several processes to read."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._file_lock = FileLock(str(self.root / LOCK), timeout=LOCK_TIMEOUT_S)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the registry's lock (re-entrant in a thread; other threads and processes wait)."""
        try:
            self._file_lock.acquire()
        except Timeout:
            raise RegistryError(
                f"the registry {self.root} stayed locked for {LOCK_TIMEOUT_S:.0f} s", hint="try again"
            ) from None
        try:
            yield
        finally:
            self._file_lock.release()

    # --- writing versions -----------------------------------------------------------------------
    def new_version_id(self, model_name: str) -> str:
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        safe = "".join(c if c.isalnum() else "-" for c in model_name)[:24]
        return f"v{stamp}-{safe}-{secrets.token_hex(3)}"

    def register(
        self,
        models: Mapping[str, Recommender],
        *,
        metrics: Mapping[str, Any] | None = None,
        data_window: Mapping[str, Any] | None = None,
        evaluation: Mapping[str, Any] | None = None,
        parent: str | None = None,
        version: str | None = None,
        store_id: str | None = None,
    ) -> VersionInfo:
        """Save ``models`` (at least ``"recommender"``) as a new version; returns its info.
        ``store_id`` binds it to the store whose data trained it (``Store.store_id``).

        Nothing is activated: call ``activate`` (or go through the gate with ``release``)."""
        if "recommender" not in models:
            raise RegistryError("a version needs a 'recommender' component")
        unknown = set(models) - set(COMPONENTS)
        if unknown:
            raise RegistryError(
                f"unknown components {sorted(unknown)}", hint=f"known: {', '.join(COMPONENTS)}"
            )
        version = version or self.new_version_id(models["recommender"].name)
        final = self.root / version
        if final.exists():
            raise RegistryError(f"version {version!r} already exists")
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=self.root))
        try:
            for component, model in models.items():
                model.save(tmp / component)
            files = {str(p.relative_to(tmp)): sha256_file(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
            payload = {
                "format": FORMAT,
                "version": version,
                "created_at": now_iso(),
                "components": {c: m.name for c, m in models.items()},
                "config": {c: m.config.model_dump(mode="json") for c, m in models.items()},
                "metrics": dict(metrics or {}),
                "data_window": dict(data_window or {}),
                "evaluation": dict(evaluation or {}),
                "parent": parent,
                "erasures": 0,
                "store_id": store_id,
                "files": files,
            }
            (tmp / VERSION_FILE).write_text(json.dumps(payload, indent=2, default=str))
            os.rename(tmp, final)  # atomic: readers see the whole version or none
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return self.info(version)

    # --- reading versions -----------------------------------------------------------------------
    def versions(self) -> list[str]:
        """Every version id, oldest first."""
        return sorted(
            p.name
            for p in self.root.iterdir()
            if p.is_dir() and not p.name.startswith(".") and (p / VERSION_FILE).exists()
        )

    def info(self, version: str) -> VersionInfo:
        path = self._dir(version)
        try:
            payload = json.loads((path / VERSION_FILE).read_text())
        except (OSError, ValueError) as exc:
            raise CorruptArtifactError(f"version {version!r}: cannot read {VERSION_FILE} ({exc})") from exc
        return VersionInfo.from_json(payload, path)

    def list(self) -> list[VersionInfo]:
        out = []
        for v in self.versions():
            try:
                out.append(self.info(v))
            except RegistryError:
                continue
        return out

    def _dir(self, version: str) -> Path:
        if not version or "/" in version or version.startswith("."):
            raise RegistryError(f"invalid version id {version!r}")
        path = self.root / version
        if not (path / VERSION_FILE).exists():
            raise UnknownVersionError(
                f"unknown model version {version!r}", hint="list them with GET /v1/admin/models"
            )
        return path

    def verify(self, version: str) -> list[str]:
        """Problems with a version's files (empty when every checksum matches)."""
        info = self.info(version)
        assert info.path is not None
        problems = []
        on_disk = {
            str(p.relative_to(info.path))
            for p in info.path.rglob("*")
            if p.is_file() and p.name != VERSION_FILE
        }
        for rel, digest in info.files.items():
            path = info.path / rel
            if not path.is_file():
                problems.append(f"{rel}: missing")
            elif sha256_file(path) != digest:
                problems.append(f"{rel}: sha256 does not match version.json")
        problems += [f"{rel}: not listed in version.json" for rel in sorted(on_disk - set(info.files))]
        return problems

    def load(self, version: str) -> LoadedVersion:
        """Verify every checksum, then load every component. Never returns a partly valid version."""
        problems = self.verify(version)
        if problems:
            raise CorruptArtifactError(
                f"version {version!r} is corrupt: {'; '.join(problems[:5])}",
                hint="it will not be loaded; activate another version or retrain",
            )
        info = self.info(version)
        assert info.path is not None
        try:
            models = {c: Recommender.load(info.path / c) for c in info.components}
        except ShelfwiseError as exc:
            raise CorruptArtifactError(f"version {version!r} cannot be loaded: {exc}") from exc
        return LoadedVersion(info=info, models=models)

    # --- the active pointer ---------------------------------------------------------------------
    def pointer(self) -> Pointer:
        path = self.root / POINTER
        try:
            payload = json.loads(path.read_text())
        except FileNotFoundError:
            return Pointer(active=None)
        except ValueError as exc:
            raise RegistryError(f"{path}: unreadable ({exc})") from exc
        cand = payload.get("candidate")
        return Pointer(
            active=payload.get("active"),
            history=tuple(payload.get("history", ())),
            candidate=Candidate(**cand) if cand else None,
            updated_at=payload.get("updated_at"),
        )

    def _stamp(self, name: str) -> tuple[int, int] | None:
        """Cheap change detection for other processes: (mtime_ns, size) of a file of the root."""
        try:
            st = (self.root / name).stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def pointer_stamp(self) -> tuple[int, int] | None:
        return self._stamp(POINTER)

    def _write_pointer(self, pointer: Pointer) -> None:
        write_json_atomic(self.root / POINTER, pointer.to_dict())

    @property
    def active(self) -> str | None:
        return self.pointer().active

    def activate(self, version: str) -> Pointer:
        """Point ``active`` at ``version`` (checksums verified first); the old one goes to history.

        No gate here: ``release`` gates a new candidate; an operator may activate any sound version."""
        with self.locked():
            return self._activate(version)

    def _activate(self, version: str) -> Pointer:
        problems = self.verify(version)
        if problems:
            raise CorruptArtifactError(
                f"version {version!r} is corrupt and cannot be activated: {'; '.join(problems[:5])}"
            )
        old = self.pointer()
        if old.active == version:
            return old
        history = [v for v in old.history if v != version]
        if old.active:
            history.append(old.active)
        candidate = old.candidate if old.candidate and old.candidate.version != version else None
        new = Pointer(active=version, history=tuple(history[-50:]), candidate=candidate, updated_at=now_iso())
        self._write_pointer(new)
        return new

    def rollback(self) -> Pointer:
        """Make the previously active version active again (the current one is dropped from history)."""
        with self.locked():
            old = self.pointer()
            history = list(old.history)
            while history:
                previous = history.pop()
                if previous in self.versions():
                    new = Pointer(
                        active=previous, history=tuple(history), candidate=None, updated_at=now_iso()
                    )
                    self._write_pointer(new)
                    return new
        raise RegistryError("no earlier version to roll back to")

    def set_candidate(self, candidate: Candidate | None) -> Pointer:
        """Start (or stop, with None) shadow or canary traffic for a version."""
        with self.locked():
            old = self.pointer()
            if candidate is not None:
                if not 0.0 <= candidate.percent <= 100.0:
                    raise RegistryError("canary percent must be within 0..100")
                self._dir(candidate.version)
                if candidate.version == old.active:
                    raise RegistryError(f"{candidate.version!r} is already the active version")
            new = Pointer(active=old.active, history=old.history, candidate=candidate, updated_at=now_iso())
            self._write_pointer(new)
            return new

    def attach(self, version: str, files: Mapping[str, str]) -> None:
        """Write text files (a model card…) beside ``version.json`` and list them with their
        sha256, so ``verify`` keeps covering every file of the version."""
        info = self.info(version)
        assert info.path is not None
        payload = json.loads((info.path / VERSION_FILE).read_text())
        for name, text in files.items():
            if "/" in name or name.startswith(".") or name == VERSION_FILE:
                raise RegistryError(f"cannot attach {name!r} to a version")
            path = info.path / name
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=info.path)
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
            os.replace(tmp, path)
            payload["files"][name] = sha256_file(path)
        write_json_atomic(info.path / VERSION_FILE, payload)

    def attach_arrays(
        self, version: str, folder: str, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]
    ) -> None:
        """Write arrays (``.npy``, no pickle) and a ``meta.json`` into ``<version>/<folder>/`` (the
        precomputed top lists…) and list them with their sha256, so ``verify`` covers them."""
        info = self.info(version)
        assert info.path is not None
        if "/" in folder or folder.startswith(".") or folder in info.components:
            raise RegistryError(f"cannot attach a folder named {folder!r} to a version")
        with self.locked():
            target = info.path / folder
            target.mkdir(exist_ok=True)
            payload = json.loads((info.path / VERSION_FILE).read_text())
            for name, array in arrays.items():
                _save_npy_atomic(target / f"{name}.npy", np.asarray(array))
            write_json_atomic(target / "meta.json", dict(meta))
            for path in sorted(target.iterdir()):
                if path.is_file() and not path.name.startswith("."):
                    payload["files"][f"{folder}/{path.name}"] = sha256_file(path)
            write_json_atomic(info.path / VERSION_FILE, payload)

    # --- privacy --------------------------------------------------------------------------------
    def find_user(self, user_id: str) -> list[str]:
        """Versions whose artifacts still hold ``user_id`` (the store's pseudonym)."""
        found = []
        for info in self.list():
            assert info.path is not None
            for component in info.components:
                ids = info.path / component / "user_ids.npy"
                if ids.is_file() and user_id in set(np.load(ids, allow_pickle=False).tolist()):
                    found.append(info.version)
                    break
        return found

    def erase_user(self, user_id: str) -> list[str]:
        """Remove a user from every version on disk: their id is replaced by a tombstone and their
        rows (history, exclusions, user factors) are zeroed; checksums are rewritten. Returns the
        versions changed. Item-level statistics learnt from the user (co-occurrence, popularity) stay,
        as aggregates with no id attached. Runs under the registry's lock: two erasures at once
        would otherwise each rewrite a version from what it read, and one would undo the other."""
        with self.locked():
            return self._erase_user(user_id)

    def _erase_user(self, user_id: str) -> list[str]:
        changed = []
        for version in self.find_user(user_id):
            info = self.info(version)
            assert info.path is not None
            _erase_from_top_lists(info.path, user_id)
            for component in info.components:
                _erase_from_artifact(info.path / component, user_id)
            payload = json.loads((info.path / VERSION_FILE).read_text())
            payload["files"] = {
                str(p.relative_to(info.path)): sha256_file(p)
                for p in sorted(info.path.rglob("*"))
                if p.is_file() and p.name != VERSION_FILE and not p.name.startswith(".")
            }
            payload["erasures"] = int(payload.get("erasures", 0)) + 1
            payload["erased_at"] = now_iso()
            write_json_atomic(info.path / VERSION_FILE, payload)
            changed.append(version)
        return changed


def _save_npy_atomic(path: Path, array: np.ndarray) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        with open(tmp, "wb") as fh:
            np.save(fh, array, allow_pickle=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def tombstone_ids(ids: np.ndarray, row: int) -> np.ndarray:
    """A copy of ``ids`` with ``ids[row]`` replaced by a unique tombstone (wider dtype if needed)."""
    mark = f"{ERASED_PREFIX}{row}"
    width = max(ids.dtype.itemsize // 4 if ids.dtype.kind == "U" else 0, len(mark))
    out = ids.astype(f"<U{width}")
    out[row] = mark
    return out


def drop_csr_row(
    data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, row: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR arrays with every entry of ``row`` removed (the row stays, empty)."""
    lo, hi = int(indptr[row]), int(indptr[row + 1])
    keep = np.r_[0:lo, hi : len(data)]
    new_indptr = np.array(indptr, copy=True)
    new_indptr[row + 1 :] -= hi - lo
    return data[keep], indices[keep], new_indptr


def _erase_from_artifact(directory: Path, user_id: str) -> None:
    meta_path = directory / METADATA
    meta = json.loads(meta_path.read_text())
    ids_path = directory / "user_ids.npy"
    ids = np.load(ids_path, allow_pickle=False)
    rows = np.flatnonzero(ids == user_id)
    if not len(rows):
        return
    n_users = len(ids)
    new_files: dict[str, np.ndarray] = {}
    for row in rows.tolist():
        ids = tombstone_ids(ids, row)
    new_files["user_ids.npy"] = ids
    for name in meta["files"]:
        stem = name.removesuffix(".npy")
        if stem.endswith("_indptr"):
            prefix = stem.removesuffix("_indptr")
            shape = np.load(directory / f"{prefix}_shape.npy", allow_pickle=False)
            if int(shape[0]) != n_users:
                continue
            csr = [np.load(directory / f"{prefix}_{part}.npy", allow_pickle=False) for part in CSR_PARTS]
            for row in rows.tolist():
                csr = list(drop_csr_row(*csr, row))
            new_files.update({f"{prefix}_{part}.npy": arr for part, arr in zip(CSR_PARTS, csr, strict=True)})
        elif stem.startswith("model_user"):
            arr = np.load(directory / name, allow_pickle=False)
            if arr.ndim >= 1 and arr.shape[0] == n_users:
                arr = np.array(arr, copy=True)
                arr[rows] = 0
                new_files[name] = arr
    for name, arr in new_files.items():
        _save_npy_atomic(directory / name, arr)
        meta["files"][name] = sha256_file(directory / name)
    write_json_atomic(meta_path, meta)


def _erase_from_top_lists(version_dir: Path, user_id: str) -> None:
    """Empty the erased shopper's precomputed list (its row is the recommender's dense user id)."""
    folder = version_dir / "toplists"
    ids_path = version_dir / "recommender" / "user_ids.npy"
    if not (folder / "items.npy").is_file() or not ids_path.is_file():
        return
    rows = np.flatnonzero(np.load(ids_path, allow_pickle=False) == user_id)
    if not len(rows):
        return
    items = np.array(np.load(folder / "items.npy", allow_pickle=False), copy=True)
    scores = np.array(np.load(folder / "scores.npy", allow_pickle=False), copy=True)
    items[rows] = -1
    scores[rows] = -np.inf
    _save_npy_atomic(folder / "items.npy", items)
    _save_npy_atomic(folder / "scores.npy", scores)
