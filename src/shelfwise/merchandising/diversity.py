"""Re-ranking for diversity, as pure functions over arrays.

- ``mmr_order``: maximal marginal relevance (Carbonell & Goldstein 1998): each next item maximises
  ``(1 - λ)·relevance − λ·max similarity to the items already chosen``, with similarity 1 between
  items of the same label (category) and 0 otherwise.
- ``calibrated_order``: calibrated recommendations (Steck 2018): each next item maximises
  ``(1 - λ)·Σ relevance − λ·KL(p ‖ q̃)`` where ``p`` is the target share of each label and ``q̃``
  the (smoothed) share in the list so far.

``relevance`` is the rank-based score in [0, 1] the engine uses (1 for the first candidate), so λ
means the same on every model's scale. λ = 0 keeps the input order exactly.

>>> mmr_order(np.array([1.0, 0.9, 0.8]), np.array([0, 0, 1]), strength=0.5, k=3).tolist()
[0, 2, 1]
"""

from __future__ import annotations

import numpy as np

_ALPHA = 0.01  # Steck's smoothing of q, so KL is finite while a label has no item yet


def mmr_order(
    relevance: np.ndarray,
    labels: np.ndarray,
    *,
    strength: float,
    k: int,
    parents: np.ndarray | None = None,
    parent_similarity: float = 0.5,
) -> np.ndarray:
    """Indices of the first ``k`` items in MMR order. ``labels`` are int codes (-1: no label, unlike
    all); with ``parents`` (e.g. the department of each category), two items of one parent but
    different labels are ``parent_similarity`` alike, so diversity reaches across departments too."""
    n = len(relevance)
    k = min(k, n)
    if strength <= 0 or n == 0:
        return np.arange(k)
    chosen: list[int] = []
    left = np.ones(n, dtype=bool)
    seen = np.zeros(int(labels.max(initial=-1)) + 2, dtype=bool)
    seen_parent = np.zeros(int(parents.max(initial=-1)) + 2 if parents is not None else 1, dtype=bool)
    has = labels >= 0
    has_parent = parents >= 0 if parents is not None else np.zeros(n, dtype=bool)
    for _ in range(k):
        sim = np.where(has, seen[labels], False).astype(np.float64)
        if parents is not None:
            sim = np.maximum(sim, parent_similarity * np.where(has_parent, seen_parent[parents], False))
        score = (1 - strength) * relevance - strength * sim
        score = np.where(left, score, -np.inf)
        best = int(np.argmax(score))  # ties: the earlier (more relevant) item
        chosen.append(best)
        left[best] = False
        if has[best]:
            seen[labels[best]] = True
        if has_parent[best]:
            seen_parent[parents[best]] = True  # type: ignore[index]
    return np.array(chosen, dtype=np.int64)


def calibrated_order(
    relevance: np.ndarray, labels: np.ndarray, target: np.ndarray, *, strength: float, k: int
) -> np.ndarray:
    """Indices of the first ``k`` items, greedily calibrated to ``target`` (shares per label code)."""
    n = len(relevance)
    k = min(k, n)
    if strength <= 0 or n == 0:
        return np.arange(k)
    n_labels = len(target)
    p = target / target.sum() if target.sum() > 0 else np.full(n_labels, 1 / max(n_labels, 1))
    support = np.flatnonzero(p > 0)
    ps = p[support]
    # column of each candidate's label among the target's support (-1: adds to no share that counts)
    where = np.full(n_labels + 1, -1, dtype=np.int64)
    where[support] = np.arange(len(support))
    col = np.where(labels >= 0, where[np.clip(labels, 0, n_labels)], -1)
    counts = np.zeros(len(support))
    chosen: list[int] = []
    left = np.ones(n, dtype=bool)
    rel_sum = 0.0
    rows = np.arange(n)
    for step in range(1, k + 1):
        c = np.tile(counts, (n, 1))  # the counts if each candidate were added next
        hit = col >= 0
        c[rows[hit], col[hit]] += 1
        q = (1 - _ALPHA) * c / step + _ALPHA * ps
        kl = (ps * np.log(ps / q)).sum(axis=1)
        score = (1 - strength) * (rel_sum + relevance) - strength * kl
        score = np.where(left, score, -np.inf)
        best = int(np.argmax(score))
        chosen.append(best)
        left[best] = False
        rel_sum += float(relevance[best])
        if col[best] >= 0:
            counts[col[best]] += 1
    return np.array(chosen, dtype=np.int64)


def intra_list_diversity(labels: np.ndarray) -> float:
    """Share of pairs in a list whose labels differ (an unlabelled item differs from all)."""
    n = len(labels)
    if n < 2:
        return 0.0
    same = sum(1 for a in range(n) for b in range(a + 1, n) if labels[a] >= 0 and labels[a] == labels[b])
    return 1 - same / (n * (n - 1) / 2)
