"""Rule validation: every bad rule names the rule and the field."""

from __future__ import annotations

import pytest

from shelfwise.merchandising.placements import Placement, PlacementNotFound, default_placement
from shelfwise.merchandising.rules import RuleError, RuleSet
from shelfwise.merchandising.search_rules import SearchSettings


def test_rules_round_trip_through_json() -> None:
    data = {
        "rules": [
            {"kind": "pin", "item_id": "85123A", "position": 2},
            {"kind": "boost", "attribute": "Colour", "value": "Red", "weight": 0.5},
            {
                "kind": "promotion",
                "name": "xmas",
                "item_ids": ["22423"],
                "start": "2026-12-01T00:00:00Z",
                "end": "2026-12-25T00:00:00Z",
            },
            {"kind": "diversity", "method": "calibrated", "strength": 0.4},
        ]
    }
    parsed = RuleSet.parse(data)
    assert RuleSet.model_validate_json(parsed.model_dump_json()) == parsed
    assert parsed.rules[1].attribute == "colour"


@pytest.mark.parametrize(
    ("rule", "field", "words"),
    [
        ({"kind": "pin", "item_id": "a", "position": 0}, "rules[0].position", "greater than or equal to 1"),
        ({"kind": "pin", "item_id": "a"}, "rules[0].position", "Field required"),
        (
            {"kind": "boost", "attribute": "colour", "value": "red", "weight": -1},
            "rules[0].weight",
            "greater than 0",
        ),
        ({"kind": "teleport"}, "rules[0]", "does not match any of the expected tags"),
        ({"kind": "block"}, "rules[0]", "needs item_ids, brands or categories"),
        ({"kind": "pin", "item_id": "a", "position": 1, "colour": "red"}, "rules[0].colour", "Extra inputs"),
        (
            {
                "kind": "promotion",
                "name": "p",
                "item_ids": ["a"],
                "start": "2026-12-02T00:00:00Z",
                "end": "2026-12-01T00:00:00Z",
            },
            "rules[0]",
            "must be after start",
        ),
    ],
)
def test_a_bad_rule_names_its_field(rule: dict, field: str, words: str) -> None:
    with pytest.raises(RuleError) as err:
        RuleSet.parse({"rules": [rule]})
    assert err.value.field == field
    assert words in str(err.value)


def test_overlapping_promotions_are_refused_with_both_names() -> None:
    a = {
        "kind": "promotion",
        "name": "black friday",
        "item_ids": ["a", "b"],
        "start": "2026-11-27T00:00:00Z",
        "end": "2026-12-01T00:00:00Z",
    }
    b = {
        **a,
        "name": "cyber monday",
        "item_ids": ["b"],
        "start": "2026-11-30T00:00:00Z",
        "end": "2026-12-02T00:00:00Z",
    }
    with pytest.raises(RuleError) as err:
        RuleSet.parse({"rules": [a, b]})
    msg = str(err.value)
    assert "'cyber monday'" in msg and "'black friday'" in msg and "item b" in msg
    # the same items in windows that do not meet, or different items at the same time, are fine
    RuleSet.parse({"rules": [a, {**b, "start": "2026-12-01T00:00:00Z"}]})
    RuleSet.parse({"rules": [a, {**b, "item_ids": ["c"]}]})


def test_two_pins_at_one_position_are_refused() -> None:
    with pytest.raises(RuleError, match="already pins"):
        RuleSet.parse(
            {
                "rules": [
                    {"kind": "pin", "item_id": "a", "position": 1},
                    {"kind": "pin", "item_id": "b", "position": 1},
                ]
            }
        )


def test_a_rule_for_an_unknown_item_names_it() -> None:
    rules = RuleSet.parse(
        {
            "rules": [
                {"kind": "pin", "item_id": "85123A", "position": 1},
                {"kind": "block", "item_ids": ["71053", "NOPE"]},
            ]
        }
    )
    with pytest.raises(RuleError) as err:
        rules.check_items(lambda ids: set(ids) - {"NOPE"})
    assert err.value.field == "rules[1].item_ids[1]" and "'NOPE'" in str(err.value)


def test_placements_have_standard_defaults_and_unknown_is_not_found() -> None:
    assert default_placement("cart").source == "bought_together"
    with pytest.raises(PlacementNotFound, match="no placement 'checkout'"):
        default_placement("checkout")
    with pytest.raises(RuleError, match="candidates"):
        Placement.parse({"name": "home", "k": 50, "candidates": 10})
    with pytest.raises(RuleError) as err:
        Placement.parse(
            {"name": "home", "rules": {"rules": [{"kind": "pin", "item_id": "a", "position": -1}]}}
        )
    assert err.value.field == "rules.rules[0].position"


def test_search_settings_rewrite_and_query_rules() -> None:
    s = SearchSettings.parse(
        {
            "synonyms": [
                {"terms": ["sofa", "couch"]},
                {"terms": ["phone", "mobile", "smartphone"], "direction": "one-way"},
            ],
            "stop_words": ["the", "for"],
            "redirects": [{"query": "Gift Cards", "url": "/gift-cards"}],
            "query_rules": [
                {
                    "query": "lantern",
                    "match": "contains",
                    "rules": {"rules": [{"kind": "pin", "item_id": "71053", "position": 1}]},
                }
            ],
        }
    )
    assert s.rewrite("couch for the garden").text == "couch garden"
    assert s.rewrite("couch for the garden").expansions == ["sofa"]
    assert s.rewrite("phone case").expansions == ["mobile", "smartphone"]
    assert s.rewrite("mobile case").expansions == []  # one-way
    assert s.rewrite("the").text == "the"  # only stop words: run as typed
    assert s.for_query("  gift   CARDS ").redirect == "/gift-cards"
    decision = s.for_query("white metal lantern")
    assert decision.rules.rules[0].item_id == "71053" and decision.redirect is None
    assert s.for_query("lanterns").rules.rules == []
    with pytest.raises(RuleError, match="redirects"):
        SearchSettings.parse({"redirects": [{"query": "a", "url": "/x"}, {"query": "A", "url": "/y"}]})
    with pytest.raises(RuleError) as err:
        SearchSettings.parse({"synonyms": [{"terms": ["sofa", "SOFA"]}]})
    assert err.value.field == "synonyms[0].terms"
