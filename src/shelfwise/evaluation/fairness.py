"""Fairness of exposure: how the attention of top-k lists (position-weighted, ``1/log2(pos+2)``)
is shared across item groups — brands, sellers, price bands, new vs established items — against
what each group holds of the catalogue and of the shoppers' held-out demand; and the NDCG/exposure
trade-off of the calibrated re-ranking knob (``shelfwise.recommend.exposure``).

Figures per group: ``exposure_share`` (of all exposure given to items of known group),
``catalogue_share``, ``demand_share`` (held-out interactions), and ``exposure_ratio`` = exposure /
catalogue share. Per kind: ``exposure_gap`` = total variation distance between exposure and
catalogue shares (0: exposure follows the catalogue; 1: disjoint), and ``item_exposure_gini`` over
all items (0: every item equally exposed).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from shelfwise.evaluation.ranking import Scorer, evaluate
from shelfwise.features.splits import Split
from shelfwise.recommend.exposure import (
    ItemGroups,
    calibrate,
    catalogue_target,
    item_groups,
    position_weights,
)

KINDS = ("brand", "price_band", "new", "seller")


def top_lists(model: Scorer, split: Split, *, k: int = 10, batch: int = 512) -> np.ndarray:
    """Each test user's top-``k`` (training items excluded), ``-1`` padded."""
    train = split.train.matrix()
    users = split.test_users
    out = np.full((len(users), k), -1, np.int64)
    for lo in range(0, len(users), batch):
        chunk = users[lo : lo + batch]
        scores = np.array(model.score_users(chunk), dtype=np.float32)
        rows, cols = train[chunk].nonzero()
        scores[rows, cols] = -np.inf
        kk = min(k, scores.shape[1])
        part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
        vals = np.take_along_axis(scores, part, axis=1)
        order = np.lexsort((part, -vals), axis=1)
        top = np.take_along_axis(part, order, axis=1)
        top[np.isneginf(np.take_along_axis(vals, order, axis=1))] = -1
        out[lo : lo + len(chunk), :kk] = top
    return out


def gini(values: np.ndarray) -> float:
    v = np.sort(np.asarray(values, np.float64))
    n, total = len(v), v.sum()
    if n == 0 or total <= 0:
        return 0.0
    return float((2 * np.arange(1, n + 1) - n - 1).dot(v) / (n * total))


def exposure_report(
    lists: np.ndarray, groups: ItemGroups, *, n_items: int, demand: sp.csr_matrix | None = None
) -> dict[str, Any]:
    """Exposure shares of ``lists`` (rows of item ids, ``-1`` padded) across ``groups``."""
    k = lists.shape[1] if lists.ndim == 2 else 0
    w = np.broadcast_to(position_weights(k), lists.shape)
    valid = lists >= 0
    per_item = np.bincount(lists[valid], weights=w[valid], minlength=n_items)
    out: dict[str, Any] = {"kind": groups.kind, "item_exposure_gini": round(gini(per_item), 4)}
    if not groups.n or not (groups.codes >= 0).any():
        out["available"] = False
        return out
    known = groups.codes >= 0
    exp = np.bincount(groups.codes[known], weights=per_item[known], minlength=groups.n)
    exp_share = exp / max(exp.sum(), 1e-12)
    cat_share = catalogue_target(groups)
    dem_share = np.zeros(groups.n)
    if demand is not None and demand.nnz:
        cols = demand.tocoo().col
        codes = groups.codes[cols]
        dem = np.bincount(codes[codes >= 0], minlength=groups.n).astype(float)
        dem_share = dem / max(dem.sum(), 1e-12)
    out.update(
        available=True,
        exposure_gap=round(float(0.5 * np.abs(exp_share - cat_share).sum()), 4),
        demand_gap=round(float(0.5 * np.abs(exp_share - dem_share).sum()), 4) if demand is not None else None,
        groups=[
            {
                "group": name,
                "exposure_share": round(float(exp_share[i]), 4),
                "catalogue_share": round(float(cat_share[i]), 4),
                "demand_share": round(float(dem_share[i]), 4),
                "exposure_ratio": round(float(exp_share[i] / cat_share[i]), 3) if cat_share[i] > 0 else None,
            }
            for i, name in enumerate(groups.names)
        ],
    )
    return out


def fairness_figures(
    model: Scorer,
    split: Split,
    *,
    k: int = 10,
    sellers: np.ndarray | None = None,
    kinds: Sequence[str] = KINDS,
) -> dict[str, Any]:
    """Exposure reports of the model's top-``k`` lists for every group kind the catalogue has."""
    lists = top_lists(model, split, k=k)
    n_items = split.train.n_items
    out: dict[str, Any] = {"k": k, "users": len(lists)}
    for kind in kinds:
        groups = item_groups(split.train, kind, sellers=sellers)  # type: ignore[arg-type]
        out[kind] = exposure_report(lists, groups, n_items=n_items, demand=split.test)
    return out


class CalibratedScorer:
    """A scorer whose top-``k`` is the calibrated re-ranking of ``model``'s (training items
    excluded first, as the evaluation would), so ``evaluate`` measures NDCG@k of the knob."""

    def __init__(
        self, model: Scorer, split: Split, groups: ItemGroups, target: np.ndarray, *, lam: float, k: int = 10
    ) -> None:
        self.model, self.groups, self.target, self.lam, self.k = model, groups, target, lam, k
        self.train = split.train.matrix()

    def score_users(self, users: np.ndarray) -> np.ndarray:
        scores = np.array(self.model.score_users(users), dtype=np.float32)
        rows, cols = self.train[users].nonzero()
        scores[rows, cols] = -np.inf
        top = calibrate(scores, self.groups, self.target, lam=self.lam, k=self.k)
        boost = np.float32(1e6) - np.arange(self.k, dtype=np.float32)
        r = np.repeat(np.arange(len(users)), self.k)
        flat = top.ravel()
        ok = flat >= 0
        scores[r[ok], flat[ok]] = np.broadcast_to(boost, top.shape).ravel()[ok]
        return scores


def exposure_tradeoff(
    model: Scorer,
    split: Split,
    kind: str,
    *,
    lambdas: Sequence[float] = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9),
    k: int = 10,
    target: str = "catalogue",
) -> list[dict[str, Any]]:
    """NDCG@k, recall@k and the exposure gap of the calibrated re-ranking at each λ."""
    groups = item_groups(split.train, kind)  # type: ignore[arg-type]
    if target == "catalogue":
        goal = catalogue_target(groups)
    else:  # the shoppers' training demand
        cols = split.train.matrix().tocoo().col
        codes = groups.codes[cols]
        goal = np.bincount(codes[codes >= 0], minlength=groups.n).astype(float)
        goal /= max(goal.sum(), 1.0)
    rows = []
    for lam in lambdas:
        scorer = CalibratedScorer(model, split, groups, goal, lam=lam, k=k)
        result = evaluate(scorer, split, ks=(k,), diversity_users=0)
        lists = top_lists(scorer, split, k=k)
        report = exposure_report(lists, groups, n_items=split.train.n_items, demand=split.test)
        rows.append(
            {
                "lambda": lam,
                f"ndcg@{k}": round(result.metrics[f"ndcg@{k}"], 5),
                f"recall@{k}": round(result.metrics[f"recall@{k}"], 5),
                "exposure_gap": report.get("exposure_gap"),
                "item_exposure_gini": report["item_exposure_gini"],
                "shares": {g["group"]: g["exposure_share"] for g in report.get("groups", [])},
            }
        )
    return rows
