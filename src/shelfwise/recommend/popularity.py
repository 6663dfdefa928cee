"""Popularity: overall, per category (the shopper's favourite categories first), time-decayed,
trending. Also how cold items (in the catalogue, no events yet) get a score: the mean popularity
of their category, scaled down by ``cold_item_weight``.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from shelfwise.features.dataset import NO_CODE, Dataset
from shelfwise.recommend.base import Filters, ModelConfig, Recommender

DAY_MS = 86_400_000


class PopularityConfig(ModelConfig):
    mode: Literal["overall", "category", "decay", "trending"] = "overall"
    half_life_days: float = Field(default=14.0, gt=0, description="decay: weight halves every N days")
    window_days: float = Field(default=7.0, gt=0, description="trending: recent window vs the one before")
    category_floor: float = Field(
        default=0.05, ge=0, description="category: weight of items outside the shopper's categories"
    )
    cold_item_weight: float = Field(default=0.5, ge=0, description="cold items: share of category mean")
    dp_epsilon: float | None = Field(
        default=None,
        gt=0,
        description="learn from differentially private counts (OpenDP Laplace) at this ε; the caller "
        "records the release in the store's ledger (None: exact counts)",
    )
    dp_max_contributions: int = Field(
        default=20, ge=1, description="DP: events (distinct items for overall/category) one shopper adds"
    )


def item_popularity(ds: Dataset, matrix: sp.csr_matrix, config: PopularityConfig) -> np.ndarray:
    """One score per item from training events only."""
    if config.dp_epsilon is not None and len(ds):
        return private_item_popularity(ds, matrix, config)
    if config.mode in ("overall", "category") or len(ds) == 0:
        return np.asarray(matrix.sum(axis=0)).ravel().astype(np.float64)
    end = int(ds.ts.max())
    age_days = (end - ds.ts) / DAY_MS
    if config.mode == "decay":
        w = np.power(0.5, age_days / config.half_life_days)
        return np.bincount(ds.items, weights=w, minlength=ds.n_items)
    recent = np.bincount(ds.items[age_days < config.window_days], minlength=ds.n_items).astype(float)
    before = np.bincount(
        ds.items[(age_days >= config.window_days) & (age_days < 2 * config.window_days)], minlength=ds.n_items
    ).astype(float)
    # growth, smoothed so one sale from zero is not "trending", times volume so it is not noise
    return (recent + 1.0) / (before + 1.0) * np.log1p(recent)


def private_item_popularity(ds: Dataset, matrix: sp.csr_matrix, config: PopularityConfig) -> np.ndarray:
    """``item_popularity`` from ε-DP counts: each shopper adds at most ``dp_max_contributions``
    (distinct items for overall/category, events for decay/trending: a random choice of theirs), so
    the count vector's L1 sensitivity is that bound; OpenDP adds Laplace noise of scale bound / ε.
    Scores are computed from the noisy counts (post-processing)."""
    from shelfwise.data.dp import bound_contributions, laplace_counts, laplace_values

    eps, cap = float(config.dp_epsilon or 0.0), config.dp_max_contributions
    n = ds.n_items
    if config.mode in ("overall", "category"):
        coo = matrix.tocoo()
        keep = bound_contributions(coo.row, cap, seed=0)
        counts = np.bincount(coo.col[keep], minlength=n)
        return np.maximum(laplace_counts(counts, epsilon=eps, sensitivity=cap), 0).astype(np.float64)
    keep = bound_contributions(ds.users, cap, seed=0)
    items, ts = ds.items[keep], ds.ts[keep]
    age_days = (int(ds.ts.max()) - ts) / DAY_MS
    if config.mode == "decay":
        w = np.bincount(items, weights=np.power(0.5, age_days / config.half_life_days), minlength=n)
        return np.maximum(laplace_values(w, epsilon=eps, sensitivity=float(cap)), 0.0)
    recent = np.bincount(items[age_days < config.window_days], minlength=n)
    window = (age_days >= config.window_days) & (age_days < 2 * config.window_days)
    before = np.bincount(items[window], minlength=n)
    noisy = np.maximum(laplace_counts(np.concatenate([recent, before]), epsilon=eps, sensitivity=cap), 0)
    r, b = noisy[:n].astype(float), noisy[n:].astype(float)
    return (r + 1.0) / (b + 1.0) * np.log1p(r)


class PopularityRecommender(Recommender):
    name = "popular"
    Config = PopularityConfig
    config: PopularityConfig
    popular_fallback = False  # its own list (trending, decayed…) is what a stranger should get
    _ranked: np.ndarray | None = None  # items best first (``_order``), reset by a fit or a load

    _labels: ClassVar[dict[str, str]] = {
        "overall": "popular overall",
        "decay": "popular lately",
        "trending": "trending now",
        "category": "popular in {category}",
    }

    def _fit(self, dataset: Dataset, matrix: sp.csr_matrix) -> None:
        pop = item_popularity(dataset, matrix, self.config)
        cats = self.state.attributes.category
        n_cat = len(self.state.attributes.category_names)
        cold = (pop == 0) & (cats != NO_CODE)
        if cold.any() and n_cat:
            warm = (pop > 0) & (cats != NO_CODE)
            sums = np.bincount(cats[warm], weights=pop[warm], minlength=n_cat)
            counts = np.bincount(cats[warm], minlength=n_cat)
            mean = np.divide(sums, counts, out=np.zeros(n_cat), where=counts > 0)
            pop[cold] = self.config.cold_item_weight * mean[cats[cold]]
        top = pop.max() if pop.size else 0.0
        self.scores = (pop / top if top > 0 else pop).astype(np.float32)
        self._ranked = None
        if self.config.dp_epsilon is not None:
            self.dp_release = {
                "epsilon": self.config.dp_epsilon,
                "sensitivity": self.config.dp_max_contributions,
                "mechanism": "opendp-laplace",
                "query": f"recommend:popular:{self.config.mode}",
            }

    def _category_onehot(self) -> sp.csr_matrix:
        cats = self.state.attributes.category
        has = np.flatnonzero(cats != NO_CODE)
        return sp.csr_matrix(
            (np.ones(len(has), np.float32), (has, cats[has])),
            shape=(self.n_items, max(len(self.state.attributes.category_names), 1)),
        )

    def _score(self, histories: sp.csr_matrix, users: np.ndarray) -> np.ndarray:
        base = np.broadcast_to(self.scores, (histories.shape[0], self.n_items))
        if self.config.mode != "category" or not len(self.state.attributes.category_names):
            return np.array(base, dtype=np.float32)
        onehot = self._category_onehot()
        affinity = (histories @ onehot).toarray()  # rows × categories
        # the shopper's favourite category weighs 1, others in proportion to how often they bought them
        top = affinity.max(axis=1, keepdims=True)
        affinity = np.divide(affinity, top, out=np.zeros_like(affinity), where=top > 0)
        per_item = (onehot @ affinity.T).T  # rows × items: the row's affinity for the item's category
        return (base * (self.config.category_floor + per_item)).astype(np.float32)

    def _rank(
        self,
        histories: sp.csr_matrix,
        users: np.ndarray,
        k: int,
        *,
        exclude: sp.csr_matrix | None,
        filters: Filters | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Every shopper gets the same scores (except in ``category`` mode), so one ranking of the
        catalogue serves them all: each row walks it, skipping the items excluded for that shopper.
        The same lists as scoring a row per shopper (best first, ties by the lower item id, -1 pads)
        at O(k + excluded) a shopper instead of O(items): precomputing 20,000 shoppers' lists over a
        1M-item catalogue took minutes that way."""
        if self.config.mode == "category" and len(self.state.attributes.category_names):
            return super()._rank(histories, users, k, exclude=exclude, filters=filters)
        order = self._order()
        allowed = self.allowed_mask(filters)
        if not allowed.all():
            order = order[allowed[order]]
        rows, k = histories.shape[0], min(k, self.n_items)
        idx = np.full((rows, k), -1, np.int64)
        vals = np.full((rows, k), -np.inf, np.float32)
        for r in range(rows):
            seen = exclude.indices[exclude.indptr[r] : exclude.indptr[r + 1]] if exclude is not None else ()
            head = order[: k + len(seen)]
            if len(seen):
                head = head[~np.isin(head, seen)][:k]
            idx[r, : len(head)] = head
            vals[r, : len(head)] = self.scores[head]
        return idx, vals

    def _order(self) -> np.ndarray:
        """Items best first, ties by the lower item id (``top_k``'s order), computed once per fit
        or load (the scores are not changed in place after either)."""
        order = self._ranked
        if order is None:
            order = np.argsort(-self.scores, kind="stable")
            self._ranked = order
        return order

    def _reasons(self, history: np.ndarray, items: np.ndarray) -> list[str]:
        label = self._labels[self.config.mode]
        if self.config.mode != "category":
            return [label] * len(items)
        attrs = self.state.attributes
        return [
            label.format(category=attrs.category_names[attrs.category[i]])
            if attrs.category[i] != NO_CODE
            else "popular overall"
            for i in items
        ]

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"scores": self.scores}

    def _set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.scores = arrays["scores"]
        self._ranked = None
