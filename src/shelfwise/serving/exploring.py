"""The exploration slot on the served answer path: a placement that opts in (its ``exploration``
setting, ``merchandising.placements.Exploration``) gets one position of each list filled by a bandit
(``recommend.exploration``: ε-greedy or Thompson sampling) over the items at and below it, after the
placement's rules. The chance of what the slot showed (its propensity) goes with the impression, so
``evaluation.off_policy.ope_from_logs`` can evaluate a candidate policy from the logs; every answer of
such a placement carries propensities, explored or not (the logging policy is the whole bandit).

An explored item's reason says so. A list whose slot, or any item it could move, is pinned by a rule
is not explored (a pin holds); a list shorter than the slot neither.

    explorer = Explorer(merch, store)
    extra = explorer.extra("home")            # candidates to ask for beyond k (the bandit's pool)
    answer, shown = explorer.explore(answer, placement="home", k=10)
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from shelfwise.core.logging import get_logger
from shelfwise.evaluation.off_policy import slot_click_stats
from shelfwise.merchandising.placements import Exploration, PlacementNotFound
from shelfwise.merchandising.service import Merchandising
from shelfwise.recommend.exploration import ExploredList, epsilon_greedy_slot, thompson_slot
from shelfwise.serving.recommending import Answer
from shelfwise.store import Store

log = get_logger(__name__)
STATS_TTL_S = 300.0  # how long Thompson sampling reuses a slot's click counts
STATS_DAYS = 30


@dataclass(frozen=True)
class Explored:
    """What the slot did for one answer: the propensities (one per position) for its impression."""

    policy: str
    slot: int  # 1-based
    explored: bool
    propensity: float
    propensities: list[float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "slot": self.slot,
            "explored": self.explored,
            "propensity": round(self.propensity, 6),
        }


def _pinned(reasons: str) -> bool:
    return "pinned at " in reasons


class Explorer:
    """Reads each placement's exploration setting (through the merchandising cache) and runs its slot."""

    def __init__(self, merch: Merchandising, store: Store, *, stats_ttl: float = STATS_TTL_S) -> None:
        self.merch, self.store, self.stats_ttl = merch, store, stats_ttl
        self._rng = np.random.default_rng()
        self._lock = threading.Lock()
        self._stats: dict[tuple[str, int], tuple[float, dict[str, tuple[float, float]]]] = {}
        self._refreshing: set[tuple[str, int]] = set()

    def setting(self, placement: str) -> Exploration | None:
        try:
            return self.merch.placement(placement).placement.exploration
        except PlacementNotFound:
            return None
        except Exception as exc:  # the store is down: serve without exploring
            log.warning("placement unreadable; not exploring", placement=placement, error=repr(exc))
            return None

    def extra(self, placement: str) -> int:
        """Candidates to ask for beyond ``k`` so the slot's pool may reach below the list."""
        s = self.setting(placement)
        return 0 if s is None else s.pool - 1

    def explore(self, answer: Answer, *, placement: str, k: int) -> tuple[Answer, Explored | None]:
        """``answer`` (already through the rules, possibly longer than ``k``) with its slot filled
        by the placement's bandit, cut to ``k``; and what the slot did (None: not explored)."""
        s = self.setting(placement)
        slot = None if s is None else s.slot - 1
        if s is None or slot is None or slot >= min(k, len(answer.items)):
            return _cut(answer, k), None
        reach = min(len(answer.items), slot + s.pool)
        if any(_pinned(r) for r in answer.reasons[slot:reach]):
            return _cut(answer, k), None
        ranked = answer.items[:reach]
        with self._lock:  # numpy Generators are not thread-safe
            if s.policy == "thompson":
                stats = self._slot_stats(placement, slot)
                out = thompson_slot(ranked, stats, slot=slot, pool=s.pool, rng=self._rng)
            else:
                out = epsilon_greedy_slot(ranked, slot=slot, epsilon=s.epsilon, pool=s.pool, rng=self._rng)
        shaped = _reordered(answer, out, s.policy)
        n = min(k, len(shaped.items))
        props = out.propensities[:n] + [1.0] * (n - len(out.propensities[:n]))
        return _cut(shaped, k), Explored(s.policy, slot + 1, out.explored, out.propensities[slot], props)

    def _slot_stats(self, placement: str, slot: int) -> dict[str, tuple[float, float]]:
        """The slot's (clicks, impressions) per item, recounted in the background when stale (the
        first answers use the prior: no data)."""
        key = (placement, slot)
        at, stats = self._stats.get(key, (0.0, {}))
        if time.monotonic() - at > self.stats_ttl and key not in self._refreshing:
            self._refreshing.add(key)
            threading.Thread(target=self._refresh, args=(key,), name="shelfwise-explore", daemon=True).start()
        return stats

    def _refresh(self, key: tuple[str, int]) -> None:
        placement, slot = key
        try:
            since = int(time.time() * 1000) - STATS_DAYS * 86_400_000
            stats = slot_click_stats(self.store, placement=placement, slot=slot, since=since)
            with self._lock:
                self._stats[key] = (time.monotonic(), stats)
        except Exception as exc:
            log.warning("exploration click counts not read", placement=placement, error=repr(exc))
        finally:
            self._refreshing.discard(key)


def _reordered(answer: Answer, out: ExploredList, policy: str) -> Answer:
    """The answer in the bandit's order (items below the pool unchanged), the slot's reason saying
    it explored when it did."""
    head = len(out.items)
    info = {i: (s, r) for i, s, r in zip(answer.items, answer.scores, answer.reasons, strict=True)}
    items = [*out.items, *answer.items[head:]]
    scores = [info[i][0] for i in items]
    reasons = [info[i][1] for i in items]
    if out.explored:
        how = "a random pick" if policy == "epsilon_greedy" else "a Thompson-sampling pick"
        p = out.propensities[out.slot]
        reasons[out.slot] = f"exploration: {how} shown to learn how shoppers take to it (chance {p:.3g})"
    return replace(answer, items=items, scores=scores, reasons=reasons)


def _cut(answer: Answer, k: int) -> Answer:
    if len(answer.items) <= k:
        return answer
    return replace(answer, items=answer.items[:k], scores=answer.scores[:k], reasons=answer.reasons[:k])
