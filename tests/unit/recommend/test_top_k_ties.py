"""``top_k`` promises ties broken by the lower column, whatever the batch: the item at the k-th
place must not depend on argpartition's internals (a served answer from the model and one from the
precomputed batch once differed at position 10 between two items with the same score)."""

from __future__ import annotations

import numpy as np

from shelfwise.recommend.base import top_k


def _expected(row: np.ndarray, k: int) -> list[int]:
    order = sorted(range(len(row)), key=lambda c: (-row[c], c))[: min(k, len(row))]
    return [c if np.isfinite(row[c]) else -1 for c in order]


def test_ties_at_the_kth_place_take_the_lowest_columns_in_a_row_and_in_a_batch() -> None:
    rng = np.random.default_rng(7)
    for _ in range(500):
        n = int(rng.integers(2, 60))
        k = int(rng.integers(1, n + 3))
        scores = rng.integers(0, 4, size=(4, n)).astype(np.float32)  # many ties
        scores[rng.random((4, n)) < 0.1] = -np.inf
        idx, vals = top_k(scores, k)
        for r in range(4):
            assert list(idx[r]) == _expected(scores[r], k)
            alone, _ = top_k(scores[r : r + 1].copy(), k)
            assert list(alone[0]) == list(idx[r])
            kept = idx[r] >= 0
            assert np.array_equal(vals[r][kept], scores[r, idx[r][kept]])


def test_a_tie_straddling_the_cut_keeps_the_lower_column() -> None:
    scores = np.zeros((1, 1000), np.float32)
    scores[0, [900, 17, 500]] = 1.0
    scores[0, [999, 3, 640]] = 0.5  # three items tied for the last two places
    idx, _ = top_k(scores, 5)
    assert idx[0].tolist() == [17, 500, 900, 3, 640]
