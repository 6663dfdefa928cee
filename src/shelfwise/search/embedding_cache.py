"""Item embeddings kept on disk between starts, so a server embeds only new or changed items.

An item's vector depends only on its embedding text (title, brand, leaf category) and the model, so
the cache is keyed by ``sha256(model id, text)``: a changed title is a new key, an unchanged item
is never embedded twice. The cache is two files written atomically (``keys.npy`` and
``vectors.npy``); a damaged or foreign cache is ignored and rebuilt, never trusted.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from shelfwise.core.logging import get_logger

log = get_logger(__name__)


def _key(model: str, text: str) -> bytes:
    # hex, not the raw digest: numpy's fixed-width bytes drop trailing NUL bytes on the way back
    return hashlib.sha256(f"{model}\x00{text}".encode()).hexdigest().encode()


class EmbeddingCache:
    """Vectors of texts under ``root``, for one model (``model`` names it in every key)."""

    def __init__(self, root: Path, model: str) -> None:
        self.root, self.model = root, model
        self.hits = self.misses = 0

    def _load(self) -> dict[bytes, np.ndarray]:
        keys_path, vectors_path = self.root / "keys.npy", self.root / "vectors.npy"
        if not keys_path.exists() or not vectors_path.exists():
            return {}
        try:
            keys = np.load(keys_path, allow_pickle=False)
            vectors = np.load(vectors_path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            log.warning("embedding cache unreadable; rebuilding it", path=str(self.root), error=str(exc))
            return {}
        if keys.dtype != np.dtype("S64") or vectors.ndim != 2 or len(keys) != len(vectors):
            log.warning("embedding cache malformed; rebuilding it", path=str(self.root))
            return {}
        return {bytes(k): vectors[i] for i, k in enumerate(keys)}

    def _save(self, table: dict[bytes, np.ndarray]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        keys = np.array(list(table), dtype="S64")
        vectors = np.stack(list(table.values())).astype(np.float32) if table else np.zeros((0, 0), np.float32)
        suffix = f".{os.getpid()}.tmp.npy"
        for name, array in (("vectors", vectors), ("keys", keys)):
            tmp = self.root / f"{name}{suffix}"
            np.save(tmp, array, allow_pickle=False)
            os.replace(tmp, self.root / f"{name}.npy")

    def vectors(self, texts: Sequence[str], encode: Callable[[list[str]], np.ndarray]) -> np.ndarray:
        """One unit vector per text, in order: cached ones read, the rest encoded (once each) and
        added to the cache. Entries no text asked for are dropped, so the cache follows the catalogue."""
        table = self._load()
        keys = [_key(self.model, t) for t in texts]
        missing: dict[bytes, str] = {}
        for k, t in zip(keys, texts, strict=True):
            if k not in table and k not in missing:
                missing[k] = t
        self.misses, self.hits = len(missing), len(set(keys)) - len(missing)
        if missing:
            fresh = encode(list(missing.values()))
            for k, vector in zip(missing, fresh, strict=True):
                table[k] = np.asarray(vector, dtype=np.float32)
        wanted = {k: table[k] for k in keys}
        if missing or len(wanted) != len(table):
            self._save(wanted)
        if not keys:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([wanted[k] for k in keys]).astype(np.float32, copy=False)

    def missing(self, texts: Sequence[str]) -> int:
        """How many distinct texts the cache does not hold (what building over them would embed)."""
        table = self._load()
        return len({k for k in (_key(self.model, t) for t in texts) if k not in table})

    def fill(
        self,
        texts: Sequence[str],
        encode: Callable[[list[str]], np.ndarray],
        *,
        chunk: int = 2_000,
        save_every_s: float = 60.0,
        progress: Callable[[int, int], None] | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> int:
        """Encode the texts the cache lacks, ``chunk`` at a time, saving what is done at least every
        ``save_every_s`` (a process stopped halfway keeps its work for the next start). Entries of
        other texts are kept. Returns how many were encoded; stops early when ``stop()`` says so."""
        table = self._load()
        missing: dict[bytes, str] = {}
        for t in texts:
            k = _key(self.model, t)
            if k not in table and k not in missing:
                missing[k] = t
        todo = list(missing.items())
        done, saved_at, unsaved = 0, time.monotonic(), False
        for start in range(0, len(todo), max(1, chunk)):
            if stop is not None and stop():
                break
            part = todo[start : start + chunk]
            fresh = encode([t for _, t in part])
            for (k, _), vector in zip(part, fresh, strict=True):
                table[k] = np.asarray(vector, dtype=np.float32)
            done += len(part)
            unsaved = True
            if progress is not None:
                progress(done, len(todo))
            if time.monotonic() - saved_at >= save_every_s:
                self._save(table)
                saved_at, unsaved = time.monotonic(), False
        if unsaved:
            self._save(table)
        self.misses = done
        return done
