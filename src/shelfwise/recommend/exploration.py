"""An exploration slot: one position of a ranked list is filled by a bandit, and the probability of
what it showed (the propensity) is returned for the impression log, so a candidate policy can later
be evaluated off-policy from the logs (``shelfwise.evaluation.off_policy``).

Two policies over the items at and below the slot (``pool`` of them):

- Thompson sampling with a Beta(1 + clicks, 1 + impressions - clicks) posterior per item
  (Chapelle & Li, NIPS 2011); its propensity, the chance that the shown item's draw is the
  largest, is estimated from ``draws`` Monte Carlo samples (floored at ``1 / draws``);
- ε-greedy: the ranker's item with probability 1 - ε, else a uniform pick; exact propensities.

Other positions are deterministic given the slot's pick (the rest keep their order): their
propensity is 1.

    >>> rng = np.random.default_rng(0)
    >>> out = epsilon_greedy_slot(["a", "b", "c", "d"], slot=1, epsilon=0.2, pool=3, rng=rng)
    >>> out.items[0], len(out.propensities), out.propensities[0]
    ('a', 4, 1.0)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ExploredList:
    items: list[str]
    propensities: list[float]  # one per position
    slot: int  # 0-based
    explored: bool  # the slot shows something other than the ranker's item there


def _place(ranked: Sequence[str], slot: int, chosen: str) -> list[str]:
    rest = [i for i in ranked[slot:] if i != chosen]
    return [*ranked[:slot], chosen, *rest]


def _check(ranked: Sequence[str], slot: int, pool: int) -> list[str]:
    if not 0 <= slot < len(ranked):
        raise ValueError(f"slot {slot} is outside a list of {len(ranked)}")
    if pool < 1:
        raise ValueError(f"pool must be >= 1, got {pool}")
    return list(ranked[slot : slot + pool])


def epsilon_greedy_slot(
    ranked: Sequence[str], *, slot: int, epsilon: float, pool: int, rng: np.random.Generator
) -> ExploredList:
    """Keep the ranker's item at ``slot`` with probability ``1 - epsilon``, else show a uniform pick
    of the ``pool`` items from ``slot`` down."""
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"epsilon must be within [0, 1], got {epsilon}")
    candidates = _check(ranked, slot, pool)
    m = len(candidates)
    pick = int(rng.integers(0, m)) if rng.random() < epsilon else 0
    prop = (1 - epsilon + epsilon / m) if pick == 0 else epsilon / m
    props = [1.0] * len(ranked)
    props[slot] = float(prop)
    return ExploredList(_place(ranked, slot, candidates[pick]), props, slot, pick != 0)


def thompson_slot(
    ranked: Sequence[str],
    stats: Mapping[str, tuple[float, float]],
    *,
    slot: int,
    pool: int,
    rng: np.random.Generator,
    draws: int = 2_000,
) -> ExploredList:
    """Fill ``slot`` with the item whose posterior click-rate draw is highest among the ``pool``
    items from ``slot`` down; ``stats[item] = (clicks, impressions)`` (absent: no data)."""
    candidates = _check(ranked, slot, pool)
    clicks = np.array([stats.get(i, (0.0, 0.0))[0] for i in candidates], np.float64)
    shown = np.array([stats.get(i, (0.0, 0.0))[1] for i in candidates], np.float64)
    if (clicks < 0).any() or (shown < clicks).any():
        bad = [i for i, c, n in zip(candidates, clicks, shown, strict=True) if c < 0 or n < c]
        raise ValueError(f"click stats must be 0 <= clicks <= impressions; not so for {bad[:3]}")
    a, b = 1.0 + clicks, 1.0 + shown - clicks
    pick = int(np.argmax(rng.beta(a, b)))
    # the propensity: how often this item's draw wins, by Monte Carlo
    wins = np.argmax(rng.beta(a[:, None], b[:, None], size=(len(candidates), draws)), axis=0)
    prop = max(float(np.mean(wins == pick)), 1.0 / draws)
    props = [1.0] * len(ranked)
    props[slot] = prop
    return ExploredList(_place(ranked, slot, candidates[pick]), props, slot, pick != 0)
