"""Combining keyword and semantic result lists: reciprocal rank fusion and a weighted score blend.

Pure functions over arrays, so they are tested and tuned without a model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def reciprocal_rank_fusion(rankings: Sequence[Sequence[int]], *, k: int = 60) -> dict[int, float]:
    """``sum 1/(k + rank)`` over the lists each candidate appears in (rank from 1)."""
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, slot in enumerate(ranking, 1):
            fused[int(slot)] = fused.get(int(slot), 0.0) + 1.0 / (k + rank)
    return fused


def min_max(values: np.ndarray) -> np.ndarray:
    if len(values) == 0:
        return values.astype(np.float32)
    lo, hi = float(values.min()), float(values.max())
    if hi - lo < 1e-9:
        return np.where(values > 0, 1.0, 0.0).astype(np.float32)
    return ((values - lo) / (hi - lo)).astype(np.float32)


def blend(keyword: np.ndarray, dense: np.ndarray, *, alpha: float) -> np.ndarray:
    """``alpha * keyword + (1 - alpha) * dense`` on candidates, each scaled to [0, 1] by its
    theoretical minimum (0: no term matched / orthogonal) and the candidates' maximum.

    This is the "TM2C2" convex combination of Bruch, Gai and Ingber (2023), "An Analysis of Fusion
    Functions for Hybrid Retrieval": unlike min-max over the candidates it keeps how good the best
    semantic match is, so a query the model barely understands cannot swamp the keyword scores.
    It matched or beat min-max and z-score scaling on the Crowdflower set (our development set).
    """
    kmax = float(keyword.max()) if len(keyword) else 0.0
    k = keyword / kmax if kmax > 0 else np.zeros_like(keyword)
    d = np.clip(dense, 0.0, None)
    dmax = float(d.max()) if len(d) else 0.0
    d = d / dmax if dmax > 0 else np.zeros_like(d)
    return (alpha * k + (1 - alpha) * d).astype(np.float32)
