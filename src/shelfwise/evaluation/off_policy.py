"""Off-policy evaluation of an exploration slot from the impression log: how often would a
candidate policy's pick at the slot have been clicked, estimated from what the logging policy
showed (IPS, self-normalised IPS and doubly robust: ``simulated_experiments.off_policy_estimates``).

Each explored impression gives: the item shown at the slot, its logged propensity, and the reward
(1 when an attributed click landed on that position). The candidate policy is a function of the
impression returning its probabilities over items for the slot. The doubly robust estimate's
reward model is each item's click rate at the slot from the other half of the logs (cross-fitted,
shrunk towards the slot's mean), so the model never sees the log it corrects.

    >>> target = lambda imp: {imp.items[2]: 1.0}      # always promote the third item   # doctest: +SKIP
    >>> ope_from_logs(store, placement="home", slot=0, target=target)                     # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from shelfwise.evaluation.simulated_experiments import off_policy_estimates
from shelfwise.store.base import Store
from shelfwise.store.impressions import Impression, clicked_positions, iter_impressions

TargetPolicy = Callable[[Impression], Mapping[str, float]]


def _rates(items: list[str], rewards: np.ndarray, prior_weight: float) -> tuple[dict[str, float], float]:
    mean = float(rewards.mean()) if rewards.size else 0.0
    sums: dict[str, list[float]] = {}
    for item, r in zip(items, rewards, strict=True):
        s = sums.setdefault(item, [0.0, 0.0])
        s[0] += r
        s[1] += 1
    return {i: (c + prior_weight * mean) / (n + prior_weight) for i, (c, n) in sums.items()}, mean


def ope_from_logs(
    store: Store,
    *,
    placement: str,
    slot: int,
    target: TargetPolicy,
    since: int | None = None,
    until: int | None = None,
    prior_weight: float = 10.0,
    seed: int = 0,
) -> dict[str, Any]:
    """Estimates of the candidate policy's click rate at ``slot`` (0-based) on ``placement``."""
    logs = [
        imp
        for imp in iter_impressions(store, placement=placement, since=since, until=until, explored_only=True)
        if imp.propensities is not None and slot < len(imp.items)
    ]
    if len(logs) < 2:
        return {"logs": len(logs), "note": "fewer than two explored impressions at this slot"}
    clicked = clicked_positions(store, [i.answer_id for i in logs])
    shown = [imp.items[slot] for imp in logs]
    propensity = np.array([float(imp.propensities[slot]) for imp in logs])  # type: ignore[index]
    reward = np.array([1.0 if slot + 1 in clicked.get(imp.answer_id, ()) else 0.0 for imp in logs])
    policies = [dict(target(imp)) for imp in logs]
    target_prob = np.array([p.get(item, 0.0) for p, item in zip(policies, shown, strict=True)])
    folds = np.random.default_rng(seed).integers(0, 2, len(logs))
    q_logged = np.empty(len(logs))
    q_target = np.empty(len(logs))
    for f in (0, 1):
        train = np.flatnonzero(folds != f)
        rates, mean = _rates([shown[i] for i in train], reward[train], prior_weight)
        for i in np.flatnonzero(folds == f):
            q_logged[i] = rates.get(shown[i], mean)
            q_target[i] = sum(p * rates.get(item, mean) for item, p in policies[i].items())
    est = off_policy_estimates(reward, propensity, target_prob, q_logged, q_target)
    return {
        "logs": len(logs),
        "slot": slot,
        "logging_click_rate": float(reward.mean()),
        "matched_logs": int((target_prob > 0).sum()),
        "min_propensity": float(propensity.min()),
        "estimates": est,
    }


def slot_click_stats(
    store: Store, *, placement: str, slot: int, since: int | None = None
) -> dict[str, tuple[float, float]]:
    """``{item: (clicks, impressions)}`` at ``slot`` (0-based) on ``placement``: what
    ``recommend.exploration.thompson_slot`` takes. Refresh it periodically, not per request."""
    logs = [i for i in iter_impressions(store, placement=placement, since=since) if slot < len(i.items)]
    clicked = clicked_positions(store, [i.answer_id for i in logs])
    out: dict[str, list[float]] = {}
    for imp in logs:
        s = out.setdefault(imp.items[slot], [0.0, 0.0])
        s[1] += 1
        s[0] += 1.0 if slot + 1 in clicked.get(imp.answer_id, ()) else 0.0
    return {item: (c, n) for item, (c, n) in out.items()}
