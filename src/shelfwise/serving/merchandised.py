"""The shop's merchandising rules over served answers: each recommendation list and each search
page goes through its placement's rules (``shelfwise.merchandising``) before it is answered.

    answer = merchandise(svc_merch, answer, placement="home", k=10, facts=search.get)

A placement with no rules costs one cached look-up (the rules are re-read when the store's document
stamp changes, checked at most every ``refresh_seconds``), so a rule saved through the API or the CLI
holds on the next request of every worker within that time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from shelfwise.data.schemas import Item
from shelfwise.evaluation.experiment_service import Assignment
from shelfwise.evaluation.experiments import interleave
from shelfwise.merchandising.engine import Candidate, MerchResult
from shelfwise.merchandising.placements import PlacementNotFound
from shelfwise.merchandising.rules import RuleSet
from shelfwise.merchandising.service import Merchandising
from shelfwise.serving.recommending import Answer
from shelfwise.store import Store

# the placement whose rules shape each recommendation page (scenario) and item-to-item answer
PLACEMENT_OF = {
    "home": "home",
    "product": "product",
    "cart": "cart",
    "category": "category",
    "store": "store",
    "promotion": "promotion",
    "similar": "product",
    "bought_together": "cart",
    "search": "search",
}
POOL = 100  # candidates asked of the model when a placement has rules (the API's k is at most 100)


def has_rules(merch: Merchandising, placement: str, extra: RuleSet | None = None) -> bool:
    if extra is not None and extra.rules:
        return True
    try:
        return bool(merch.rules(placement).rules)
    except PlacementNotFound:
        return False


def pool_size(merch: Merchandising, placement: str, k: int) -> int:
    """How many candidates to ask for: ``k`` when no rule may remove or add items, else the
    placement's pool (capped at ``POOL``), so blocked items leave room for others."""
    if not has_rules(merch, placement):
        return k
    return max(k, min(merch.placement(placement).placement.candidates, POOL))


def facts_for(
    ids: Sequence[str] | set[str], *, get: Callable[[str], Item | None] | None, store: Store
) -> dict[str, Item]:
    """Catalogue facts from the serving index (in memory), the store for any it lacks."""
    found: dict[str, Item] = {}
    missing = []
    for item_id in ids:
        item = get(item_id) if get is not None else None
        if item is None:
            missing.append(item_id)
        else:
            found[item_id] = item
    if missing:
        found.update(store.get_items(missing))
    return found


def apply_placement(
    merch: Merchandising,
    placement: str,
    candidates: Sequence[Candidate],
    *,
    k: int,
    get: Callable[[str], Item | None] | None,
    extra: RuleSet | None = None,
) -> MerchResult | None:
    """The placement's rules (and ``extra``, e.g. a query's) over ``candidates``; None when there
    are none, so the caller keeps its own list untouched."""
    if not has_rules(merch, placement, extra):
        return None
    rules = merch.rules(placement)
    wanted = {c.item_id for c in candidates} | rules.item_ids() | (extra.item_ids() if extra else set())
    items = facts_for(sorted(wanted), get=get, store=merch.store)
    return merch.apply(placement, candidates, k=k, items=items, extra_rules=extra)


def merchandise(
    merch: Merchandising,
    answer: Answer,
    *,
    placement: str,
    k: int,
    get: Callable[[str], Item | None] | None,
) -> Answer:
    """``answer`` after ``placement``'s rules, cut to ``k``: every rule that moved an item is named
    in its reason, and a list the rules would empty is answered without them (``fallback``)."""
    result = None
    if has_rules(merch, placement):  # no rules (most placements): no candidates to build
        cands = [
            Candidate(i, float(s), [r] if r else [])
            for i, s, r in zip(answer.items, answer.scores, answer.reasons, strict=True)
        ]
        result = apply_placement(merch, placement, cands, k=k, get=get)
    if result is None:
        if len(answer.items) <= k:
            return answer
        return replace(answer, items=answer.items[:k], scores=answer.scores[:k], reasons=answer.reasons[:k])
    return replace(
        answer,
        items=[p.item_id for p in result.items],
        scores=[p.score for p in result.items],
        reasons=["; ".join(p.reasons) for p in result.items],
        placement=placement,
        fallback=result.fallback,
        notes=list(result.notes),
    )


def interleaved(
    merch: Merchandising,
    get: Callable[[str], Item | None] | None,
    a: Answer,
    b: Answer,
    placement: str,
    k: int,
    arm: Assignment,
) -> tuple[Answer, dict[str, Any]]:
    """An interleaving experiment's answer: arm A's and arm B's lists, each after the placement's
    merchandising rules (no exploration slot: it would move picks between slots), team-drafted into
    one list of ``k``; and each slot's credits for the impression (``evaluation.experiments.interleave``:
    which arm's pick, and the inverse-propensity credit), with the two versions."""
    name = PLACEMENT_OF.get(placement, placement)
    sa = merchandise(merch, a, placement=name, k=k, get=get)
    sb = merchandise(merch, b, placement=name, k=k, get=get)
    mixed = interleave(sa.items[:k], sb.items[:k], k, np.random.default_rng(), arm.examination)
    of = {i: (s, r) for i, s, r in zip(sb.items, sb.scores, sb.reasons, strict=True)}
    of.update({i: (s, r) for i, s, r in zip(sa.items, sa.scores, sa.reasons, strict=True)})
    note = (
        f"interleaving experiment {arm.experiment}: a team draft of versions "
        f"{sa.model_version} (A) and {sb.model_version} (B)"
    )
    answer = Answer(
        items=list(mixed.items),
        scores=[of[i][0] for i in mixed.items],
        reasons=[of[i][1] for i in mixed.items],
        source=sa.source,
        model_version=sa.model_version,
        placement=sa.placement,
        fallback=sa.fallback or sb.fallback,
        notes=[*sa.notes, *(n for n in sb.notes if n not in sa.notes), note],
    )
    return answer, {**mixed.to_dict(), "versions": [sa.model_version, sb.model_version]}
