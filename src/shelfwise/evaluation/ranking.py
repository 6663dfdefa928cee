"""Full-ranking evaluation: every test user's targets are ranked against *all* items (never a
sample of negatives), scoring users in batches so memory stays bounded by
``max_cells`` floats whatever the catalogue size.

Items the user had in training are excluded from the ranking (they cannot be targets of a
"what next" recommendation); ties are broken by the lower item id, the same rule ``top_k`` uses,
so a model that gives many items the same score gains nothing from the tie.

Per-user metrics come back as arrays (for confidence intervals and paired tests); list-level
metrics (coverage, diversity, novelty, popularity bias) from each user's top-``max(ks)`` list.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp

from shelfwise.core.parallel import Mapper, chunks, local_map
from shelfwise.features.splits import Split

ProgressFn = Callable[[int, int], None]


class Scorer(Protocol):
    """What evaluation needs from a model: dense scores for known users by dense id."""

    def score_users(self, users: np.ndarray) -> np.ndarray: ...


@dataclass
class EvalResult:
    """Aggregated metrics, per-user arrays behind them, and how it was measured."""

    model: str
    metrics: dict[str, float]
    per_user: dict[str, np.ndarray]
    users: np.ndarray
    ranks: list[np.ndarray] = field(repr=False, default_factory=list)  # each user's target ranks (0-based)
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, **self.metrics, **self.info}


def user_metrics(ranks: np.ndarray, n_candidates: int, ks: Sequence[int]) -> dict[str, float]:
    """Metrics of one user from the 0-based ranks of their targets among ``n_candidates`` items.

    >>> m = user_metrics(np.array([0, 3]), n_candidates=10, ks=[2])
    >>> m["recall@2"], m["precision@2"], m["mrr"], round(m["auc"], 3)
    (0.5, 0.5, 1.0, 0.875)
    """
    ranks = np.asarray(ranks, np.int64)
    out = batch_metrics(
        np.zeros(len(ranks), np.int64), ranks, n_users=1, n_candidates=np.array([n_candidates]), ks=ks
    )
    return {k: float(v[0]) for k, v in out.items()}


def batch_metrics(
    rows: np.ndarray, ranks: np.ndarray, *, n_users: int, n_candidates: np.ndarray, ks: Sequence[int]
) -> dict[str, np.ndarray]:
    """Per-user metrics for many users at once: ``rows[j]`` is the user (0..n_users-1) of target j,
    ``ranks[j]`` its 0-based rank; every user has at least one target."""
    order = np.lexsort((ranks, rows))
    rows, ranks = rows[order], ranks[order]
    n_t = np.bincount(rows, minlength=n_users)
    first = np.concatenate([[0], np.cumsum(n_t)[:-1]])
    pos = np.arange(len(rows)) - first[rows]  # position of the target among the user's, best first
    out: dict[str, np.ndarray] = {}
    disc_all = 1.0 / np.log2(ranks + 2.0)
    ideal = np.cumsum(1.0 / np.log2(np.arange(max(max(ks), 1)) + 2.0))
    for k in ks:
        hit = ranks < k
        n_hit = np.bincount(rows, weights=hit, minlength=n_users)
        out[f"hr@{k}"] = (n_hit > 0).astype(np.float64)
        out[f"recall@{k}"] = n_hit / n_t
        out[f"precision@{k}"] = n_hit / k
        idcg = ideal[np.minimum(n_t, k) - 1]
        out[f"ndcg@{k}"] = np.bincount(rows, weights=hit * disc_all, minlength=n_users) / idcg
        # hits are the first n_hit positions, so precision at each hit is (pos+1)/(rank+1)
        ap = np.bincount(rows, weights=hit * (pos + 1) / (ranks + 1), minlength=n_users)
        out[f"map@{k}"] = ap / np.minimum(n_t, k)
        best = ranks[first]
        out[f"mrr@{k}"] = np.where(best < k, 1.0 / (best + 1), 0.0)
    out["mrr"] = 1.0 / (ranks[first] + 1)
    n_neg = np.asarray(n_candidates, np.float64) - n_t
    above = np.bincount(rows, weights=ranks - pos, minlength=n_users) / n_t
    out["auc"] = np.where(n_neg > 0, 1.0 - above / np.maximum(n_neg, 1), 1.0)
    return out


@dataclass(frozen=True)
class _RankJob:
    """What every chunk of an evaluation reads (shipped once to each worker)."""

    model: Any
    train: sp.csr_matrix
    test: sp.csr_matrix
    users: np.ndarray
    ks: tuple[int, ...]
    max_cells: int
    exclude_train: bool


def _rank_chunk(
    job: _RankJob, bounds: tuple[int, int]
) -> tuple[dict[str, np.ndarray], list[np.ndarray], np.ndarray]:
    """Per-user metrics, target ranks and top-``max(ks)`` lists of ``users[lo:hi]`` (pure: the same
    in-process and on a worker)."""
    lo_u, hi_u = bounds
    train, test = job.train, job.test
    n_items = test.shape[1]
    chunk = job.users[lo_u:hi_u]
    scores = np.asarray(job.model.score_users(chunk), dtype=np.float32)
    if scores.shape != (len(chunk), n_items):
        raise ValueError(f"score_users returned {scores.shape}, expected {(len(chunk), n_items)}")
    scores = np.nan_to_num(scores, nan=-np.inf, posinf=np.finfo(np.float32).max)
    excluded = train[chunk] if job.exclude_train else sp.csr_matrix((len(chunk), n_items))
    rows, cols = excluded.nonzero()
    scores[rows, cols] = -np.inf
    n_excluded = np.diff(excluded.indptr)
    tgt = test[chunk]
    t_rows = np.repeat(np.arange(len(chunk)), np.diff(tgt.indptr))
    t_items = tgt.indices.astype(np.int64)
    ranks = np.empty(len(t_items), np.int64)
    step = max(1, job.max_cells // max(n_items, 1))
    cols = np.arange(n_items)
    for lo in range(0, len(t_items), step):
        r, it = t_rows[lo : lo + step], t_items[lo : lo + step]
        block = scores[r]
        ts = block[np.arange(len(r)), it][:, None]
        # rank = items scored higher, plus equal-scored items with a lower id (stable tie-break)
        ranks[lo : lo + step] = (block > ts).sum(axis=1) + (
            (block == ts) & (cols[None, :] < it[:, None])
        ).sum(axis=1)
    metrics = batch_metrics(t_rows, ranks, n_users=len(chunk), n_candidates=n_items - n_excluded, ks=job.ks)
    kmax = max(job.ks)
    lists = np.full((len(chunk), kmax), -1, np.int64)
    k = min(kmax, n_items)
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -vals), axis=1)
    top = np.take_along_axis(part, order, axis=1)
    top[np.isneginf(np.take_along_axis(vals, order, axis=1))] = -1
    lists[:, :k] = top
    return metrics, np.split(ranks, np.cumsum(np.diff(tgt.indptr))[:-1]), lists


def evaluate(
    model: Scorer,
    split: Split,
    *,
    name: str = "model",
    ks: Sequence[int] = (10, 20),
    max_cells: int = 1 << 24,
    exclude_train: bool = True,
    diversity_users: int = 1000,
    progress: ProgressFn | None = None,
    seed: int = 0,
    mapper: Mapper = local_map,
    chunk_users: int | None = None,
) -> EvalResult:
    """Rank all items for every user with test targets; see the module docstring.

    ``mapper`` runs the chunks of users (``chunk_users`` each; by default as many as ``max_cells``
    scores allow): in-process by default, or on a cluster (``shelfwise.distributed``). Chunks are
    independent, so the result is the same whichever runs them."""
    train = split.train.matrix()
    test = split.test
    n_items = test.shape[1]
    users = split.test_users
    batch = max(1, min(len(users), max_cells // max(n_items, 1)))
    if chunk_users is not None:
        batch = max(1, min(batch, chunk_users))
    job = _RankJob(model, train, test, users, tuple(ks), max_cells, exclude_train)
    per_user: dict[str, list[np.ndarray]] = {}
    all_ranks: list[np.ndarray] = []
    parts: list[np.ndarray] = []
    started = time.perf_counter()
    done = 0
    for metrics, ranks, lists in mapper(_rank_chunk, chunks(len(users), batch), shared=job):
        for key, value in metrics.items():
            per_user.setdefault(key, []).append(value)
        all_ranks.extend(ranks)
        parts.append(lists)
        done += len(lists)
        if progress is not None:
            progress(done, len(users))
    seconds = time.perf_counter() - started
    lists = np.concatenate(parts) if parts else np.full((0, max(ks)), -1, np.int64)
    arrays = {k: np.concatenate(v).astype(np.float64) for k, v in per_user.items()}
    metrics = {k: float(v.mean()) if len(v) else 0.0 for k, v in arrays.items()}
    metrics.update(list_metrics(lists, train, ks, diversity_users=diversity_users, seed=seed))
    return EvalResult(
        model=name,
        metrics=metrics,
        per_user=arrays,
        users=users,
        ranks=all_ranks,
        info={
            "users": len(users),
            "items": n_items,
            "eval_seconds": round(seconds, 3),
            "protocol": split.protocol,
            "ranking": "full",
        },
    )


def list_metrics(
    lists: np.ndarray, train: sp.csr_matrix, ks: Sequence[int], *, diversity_users: int = 1000, seed: int = 0
) -> dict[str, float]:
    """Catalogue coverage, intra-list diversity, novelty and popularity bias of the top-k lists.

    - ``coverage@k``: share of the catalogue appearing in anyone's top-k;
    - ``diversity@k``: 1 - mean pairwise cosine similarity (over training co-occurrence) of a list's
      items, averaged over up to ``diversity_users`` users (a fixed random sample);
    - ``novelty@k``: mean self-information −log2(share of training users who had the item);
    - ``arp@k``: mean training popularity of recommended items, as a share of users;
    - ``head_share@k``: share of recommended items from the 20% most popular items (popularity bias).
    """
    n_users, n_items = train.shape
    pop = np.asarray(train.sum(axis=0)).ravel()
    share = pop / max(n_users, 1)
    info = -np.log2(np.maximum(share, 1.0 / max(n_users, 1)))
    order = np.argsort(-pop, kind="stable")
    head = np.zeros(n_items, bool)
    head[order[: max(1, math.ceil(0.2 * n_items))]] = True
    norms = np.sqrt(np.maximum(pop, 1))
    x_t = sp.csr_matrix(train.T)
    rng = np.random.default_rng(seed)
    sample = (
        rng.choice(len(lists), size=min(diversity_users, len(lists)), replace=False) if len(lists) else []
    )
    kmax = max(ks)
    # pairwise cosine of each sampled list's items, once at kmax; each k reads its top-left block
    sims = []
    for u in sample:
        items = lists[u][lists[u] >= 0][:kmax]
        vecs = x_t[items]
        sims.append((vecs @ vecs.T).toarray() / np.outer(norms[items], norms[items]))
    out: dict[str, float] = {}
    for k in ks:
        top = lists[:, :k]
        flat = top[top >= 0]
        out[f"coverage@{k}"] = float(len(np.unique(flat)) / n_items) if n_items else 0.0
        out[f"novelty@{k}"] = float(info[flat].mean()) if flat.size else 0.0
        out[f"arp@{k}"] = float(share[flat].mean()) if flat.size else 0.0
        out[f"head_share@{k}"] = float(head[flat].mean()) if flat.size else 0.0
        ild = []
        for co in sims:
            n = min(k, len(co))
            if n >= 2:
                iu = np.triu_indices(n, 1)
                ild.append(1.0 - float(co[:n, :n][iu].mean()))
        out[f"diversity@{k}"] = float(np.mean(ild)) if ild else 0.0
    return out
