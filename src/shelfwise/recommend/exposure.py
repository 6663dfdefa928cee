"""Fairness of exposure: item groups (brand, seller, price band, new vs established) and a
re-ranking knob that calibrates a list's exposure across groups.

``calibrate`` is Steck's calibrated re-ranking (RecSys 2018) applied to exposure: from each list's
best ``candidates`` items it picks, greedily, the item that maximises
``(1 − λ)·score + λ·(−KL(target ‖ exposure of the list so far))``, with each position's exposure
weighted ``1 / log2(position + 2)``. ``λ = 0`` is the model's own order; ``λ → 1`` makes every
list's exposure follow ``target`` (by default: the groups' share of the catalogue's items, or of
the shoppers' demand). Scores are scaled to [0, 1] within each list, so λ means the same for every
model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from shelfwise.features.dataset import NO_CODE, Dataset

DAY_MS = 86_400_000
GroupKind = Literal["brand", "price_band", "new", "seller"]
PRICE_BANDS = ("low", "mid", "high", "premium")


@dataclass(frozen=True)
class ItemGroups:
    """One group code per item (``-1``: unknown) and the groups' names."""

    kind: str
    codes: np.ndarray  # int64 per item
    names: tuple[str, ...]

    @property
    def n(self) -> int:
        return len(self.names)


def item_groups(
    ds: Dataset,
    kind: GroupKind,
    *,
    top_brands: int = 10,
    new_days: float | None = None,
    sellers: np.ndarray | None = None,
) -> ItemGroups:
    """Items grouped by ``kind`` from ``ds`` (pass a split's training part: "new" is judged at its
    end). Brands: the ``top_brands`` with the most items, the rest "other brands"; price bands:
    quartiles of the known prices; new: first event in the last ``new_days`` (default: 30 days,
    or the last fifth of the data's span when that is shorter), or no event at all."""
    attrs = ds.item_attributes
    n = ds.n_items
    if kind == "brand":
        known = attrs.brand != NO_CODE
        counts = np.bincount(attrs.brand[known], minlength=len(attrs.brand_names))
        top = np.argsort(-counts, kind="stable")[:top_brands]
        top = top[counts[top] > 0]
        remap = np.full(len(attrs.brand_names) + 1, len(top), np.int64)
        remap[top] = np.arange(len(top))
        codes = np.where(known, remap[np.where(known, attrs.brand, 0)], -1)
        return ItemGroups("brand", codes, (*[str(attrs.brand_names[b]) for b in top], "other brands"))
    if kind == "price_band":
        price = attrs.price
        ok = np.isfinite(price) & (price > 0)
        if not ok.any():
            return ItemGroups("price_band", np.full(n, -1, np.int64), PRICE_BANDS)
        cuts = np.quantile(price[ok], [0.25, 0.5, 0.75])
        codes = np.where(ok, np.searchsorted(cuts, np.where(ok, price, 0), side="right"), -1)
        return ItemGroups("price_band", codes.astype(np.int64), PRICE_BANDS)
    if kind == "new":
        first = np.full(n, np.iinfo(np.int64).max, np.int64)
        np.minimum.at(first, ds.items, ds.ts)
        end = int(ds.ts.max()) if len(ds) else 0
        span = end - int(ds.ts.min()) if len(ds) else 0
        window = int(new_days * DAY_MS) if new_days is not None else min(30 * DAY_MS, span // 5)
        new = first >= end - window  # never seen counts as new
        return ItemGroups("new", new.astype(np.int64), ("established", "new"))
    if kind == "seller":
        if sellers is None:
            return ItemGroups("seller", np.full(n, -1, np.int64), ())
        values, codes = np.unique(np.asarray(sellers, dtype=str), return_inverse=True)
        return ItemGroups("seller", codes.astype(np.int64), tuple(values.tolist()))
    raise ValueError(f"unknown item group kind {kind!r}")


def position_weights(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(k) + 2.0)


def catalogue_target(groups: ItemGroups, available: np.ndarray | None = None) -> np.ndarray:
    """Each group's share of the (available) catalogue's items with a known group."""
    mask = groups.codes >= 0
    if available is not None:
        mask &= available
    counts = np.bincount(groups.codes[mask], minlength=groups.n).astype(np.float64)
    return counts / max(counts.sum(), 1.0)


def calibrate(
    scores: np.ndarray,
    groups: ItemGroups,
    target: np.ndarray,
    *,
    lam: float,
    k: int = 10,
    candidates: int = 100,
    smoothing: float = 0.01,
) -> np.ndarray:
    """Re-ranked top-``k`` item ids per row (``-1`` where fewer than ``k`` items have finite
    scores). Items of unknown group add no exposure to any group."""
    rows, n_items = scores.shape
    c = min(candidates, n_items)
    k = min(k, c)
    out = np.full((rows, k), -1, np.int64)
    if not rows:
        return out
    cand = (
        np.argpartition(-scores, c - 1, axis=1)[:, :c]
        if c < n_items
        else np.tile(np.arange(n_items), (rows, 1))
    )
    cand_scores = np.take_along_axis(scores, cand, axis=1)
    order = np.argsort(-cand_scores, axis=1, kind="stable")
    cand = np.take_along_axis(cand, order, axis=1)
    cand_scores = np.take_along_axis(cand_scores, order, axis=1)
    finite = np.isfinite(cand_scores)
    lo = np.where(finite, cand_scores, np.inf).min(axis=1, keepdims=True)
    hi = np.where(finite, cand_scores, -np.inf).max(axis=1, keepdims=True)
    span = np.where(hi > lo, hi - lo, 1.0)
    norm = np.where(finite, (cand_scores - lo) / span, -np.inf)
    g = groups.codes[cand]  # rows × c
    q = np.asarray(target, np.float64)
    q = q / max(q.sum(), 1e-12)
    weights = position_weights(k)
    onehot = np.zeros((rows, c, max(groups.n, 1)))
    known = g >= 0
    r_idx, c_idx = np.nonzero(known)
    onehot[r_idx, c_idx, g[known]] = 1.0
    exposure = np.zeros((rows, max(groups.n, 1)))
    taken = ~finite
    arange = np.arange(rows)
    for pos in range(k):
        if lam > 0 and groups.n:
            trial = exposure[:, None, :] + weights[pos] * onehot  # rows × c × G
            total = trial.sum(axis=2, keepdims=True)
            p = np.divide(trial, total, out=np.zeros_like(trial), where=total > 0)
            p = (1 - smoothing) * p + smoothing * q[None, None, :]
            with np.errstate(divide="ignore", invalid="ignore"):
                kl = np.where(q > 0, q * np.log(q / p), 0.0).sum(axis=2)
            objective = (1 - lam) * norm - lam * kl
        else:
            objective = norm.copy()
        objective = np.where(taken, -np.inf, objective)
        best = np.argmax(objective, axis=1)
        ok = np.isfinite(objective[arange, best])
        out[ok, pos] = cand[arange[ok], best[ok]]
        exposure[ok] += weights[pos] * onehot[arange[ok], best[ok]]
        taken[arange[ok], best[ok]] = True
    return out
