"""The on-disk embedding cache: only texts it has not seen are encoded; it follows the catalogue;
a damaged cache is rebuilt, never trusted."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shelfwise.search.embedding_cache import EmbeddingCache


class Counting:
    """A deterministic text → vector function that records what it was asked to encode."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        rows = [np.random.default_rng(abs(hash(t)) % 2**32).normal(size=8) for t in texts]
        return np.array([r / np.linalg.norm(r) for r in rows], dtype=np.float32)


def test_only_new_texts_are_encoded_and_order_is_kept(tmp_path: Path) -> None:
    encode = Counting()
    cache = EmbeddingCache(tmp_path, "m")
    first = cache.vectors(["a", "b", "a", "c"], encode)
    assert encode.calls == [["a", "b", "c"]] and first.shape == (4, 8)
    assert np.array_equal(first[0], first[2])
    again = EmbeddingCache(tmp_path, "m").vectors(["c", "d", "a"], encode)
    assert encode.calls[1] == ["d"]  # a and c came from disk
    assert np.array_equal(again[0], first[3]) and np.array_equal(again[2], first[0])
    # "b" left the catalogue: dropped from the cache, so it is encoded again if it comes back
    EmbeddingCache(tmp_path, "m").vectors(["b"], encode)
    assert encode.calls[2] == ["b"]


def test_another_model_never_reuses_vectors(tmp_path: Path) -> None:
    encode = Counting()
    EmbeddingCache(tmp_path, "m1").vectors(["a"], encode)
    EmbeddingCache(tmp_path, "m2").vectors(["a"], encode)
    assert encode.calls == [["a"], ["a"]]


def test_a_damaged_cache_is_rebuilt(tmp_path: Path) -> None:
    encode = Counting()
    EmbeddingCache(tmp_path, "m").vectors(["a", "b"], encode)
    (tmp_path / "vectors.npy").write_bytes(b"not numpy")
    out = EmbeddingCache(tmp_path, "m").vectors(["a", "b"], encode)
    assert encode.calls[1] == ["a", "b"] and out.shape == (2, 8)
