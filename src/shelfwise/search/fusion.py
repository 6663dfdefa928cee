"""Combining keyword and semantic result lists: reciprocal rank fusion and a weighted score blend.

Pure functions over arrays, so they are tested and tuned without a model.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

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


def blend(keyword: np.ndarray, dense: np.ndarray, *, alpha: float, dense_floor: float = 0.0) -> np.ndarray:
    """``alpha * keyword + (1 - alpha) * dense`` on candidates, each scaled to [0, 1] by its
    theoretical minimum (0: no term matched / orthogonal) and the candidates' maximum.

    This is the "TM2C2" convex combination of Bruch, Gai and Ingber (2023), "An Analysis of Fusion
    Functions for Hybrid Retrieval": unlike min-max over the candidates it keeps how good the best
    semantic match is, so a query the model barely understands cannot swamp the keyword scores.
    It matched or beat min-max and z-score scaling on the Crowdflower set (our development set).
    ``dense_floor``: the cosine taken as "unrelated" instead of 0 (sentence embeddings of two product
    texts rarely fall below ~0.1-0.2), which spreads the semantic scores over [0, 1] as the keyword
    scores are.
    """
    kmax = float(keyword.max()) if len(keyword) else 0.0
    k = keyword / kmax if kmax > 0 else np.zeros_like(keyword)
    d = np.clip(dense - dense_floor, 0.0, None)
    dmax = float(d.max()) if len(d) else 0.0
    d = d / dmax if dmax > 0 else np.zeros_like(d)
    return (alpha * k + (1 - alpha) * d).astype(np.float32)


def query_class(tokens: Sequence[str], words: int) -> str:
    """``model`` (a model number, size, fraction or dimension: a token with a digit), ``short``
    (one or two words), ``long`` (five words or more) or ``medium``."""
    if any(any(c.isdigit() for c in t) for t in tokens):
        return "model"
    if words <= 2:
        return "short"
    return "long" if words >= 5 else "medium"


def agreement(keyword: np.ndarray, dense: np.ndarray, *, depth: int = 10) -> float:
    """Share of the top ``depth`` candidates by keyword score that are also in the top ``depth`` by
    dense similarity (0: the retrievers disagree entirely, 1: same set)."""
    n = min(depth, len(keyword))
    if n == 0:
        return 0.0
    kw = set(np.argsort(-keyword, kind="stable")[:n].tolist())
    dn = set(np.argsort(-dense, kind="stable")[:n].tolist())
    return len(kw & dn) / n


def adaptive_alpha(
    keyword: np.ndarray,
    dense: np.ndarray,
    *,
    tokens: Sequence[str],
    words: int,
    alpha: float,
    model_alpha: float = 0.0,
    long_shift: float = 0.0,
    low_agreement: float = 0.0,
    low_confidence: float = 0.45,
    backoff_alpha: float = 0.8,
    class_alpha: Mapping[str, float] | None = None,
) -> tuple[float, dict[str, float | str]]:
    """The keyword share for one query, and why (every rule is off at its default value).

    * ``class_alpha`` gives a query class (``query_class``) its own share instead of ``alpha``;

    * a query with a model number or size leans on the keyword side (``model_alpha`` at least):
      an embedding of ``xr200`` is close to every other model number;
    * a long descriptive query leans on the dense side (``alpha + long_shift``);
    * when the two retrievers' top 10 barely overlap (``< low_agreement``) *and* the best semantic
      match is weak (cosine ``< low_confidence``), the semantic side is probably off-topic for this
      shop: back off to keyword (``backoff_alpha`` at least). So a catalogue the model does not
      understand degrades to keyword search instead of below it.
    """
    cls = query_class(tokens, words)
    a = class_alpha.get(cls, alpha) if class_alpha else alpha
    if cls == "model":
        a = max(a, model_alpha)
    elif cls == "long":
        a = a + long_shift
    agree = agreement(keyword, dense)
    top = float(dense.max()) if len(dense) else 0.0
    if agree < low_agreement and top < low_confidence:
        a = max(a, backoff_alpha)
    a = min(max(a, 0.0), 1.0)
    return a, {"class": cls, "agreement": round(agree, 3), "dense_top": round(top, 4), "alpha": round(a, 3)}


def feedback_terms(
    docs: Sequence[Sequence[str]],
    doc_weights: Sequence[float],
    *,
    query: Sequence[str],
    doc_freq: Callable[[str], int],
    n_docs: int,
    k: int,
    max_df_share: float = 0.2,
) -> dict[str, float]:
    """Expansion terms for the keyword side from the first pass's best documents (RM3-style
    pseudo-relevance feedback, Lavrenko & Croft 2001; Abdul-Jaleel et al. 2004): each term's share of
    the feedback documents' words, each document weighted by its first-pass score, times the term's
    idf over the catalogue. Query words, words of more than ``max_df_share`` of the catalogue and
    one-letter words are left out. Returns the best ``k`` terms, weights summing to 1."""
    if k <= 0 or not docs or n_docs <= 0:
        return {}
    w = np.clip(np.asarray(doc_weights, dtype=np.float64), 0.0, None)
    w = w / w.sum() if w.sum() > 0 else np.full(len(docs), 1.0 / len(docs))
    asked = set(query)
    mass: dict[str, float] = {}
    for tokens, weight in zip(docs, w.tolist(), strict=True):
        if not tokens:
            continue
        share = weight / len(tokens)
        for t in tokens:
            if t not in asked and len(t) > 1:
                mass[t] = mass.get(t, 0.0) + share
    scored: list[tuple[float, str]] = []
    for t, m in mass.items():
        df = doc_freq(t)
        if df <= 0 or df > max_df_share * n_docs:
            continue
        scored.append((m * math.log(n_docs / df), t))
    scored.sort(key=lambda x: (-x[0], x[1]))
    best = scored[:k]
    total = sum(s for s, _ in best)
    return {t: s / total for s, t in best} if total > 0 else {}
