"""Apply a placement's rules to a ranked list of candidates.

The model (or retriever) ranks; merchandising then blocks, boosts and buries, runs live promotions,
re-ranks for diversity, caps categories and pins, in that order. Every rule that moved an item, or
put it in the list, is named in that item's ``reasons``; items a rule removed are listed with it.
When the rules would leave nothing, the answer is the list without rules, and says so.

>>> from shelfwise.data.schemas import Item
>>> items = {i: Item(item_id=i, category=c) for i, c in [("a", "x"), ("b", "x"), ("c", "y")]}
>>> out = apply_rules([Candidate("a", 3.0), Candidate("b", 2.0), Candidate("c", 1.0)],
...                   RuleSet.model_validate({"rules": [{"kind": "pin", "item_id": "c", "position": 1}]}),
...                   items=items, k=3)
>>> [p.item_id for p in out.items], out.items[0].reasons
(['c', 'a', 'b'], ['pinned at 1 by rule "pin c at 1"'])
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shelfwise.data.schemas import Item
from shelfwise.merchandising.diversity import calibrated_order, mmr_order
from shelfwise.merchandising.rules import (
    Block,
    Boost,
    Bury,
    CategoryCap,
    Diversity,
    Pin,
    Promotion,
    RuleSet,
)

FALLBACK_NOTE = "the rules would leave no items, so this list is shown without them"


@dataclass
class Candidate:
    """A ranked candidate from a model or retriever; ``reasons`` come with it (its source)."""

    item_id: str
    score: float = 0.0
    reasons: list[str] = field(default_factory=list)


@dataclass
class Placed:
    item_id: str
    position: int  # 1-based
    score: float
    reasons: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "item_id": self.item_id,
            "position": self.position,
            "score": self.score,
            "reasons": self.reasons,
        }


@dataclass
class MerchResult:
    items: list[Placed]
    fallback: bool = False
    notes: list[str] = field(default_factory=list)
    removed: dict[str, str] = field(default_factory=dict)  # item_id -> the rule that removed it

    def to_dict(self) -> dict[str, Any]:
        return {
            "items": [p.to_dict() for p in self.items],
            "fallback": self.fallback,
            "notes": self.notes,
            "removed": self.removed,
        }


def attribute_value(item: Item | None, attribute: str) -> str | None:
    """The lower-cased value of ``attribute`` for ``item``: category, brand, or ``attributes[...]``."""
    if item is None:
        return None
    if attribute == "category":
        raw: Any = item.category
    elif attribute == "brand":
        raw = item.brand
    else:
        raw = item.attributes.get(attribute)
    return None if raw is None or raw == "" else str(raw).strip().lower()


def matches(item: Item | None, attribute: str, value: str) -> bool:
    """Category matches a path prefix ("home decor" matches "home decor > clock"); others are equal."""
    found = attribute_value(item, attribute)
    if found is None:
        return False
    if attribute == "category":
        return found == value or found.startswith(value + " > ")
    return found == value


def _blocked_by(rule: Block, item_id: str, item: Item | None) -> bool:
    if item_id in rule.item_ids:
        return True
    brand = attribute_value(item, "brand")
    if brand is not None and brand in {b.strip().lower() for b in rule.brands}:
        return True
    return any(matches(item, "category", c.strip().lower()) for c in rule.categories)


@dataclass
class _Row:
    item_id: str
    score: float
    rank_score: float
    reasons: list[str]


def apply_rules(
    candidates: Sequence[Candidate],
    rules: RuleSet,
    *,
    items: Mapping[str, Item],
    k: int,
    now: dt.datetime | None = None,
    target_shares: Mapping[str, float] | None = None,
) -> MerchResult:
    """The top ``k`` after ``rules``. ``items`` holds the catalogue facts of the candidates and of
    any pinned or promoted item; ``target_shares`` (label → share, e.g. the shopper's categories)
    is what calibrated diversity aims at (default: the candidates' own shares)."""
    now = now or dt.datetime.now(dt.UTC)
    n = len(candidates)
    rows = [_Row(c.item_id, c.score, 1.0 - i / max(n, 1), list(c.reasons)) for i, c in enumerate(candidates)]
    notes: list[str] = []
    removed: dict[str, str] = {}
    live = [r for r in rules.rules if isinstance(r, Promotion) and r.live(now)]
    pins: list[tuple[int, str, str]] = [
        (r.position, r.item_id, r.label) for r in rules.rules if isinstance(r, Pin)
    ]
    for promo in live:
        if promo.position is not None:
            pins.extend(
                (promo.position + j, item_id, promo.label) for j, item_id in enumerate(promo.item_ids)
            )

    # 1. blocks
    blocks = [r for r in rules.rules if isinstance(r, Block)]
    kept = []
    for row in rows:
        blocker = next((b for b in blocks if _blocked_by(b, row.item_id, items.get(row.item_id))), None)
        if blocker is None:
            kept.append(row)
        else:
            removed[row.item_id] = blocker.label
    rows = kept
    blocked = dict(removed)

    # 2. boosts, buries and live promotions' boosts
    before = [r.item_id for r in rows]
    for row in rows:
        item = items.get(row.item_id)
        for rule in rules.rules:
            delta = 0.0
            if isinstance(rule, Boost) and matches(item, rule.attribute, rule.value):
                delta = rule.weight
            elif isinstance(rule, Bury) and matches(item, rule.attribute, rule.value):
                delta = -rule.weight
            elif isinstance(rule, Promotion) and rule in live and rule.position is None:
                hit = row.item_id in rule.item_ids or (
                    rule.attribute is not None
                    and rule.value is not None
                    and matches(item, rule.attribute, rule.value)
                )
                delta = rule.weight if hit else 0.0
            if delta:
                row.rank_score += delta
                verb = "boosted" if delta > 0 else "buried"
                row.reasons.append(f'{verb} by rule "{rule.label}" ({delta:+g})')
    rows.sort(key=lambda r: -r.rank_score)  # stable: equal scores keep the model's order
    _drop_unmoved(rows, before, prefix=("boosted", "buried"))

    # 3. diversity
    diversity = next((r for r in rules.rules if isinstance(r, Diversity)), None)
    if diversity is not None and diversity.strength > 0 and rows:
        rows = _diversify(rows, diversity, items, target_shares, k=max(k, 1))

    # 4. category caps
    caps = [r for r in rules.rules if isinstance(r, CategoryCap)]
    if caps:
        rows = _cap(rows, caps, items, removed)

    # 5. pins (a blocked item stays blocked)
    pinned: dict[str, tuple[int, str]] = {}
    for position, item_id, label in sorted(pins):
        if item_id in pinned:
            continue
        if item_id in blocked:
            notes.append(f'pin of {item_id} by "{label}" not applied: blocked by "{blocked[item_id]}"')
            continue
        if item_id not in items and item_id not in {r.item_id for r in rows}:
            notes.append(f'pin of {item_id} by "{label}" not applied: no such item')
            continue
        pinned[item_id] = (position, label)
    if pinned:
        rest = [r for r in rows if r.item_id not in pinned]
        by_id = {r.item_id: r for r in rows}
        for item_id, (position, label) in sorted(pinned.items(), key=lambda kv: kv[1][0]):
            row = by_id.get(item_id) or _Row(item_id, 0.0, 0.0, [])
            row.reasons.append(f'pinned at {position} by rule "{label}"')
            rest.insert(min(position - 1, len(rest)), row)
        rows = rest
        for item_id in pinned:
            removed.pop(item_id, None)  # a pin outranks a category cap

    rows = rows[:k]
    if not rows and candidates:
        fallback = [
            Placed(c.item_id, i + 1, c.score, [*c.reasons, FALLBACK_NOTE])
            for i, c in enumerate(candidates[:k])
        ]
        return MerchResult(fallback, fallback=True, notes=[*notes, FALLBACK_NOTE], removed=removed)
    placed = [Placed(r.item_id, i + 1, r.score, r.reasons) for i, r in enumerate(rows)]
    return MerchResult(placed, notes=notes, removed=removed)


def _drop_unmoved(rows: list[_Row], before: list[str], *, prefix: tuple[str, ...]) -> None:
    """A boost that did not change an item's place is not a reason for it: keep only those that did."""
    old = {item_id: i for i, item_id in enumerate(before)}
    for i, row in enumerate(rows):
        if old.get(row.item_id) == i:
            row.reasons = [r for r in row.reasons if not r.startswith(prefix)]


def _labels(rows: list[_Row], items: Mapping[str, Item], attribute: str) -> tuple[np.ndarray, list[str]]:
    codes: dict[str, int] = {}
    labels = np.full(len(rows), -1, dtype=np.int64)
    for i, row in enumerate(rows):
        value = attribute_value(items.get(row.item_id), attribute)
        if value is not None:
            labels[i] = codes.setdefault(value, len(codes))
    return labels, list(codes)


def _diversify(
    rows: list[_Row],
    rule: Diversity,
    items: Mapping[str, Item],
    target_shares: Mapping[str, float] | None,
    *,
    k: int,
) -> list[_Row]:
    labels, names = _labels(rows, items, rule.attribute)
    rel = np.array([r.rank_score for r in rows], dtype=np.float64)
    span = rel.max() - rel.min()
    rel = (rel - rel.min()) / span if span > 0 else np.ones_like(rel)
    if rule.method == "mmr":
        parents = None
        if rule.attribute == "category":  # a category path: its top level is the parent
            tops: dict[str, int] = {}
            parents = np.array([tops.setdefault(name.split(" > ")[0], len(tops)) for name in names] + [-1])[
                labels
            ]
        order = mmr_order(rel, labels, strength=rule.strength, k=k, parents=parents)
    else:
        if target_shares:
            target = np.array([float(target_shares.get(name, 0.0)) for name in names])
        else:
            target = np.bincount(labels[labels >= 0], minlength=len(names)).astype(np.float64)
        order = calibrated_order(rel, labels, target, strength=rule.strength, k=k)
    chosen = set(order.tolist())
    out = [rows[i] for i in order] + [r for i, r in enumerate(rows) if i not in chosen]
    for new, old in enumerate(order.tolist()):
        if new != old:
            out[new].reasons.append(f'moved from {old + 1} to {new + 1} by rule "{rule.label}"')
    return out


def _cap(
    rows: list[_Row], caps: list[CategoryCap], items: Mapping[str, Item], removed: dict[str, str]
) -> list[_Row]:
    counts: Counter[tuple[int, str]] = Counter()
    out = []
    for row in rows:
        item = items.get(row.item_id)
        category = attribute_value(item, "category")
        over = None
        for ci, cap in enumerate(caps):
            if category is None:
                continue
            if cap.category is None:
                key = category
            elif matches(item, "category", cap.category.strip().lower()):
                key = cap.category
            else:
                continue
            if counts[(ci, key)] >= cap.max_items:
                over = cap
                break
        if over is not None:
            removed[row.item_id] = over.label
            continue
        for ci, cap in enumerate(caps):
            if category is None:
                continue
            if cap.category is None:
                counts[(ci, category)] += 1
            elif matches(item, "category", cap.category.strip().lower()):
                counts[(ci, cap.category)] += 1
        out.append(row)
    return out
