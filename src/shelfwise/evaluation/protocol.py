"""One call from data to metrics: split (leave-one-out or temporal), fit on the training part
only, rank every item for every test user. What ``shelfwise evaluate`` and the benchmarks run.

Any ``Recommender`` works, including families registered later (SASRec, two-tower…): the
evaluation needs only ``fit`` and ``score_users``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np

from shelfwise.evaluation.ranking import EvalResult, evaluate
from shelfwise.features.dataset import Dataset
from shelfwise.features.splits import Split, leave_one_out, temporal_split
from shelfwise.recommend.base import ModelConfig, Recommender
from shelfwise.recommend.bundles import basket_ids
from shelfwise.recommend.registry import model_from_config

Protocol = Literal["loo", "temporal"]


def make_split(dataset: Dataset, protocol: Protocol, *, test_fraction: float = 0.2) -> Split:
    if protocol == "loo":
        return leave_one_out(dataset)
    if protocol == "temporal":
        return temporal_split(dataset, test_fraction=test_fraction)
    raise ValueError(f"unknown protocol {protocol!r}")


def fit_and_evaluate(
    split: Split,
    model: Recommender | dict[str, Any] | ModelConfig,
    *,
    ks: Sequence[int] = (10, 20),
    name: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[Recommender, EvalResult]:
    """Fit ``model`` on ``split.train`` and evaluate it on ``split.test`` (full ranking)."""
    rec = model if isinstance(model, Recommender) else model_from_config(model)
    rec.fit(split.train)
    result = evaluate(rec, split, name=name or rec.name, ks=ks, progress=progress)
    result.info["train_seconds"] = rec.train_seconds
    result.metrics["train_seconds"] = rec.train_seconds
    return rec, result


def basket_hit_rate(
    model: Recommender,
    held_out: Dataset,
    *,
    k: int = 10,
    gap_minutes: float = 60.0,
    max_baskets: int = 5000,
    seed: int = 0,
) -> dict[str, float]:
    """Bought-together quality on held-out baskets: hide one item of each basket (of known items,
    two or more of them), recommend from the rest of the cart, and count how often the hidden
    item is in the top ``k``."""
    known = set(model.item_map.external.tolist())
    ids = basket_ids(held_out, gap_minutes=gap_minutes)
    order = np.argsort(ids, kind="stable")
    bounds = np.flatnonzero(np.diff(ids[order])) + 1
    rng = np.random.default_rng(seed)
    external = held_out.item_map.external
    carts = []
    for rows in np.split(order, bounds):
        items = [i for i in dict.fromkeys(external[held_out.items[rows]].tolist()) if i in known]
        if len(items) >= 2:
            carts.append(items)
    if len(carts) > max_baskets:
        carts = [carts[i] for i in rng.choice(len(carts), max_baskets, replace=False)]
    hits = 0
    for items in carts:
        hidden = items[int(rng.integers(len(items)))]
        rest = [i for i in items if i != hidden]
        rec = model.recommend_for_events(rest, k=k)
        hits += hidden in rec.items
    return {f"basket_hr@{k}": hits / len(carts) if carts else 0.0, "baskets": float(len(carts))}
