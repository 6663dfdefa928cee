"""Recommendation's two stages under the shared contract (``shelfwise.features.retrieval``), for one
shopper at a time: any fitted recommender is a retriever, and the hybrid recommender's learned
ranker orders their union and explains each item by the retriever that ranked it best.

    retrievers, ranker = hybrid_stages(model)           # a fitted HybridRecommender
    query = ShopperQuery(history=codes, user=code)
    ranked = ranker.rank(query, [r.retrieve(query, 100) for r in retrievers])
    ranked.reasons = ranker.explain(query, ranked)

``HybridRecommender`` serves blocks of shoppers with the same stages vectorised (one scoring call
per retriever for the whole block); these classes are the same stages one shopper at a time, so
search, tools and tests see both engines through one contract. Ids are item codes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from shelfwise.features.retrieval import Candidates, Ranked, union_of
from shelfwise.recommend.base import Recommender
from shelfwise.recommend.hybrid import HybridRecommender


@dataclass(frozen=True)
class ShopperQuery:
    """One shopper as the stages see them: the item codes they already have (never proposed
    again) and their user code (-1: a stranger, or a session with no account)."""

    history: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    user: int = -1

    def matrix(self, n_items: int) -> sp.csr_matrix:
        """The history as a one-row interaction matrix (what a recommender scores)."""
        cols = np.unique(self.history.astype(np.int64))
        data = np.ones(len(cols), np.float32)
        return sp.csr_matrix((data, (np.zeros(len(cols), np.int64), cols)), shape=(1, n_items))


class RecommenderRetriever:
    """A fitted recommender as a stage-1 retriever: the ``k`` items it scores highest that the
    shopper does not have yet."""

    def __init__(self, model: Recommender, name: str | None = None) -> None:
        self.model = model
        self._name = name or model.name.replace("-", "_")

    @property
    def name(self) -> str:
        return self._name

    def retrieve(self, query: ShopperQuery, k: int) -> Candidates:
        n = self.model.n_items
        scores = np.asarray(self.model._score(query.matrix(n), np.array([query.user])), np.float32)[0]
        masked = scores.copy()
        masked[query.history.astype(np.int64)] = -np.inf
        k = min(k, n)
        top = np.argpartition(-masked, k - 1)[:k] if 0 < k < n else np.arange(n if k > 0 else 0)
        top = top[np.isfinite(masked[top])]
        top = top[np.argsort(-masked[top], kind="stable")]
        return Candidates(self.name, top.astype(np.int64), masked[top])


class HybridRanker:
    """The hybrid recommender's stage 2 (LambdaRank over its retrievers' features, or their
    reciprocal-rank fusion while too little data trained no ranker) for one shopper."""

    def __init__(self, model: HybridRecommender) -> None:
        self.model = model

    def rank(self, query: ShopperQuery, candidates: Sequence[Candidates]) -> Ranked:
        ids = union_of(candidates)
        row = np.asarray(self.model._score(query.matrix(self.model.n_items), np.array([query.user])))[0]
        scores = row[ids].astype(np.float32)
        order = np.argsort(-scores, kind="stable")
        ids, scores = ids[order], scores[order]
        sources = {}
        for c in candidates:  # each retriever's own score for every ranked item (0: not proposed)
            own = dict(zip(c.ids.tolist(), c.scores.tolist(), strict=True))
            sources[c.source] = np.array([own.get(i, 0.0) for i in ids.tolist()], np.float32)
        return Ranked(ids, scores, sources)

    def explain(self, query: ShopperQuery, ranked: Ranked) -> list[str]:
        return self.model._reasons(query.history.astype(np.int64), ranked.ids)


def hybrid_stages(model: HybridRecommender) -> tuple[list[RecommenderRetriever], HybridRanker]:
    """A fitted hybrid recommender's retrievers (named as in its config) and its ranker."""
    stage = model.stage
    retrievers = [
        RecommenderRetriever(r, label) for r, label in zip(stage.retrievers, stage.labels, strict=True)
    ]
    return retrievers, HybridRanker(model)
