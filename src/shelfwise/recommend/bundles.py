"""Bought together: co-purchase counts over baskets plus association rules (efficient-apriori),
recommending from a whole cart, not one item.

A basket is one shopper's events with no gap longer than ``basket_gap_minutes`` (an invoice's lines
share one time, so each invoice is a basket). ``conf(i→j) = co(i, j) / (n_i + shrinkage)``; a
cart scores item j by summing its items' confidences, plus the confidence of every mined rule
whose whole antecedent (one or two items) is in the cart — so {tea, teapot} → cups counts for a
cart holding both, on top of what tea and teapot each suggest.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from shelfwise.features.dataset import Dataset
from shelfwise.recommend.base import ModelConfig, Recommender
from shelfwise.recommend.memory import COO_ENTRY, MatrixShape
from shelfwise.recommend.neighbours import keep_top_per_row

MINUTE_MS = 60_000


def basket_ids(ds: Dataset, *, gap_minutes: float) -> np.ndarray:
    """A basket number for every event row (same user, no gap over ``gap_minutes``)."""
    order = np.lexsort((ds.ts, ds.users))
    u, t = ds.users[order], ds.ts[order]
    new = np.ones(len(order), bool)
    new[1:] = (u[1:] != u[:-1]) | (np.diff(t) > gap_minutes * MINUTE_MS)
    ids = np.empty(len(order), np.int64)
    ids[order] = np.cumsum(new) - 1
    return ids


def basket_matrix(ds: Dataset, *, gap_minutes: float) -> sp.csr_matrix:
    """Baskets × items, binary."""
    b = basket_ids(ds, gap_minutes=gap_minutes)
    m = sp.csr_matrix(
        (np.ones(len(b), np.float32), (b, ds.items)), shape=(int(b.max(initial=-1)) + 1, ds.n_items)
    )
    m.sum_duplicates()
    m.data[:] = 1
    return m


class BoughtTogetherConfig(ModelConfig):
    train_types: list[str] | None = Field(default=None, description="e.g. ['purchase', 'cart']")
    basket_gap_minutes: float = Field(default=60.0, gt=0)
    shrinkage: float = Field(default=5.0, ge=0)
    neighbours: int = Field(default=100, ge=1)
    min_support: float = Field(default=0.005, gt=0, le=1, description="association rules: share of baskets")
    min_confidence: float = Field(default=0.2, gt=0, le=1)
    max_rules: int = Field(default=50_000, ge=0)
    max_basket: int = Field(default=50, ge=2, description="longer baskets are left out of rule mining")


class BoughtTogetherRecommender(Recommender):
    name = "bought-together"
    Config = BoughtTogetherConfig
    config: BoughtTogetherConfig
    reason_default = "popular overall"

    def _fit_bytes(self, shape: MatrixShape) -> int:
        # baskets are parts of shoppers' histories, so their co-occurrences are bounded by the shoppers'
        return shape.co_occurrences() * (12 + COO_ENTRY + 12) + 12 * shape.n_items * self.config.neighbours

    def _fit(self, dataset: Dataset, matrix: sp.csr_matrix) -> None:
        c = self.config
        baskets = basket_matrix(dataset, gap_minutes=c.basket_gap_minutes)
        co = sp.csr_matrix(baskets.T @ baskets)
        co.setdiag(0)
        co.eliminate_zeros()
        n = np.asarray(baskets.sum(axis=0)).ravel()
        co = sp.coo_matrix(co)
        conf = co.data / (n[co.row] + c.shrinkage)
        self.conf = keep_top_per_row(
            sp.csr_matrix((conf.astype(np.float32), (co.row, co.col)), shape=co.shape), c.neighbours
        )
        self.rule_a, self.rule_b, self.rule_to, self.rule_conf, self.rule_lift = self._mine(baskets)
        top = float(self.state.popularity.max(initial=0))
        self.pop = (self.state.popularity / top if top > 0 else self.state.popularity).astype(np.float32)

    def _mine(self, baskets: sp.csr_matrix) -> tuple[np.ndarray, ...]:
        """Rules with one or two items before the arrow and one after."""
        from efficient_apriori import apriori

        c = self.config
        sizes = np.diff(baskets.indptr)
        transactions = [
            tuple(baskets.indices[baskets.indptr[r] : baskets.indptr[r + 1]].tolist())
            for r in np.flatnonzero((sizes >= 2) & (sizes <= c.max_basket))
        ]
        empty = (np.empty(0, np.int32),) * 3 + (np.empty(0, np.float32),) * 2
        if len(transactions) < 2 or c.max_rules == 0:
            return empty
        _, rules = apriori(
            transactions, min_support=c.min_support, min_confidence=c.min_confidence, max_length=3
        )
        rules = [r for r in rules if len(r.rhs) == 1 and len(r.lhs) <= 2]
        rules.sort(key=lambda r: (-r.confidence, -r.lift))
        rules = rules[: c.max_rules]
        if not rules:
            return empty
        a = np.array([r.lhs[0] for r in rules], np.int32)
        b = np.array([r.lhs[1] if len(r.lhs) == 2 else -1 for r in rules], np.int32)
        to = np.array([r.rhs[0] for r in rules], np.int32)
        return (
            a,
            b,
            to,
            np.array([r.confidence for r in rules], np.float32),
            np.array([r.lift for r in rules], np.float32),
        )

    def _score(self, histories: sp.csr_matrix, users: np.ndarray) -> np.ndarray:
        h = sp.csr_matrix(histories, dtype=np.float32)
        h.data[:] = 1
        scores = np.asarray((h @ self.conf).toarray(), dtype=np.float32)
        if len(self.rule_to):
            dense = h[:, self.rule_a].toarray() > 0
            if (self.rule_b >= 0).any():
                has_b = np.where(self.rule_b >= 0, h[:, np.maximum(self.rule_b, 0)].toarray() > 0, True)
                dense &= has_b
            rows, rule = np.nonzero(dense)
            np.add.at(scores, (rows, self.rule_to[rule]), self.rule_conf[rule])
        # a tiny popularity term orders items no basket links to the cart
        return scores + 1e-4 * self.pop[None, :]

    def _similar_scores(self, items: np.ndarray) -> np.ndarray:
        return np.asarray(self.conf[items].toarray(), dtype=np.float32)

    def _reasons(self, history: np.ndarray, items: np.ndarray) -> list[str]:
        if not len(history):
            return [self.reason_default] * len(items)
        block = self.conf[history][:, items].toarray()
        best = block.argmax(axis=0)
        return [
            f"bought together with {self._label(history[b])}" if block[b, j] > 0 else self.reason_default
            for j, b in enumerate(best)
        ]

    def _arrays(self) -> dict[str, np.ndarray]:
        return {
            "conf_data": self.conf.data,
            "conf_indices": self.conf.indices,
            "conf_indptr": self.conf.indptr,
            "conf_shape": np.array(self.conf.shape),
            "rule_a": self.rule_a,
            "rule_b": self.rule_b,
            "rule_to": self.rule_to,
            "rule_conf": self.rule_conf,
            "rule_lift": self.rule_lift,
            "pop": self.pop,
        }

    def _set_arrays(self, a: dict[str, np.ndarray]) -> None:
        self.conf = sp.csr_matrix(
            (a["conf_data"], a["conf_indices"], a["conf_indptr"]),
            shape=tuple(int(x) for x in a["conf_shape"]),
        )
        self.rule_a, self.rule_b, self.rule_to = a["rule_a"], a["rule_b"], a["rule_to"]
        self.rule_conf, self.rule_lift, self.pop = a["rule_conf"], a["rule_lift"], a["pop"]

    @property
    def n_rules(self) -> int:
        return len(self.rule_to)
