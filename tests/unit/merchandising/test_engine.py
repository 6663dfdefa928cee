"""Rules through the engine API on real Online Retail items."""

from __future__ import annotations

import datetime as dt

import pytest

from shelfwise.data.schemas import Item
from shelfwise.merchandising.engine import FALLBACK_NOTE, Candidate, apply_rules
from shelfwise.merchandising.rules import RuleSet

NOW = dt.datetime(2026, 12, 3, 12, tzinfo=dt.UTC)


def rules(*rs: dict) -> RuleSet:
    return RuleSet.model_validate({"rules": list(rs)})


def test_no_rules_keeps_the_model_order(ranked: list[Candidate], retail_items: dict[str, Item]) -> None:
    out = apply_rules(ranked, RuleSet(), items=retail_items, k=10, now=NOW)
    assert [p.item_id for p in out.items] == [c.item_id for c in ranked[:10]]
    assert all(p.reasons == ["popular"] for p in out.items)
    assert not out.fallback


def test_pin_puts_an_item_at_its_position_and_names_the_rule(
    ranked: list[Candidate], retail_items: dict[str, Item]
) -> None:
    far = ranked[40].item_id
    out = apply_rules(
        ranked,
        rules({"kind": "pin", "item_id": far, "position": 3, "name": "xmas hero"}),
        items=retail_items,
        k=10,
        now=NOW,
    )
    assert out.items[2].item_id == far
    assert 'pinned at 3 by rule "xmas hero"' in out.items[2].reasons
    assert [p.item_id for p in out.items[:2]] == [c.item_id for c in ranked[:2]]


def test_pin_of_an_item_outside_the_candidates_brings_it_in(
    ranked: list[Candidate], retail_items: dict[str, Item]
) -> None:
    outside = next(i for i in retail_items if i not in {c.item_id for c in ranked})
    out = apply_rules(
        ranked, rules({"kind": "pin", "item_id": outside, "position": 1}), items=retail_items, k=5
    )
    assert out.items[0].item_id == outside


def test_block_brand_and_category_never_show(ranked: list[Candidate], retail_items: dict[str, Item]) -> None:
    items = dict(retail_items)
    branded = ranked[1].item_id
    items[branded] = Item(item_id=branded, title="x", brand="Acme", category="toys & games > toy")
    lighting = [c.item_id for c in ranked if (items[c.item_id].category or "").startswith("lighting")]
    assert lighting
    out = apply_rules(
        ranked,
        rules({"kind": "block", "brands": ["ACME"], "categories": ["Lighting"]}),
        items=items,
        k=20,
        now=NOW,
    )
    shown = {p.item_id for p in out.items}
    assert branded not in shown and not shown & set(lighting)
    assert out.removed[branded].startswith("block")
    assert len(out.items) == 20  # the list fills up from further down


def test_boost_and_bury_by_attribute_move_items_and_say_so(
    ranked: list[Candidate], retail_items: dict[str, Item]
) -> None:
    red = [c.item_id for c in ranked if retail_items[c.item_id].attributes.get("colour") == "red"]
    assert red and ranked[0].item_id not in red
    out = apply_rules(
        ranked,
        rules({"kind": "boost", "attribute": "colour", "value": "RED", "weight": 1.0}),
        items=retail_items,
        k=len(red),
        now=NOW,
    )
    assert {p.item_id for p in out.items} == set(red)
    assert any(r.startswith('boosted by rule "boost colour=red"') for r in out.items[0].reasons)
    first = ranked[0].item_id
    dept = retail_items[first].category.split(" > ")[0]
    out = apply_rules(
        ranked,
        rules({"kind": "bury", "attribute": "category", "value": dept, "weight": 2}),
        items=retail_items,
        k=60,
        now=NOW,
    )
    buried = next(p for p in out.items if p.item_id == first)
    assert buried.position > 1 and any("buried" in r for r in buried.reasons)


def test_promotion_holds_only_inside_its_window(
    ranked: list[Candidate], retail_items: dict[str, Item]
) -> None:
    target = ranked[30].item_id
    promo = {
        "kind": "promotion",
        "name": "winter sale",
        "item_ids": [target],
        "position": 1,
        "start": "2026-12-01T00:00:00Z",
        "end": "2026-12-25T00:00:00Z",
    }
    inside = apply_rules(ranked, rules(promo), items=retail_items, k=5, now=NOW)
    assert (
        inside.items[0].item_id == target and 'pinned at 1 by rule "winter sale"' in inside.items[0].reasons
    )
    after = apply_rules(
        ranked, rules(promo), items=retail_items, k=5, now=dt.datetime(2026, 12, 25, tzinfo=dt.UTC)
    )
    assert target not in {p.item_id for p in after.items}


def test_category_cap_limits_each_category(ranked: list[Candidate], retail_items: dict[str, Item]) -> None:
    out = apply_rules(ranked, rules({"kind": "cap", "max_items": 2}), items=retail_items, k=10, now=NOW)
    cats = [retail_items[p.item_id].category for p in out.items]
    assert max(cats.count(c) for c in cats) <= 2
    assert len(out.items) == 10


@pytest.mark.parametrize("method", ["mmr", "calibrated"])
def test_diversity_knob_spreads_categories(
    method: str, ranked: list[Candidate], retail_items: dict[str, Item]
) -> None:
    def depts(result: object) -> int:
        return len({retail_items[p.item_id].category.split(" > ")[0] for p in result.items})  # type: ignore[attr-defined]

    plain = apply_rules(ranked, RuleSet(), items=retail_items, k=10, now=NOW)
    diverse = apply_rules(
        ranked,
        rules({"kind": "diversity", "method": method, "strength": 0.8, "attribute": "category"}),
        items=retail_items,
        k=10,
        now=NOW,
    )
    assert len({retail_items[p.item_id].category for p in diverse.items}) > len(
        {retail_items[p.item_id].category for p in plain.items}
    )
    assert depts(diverse) >= depts(plain)
    moved = [p for p in diverse.items if any(r.startswith("moved from") for r in p.reasons)]
    assert moved and all(
        f"diversity {method} 0.8" in r for p in moved for r in p.reasons if r.startswith("moved")
    )


def test_rules_that_would_empty_the_list_fall_back_and_say_so(
    ranked: list[Candidate], retail_items: dict[str, Item]
) -> None:
    everything = sorted({it.category.split(" > ")[0] for it in retail_items.values() if it.category})
    out = apply_rules(
        ranked, rules({"kind": "block", "categories": everything}), items=retail_items, k=5, now=NOW
    )
    assert out.fallback
    assert [p.item_id for p in out.items] == [c.item_id for c in ranked[:5]]
    assert FALLBACK_NOTE in out.notes and all(FALLBACK_NOTE in p.reasons for p in out.items)


def test_a_pinned_blocked_item_stays_blocked(ranked: list[Candidate], retail_items: dict[str, Item]) -> None:
    item = ranked[5].item_id
    out = apply_rules(
        ranked,
        rules({"kind": "block", "item_ids": [item]}, {"kind": "pin", "item_id": item, "position": 1}),
        items=retail_items,
        k=10,
        now=NOW,
    )
    assert item not in {p.item_id for p in out.items}
    assert any("not applied: blocked" in n for n in out.notes)


def test_empty_candidates_give_an_empty_answer_not_a_fallback(retail_items: dict[str, Item]) -> None:
    out = apply_rules([], RuleSet(), items=retail_items, k=5)
    assert out.items == [] and not out.fallback
    assert apply_rules([Candidate("x")], RuleSet(), items={}, k=5).items[0].item_id == "x"
