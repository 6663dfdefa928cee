"""``top_k`` promises ties broken by the lower column, whatever the batch: the item at the k-th
place must not depend on argpartition's internals (a served answer from the model and one from the
precomputed batch once differed at position 10 between two items with the same score)."""

from __future__ import annotations

import numpy as np

from shelfwise.recommend.base import _SAMPLES, CANDIDATE_MIN_COLUMNS, _top_k_partition, top_k


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


# --- long rows: the candidate path must give the partial sort's answer exactly -----------------------


def _same(scores: np.ndarray, k: int) -> None:
    got = top_k(scores, k)
    want = _top_k_partition(scores, k)
    assert np.array_equal(got[0], want[0]), k
    assert np.array_equal(got[1], want[1]), k
    assert got[1].dtype == want[1].dtype


def test_long_rows_give_the_partial_sorts_answer_with_ties_masks_and_padding() -> None:
    rng = np.random.default_rng(11)
    n = CANDIDATE_MIN_COLUMNS + 7_000
    for k in (1, 10, 50, n // 64):
        ties = rng.integers(0, 5, size=(6, n)).astype(np.float32)  # thousands tied at the k-th score
        _same(ties, k)
        smooth = rng.normal(size=(6, n))  # float64 stays float64
        smooth[0, : n - 3] = -np.inf  # three finite scores: k slots, mostly -1
        smooth[1] = -np.inf  # nothing to show
        smooth[2, rng.random(n) < 0.999] = -np.inf  # a filter that leaves ~40 items
        smooth[3] = np.linspace(1.0, 0.0, n)  # columns in score order (ids by popularity)
        smooth[4] = np.linspace(0.0, 1.0, n)
        _same(smooth, k)
        cold = np.zeros((4, n), np.float32)  # an item with no factors scores 0 against everything
        cold[1, rng.choice(n, 5, replace=False)] = rng.random(5)  # a few above the common score
        cold[2, rng.choice(n, 900, replace=False)] = rng.random(900)
        cold[3, rng.choice(n, 900, replace=False)] = -rng.random(900)  # a few below it
        _same(cold, k)


def test_a_row_whose_sample_holds_its_best_scores_takes_the_partial_sort() -> None:
    n = CANDIDATE_MIN_COLUMNS * 2
    scores = np.zeros((3, n), np.float32)
    top_k(scores, 10)  # the fixed sample of columns for rows this long
    sample = _SAMPLES[n]
    scores[0, sample[:20]] = 5.0 + np.arange(20)  # the sample's best are the row's best: few candidates
    scores[1, sample[:3]] = 9.0
    scores[1, 12_345] = 9.0  # tied with them, outside the sample
    scores[2] = np.arange(n) % 97  # many ties, periodic
    for k in (10, 50, 200):
        _same(scores, k)
