"""Offline search evaluation: nDCG@10, MRR@10, Recall@100 and QPS over graded judgments.

Unjudged products count as not relevant (full-corpus retrieval). ``min_grade`` says which grade
counts as relevant for MRR and recall; nDCG uses the grades as gains (``2^g - 1``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np


def ndcg_at(ranked: Sequence[str], grades: Mapping[str, int], k: int = 10) -> float:
    gains = [2 ** grades.get(doc, 0) - 1 for doc in ranked[:k]]
    dcg = sum(g / math.log2(i + 2) for i, g in enumerate(gains))
    ideal = sorted((2**g - 1 for g in grades.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def mrr_at(ranked: Sequence[str], grades: Mapping[str, int], k: int = 10, *, min_grade: int = 1) -> float:
    for i, doc in enumerate(ranked[:k]):
        if grades.get(doc, 0) >= min_grade:
            return 1.0 / (i + 1)
    return 0.0


def recall_at(ranked: Sequence[str], grades: Mapping[str, int], k: int = 100, *, min_grade: int = 1) -> float:
    relevant = {d for d, g in grades.items() if g >= min_grade}
    if not relevant:
        return 0.0
    return len(relevant & set(ranked[:k])) / len(relevant)


def evaluate_rankings(
    runs: Mapping[str, Sequence[str]], qrels: Mapping[str, Mapping[str, int]], *, min_grade: int = 1
) -> dict[str, float]:
    """Mean metrics over the queries that have at least one relevant judgment."""
    per: dict[str, list[float]] = {"ndcg@10": [], "mrr@10": [], "recall@100": []}
    for qid, grades in qrels.items():
        if not any(g >= min_grade for g in grades.values()):
            continue
        ranked = runs.get(qid, [])
        per["ndcg@10"].append(ndcg_at(ranked, grades, 10))
        per["mrr@10"].append(mrr_at(ranked, grades, 10, min_grade=min_grade))
        per["recall@100"].append(recall_at(ranked, grades, 100, min_grade=min_grade))
    out = {name: round(float(np.mean(v)), 4) if v else 0.0 for name, v in per.items()}
    out["queries"] = float(len(per["ndcg@10"]))
    return out


def run_queries(
    search: Callable[[str], Sequence[str]],
    queries: Mapping[str, str],
    *,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[dict[str, list[str]], float]:
    """Each query once, one at a time; returns the runs and queries per second."""
    runs: dict[str, list[str]] = {}
    started = time.perf_counter()
    for i, (qid, text) in enumerate(queries.items(), 1):
        runs[qid] = list(search(text))
        if progress and (i % 20 == 0 or i == len(queries)):
            progress(i, len(queries))
    seconds = time.perf_counter() - started
    return runs, len(queries) / seconds if seconds > 0 else float("inf")


def evaluation_report(
    search: Callable[[str], Sequence[str]],
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    *,
    min_grade: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    judged = {qid: q for qid, q in queries.items() if qid in qrels}
    runs, qps = run_queries(search, judged, progress=progress)
    metrics: dict[str, Any] = dict(evaluate_rankings(runs, qrels, min_grade=min_grade))
    metrics["queries"] = int(metrics["queries"])
    metrics["qps"] = round(qps, 1)
    return metrics
