"""The reusable input rules (``shelfwise.data.rules``) on their own, and the one id-cleaning every
pseudonym goes through."""

from __future__ import annotations

import pytest

from shelfwise.data.normalize import clean_id
from shelfwise.data.privacy import Pseudonymizer
from shelfwise.data.rules import MAX_DEPTH, Violation, clean_nested, require


def test_nested_texts_keys_and_lists_are_scrubbed_with_their_path_named() -> None:
    value = {"a": {"b@c.io": ["ok", {"phone": "+44 20 7946 0958"}]}, "n": 1.5, "empty": "  "}
    out, scrubbed = clean_nested(value, field="context", max_text=1000)
    assert out == {"a": {"[email]": ["ok", {"phone": "[phone]"}]}, "n": 1.5, "empty": None}
    assert scrubbed == 2
    with pytest.raises(Violation) as bad:
        clean_nested({"a": [{"b": "x" * 2000}]}, field="context", max_text=1000)
    assert (bad.value.field, bad.value.reason) == ("context.a.0.b", "field_too_large")
    with pytest.raises(Violation) as bad:
        clean_nested({"a": ["y" * 600, "z" * 600]}, field="attributes", max_text=1000)
    assert (bad.value.field, bad.value.reason) == ("attributes", "field_too_large")  # too large in total
    with pytest.raises(Violation, match="not_finite"):
        clean_nested({"a": {"b": float("nan")}}, field="context", max_text=1000)


def test_nesting_deeper_than_the_limit_is_refused() -> None:
    deep: dict[str, object] = {"leaf": 1}
    for _ in range(MAX_DEPTH):
        deep = {"d": deep}
    with pytest.raises(Violation, match="nested deeper"):
        clean_nested(deep, field="context", max_text=10_000)


def test_required_fields_must_be_filled() -> None:
    require(
        {"price": "2.55", "quantity": 0}, ["price", "quantity"]
    )  # zero is a value; its range is checked later
    for blank in (None, "", "   "):
        with pytest.raises(Violation) as bad:
            require({"price": blank, "quantity": "1"}, ["quantity", "price"])
        assert (bad.value.field, bad.value.reason) == ("price", "missing_field")


def test_every_spelling_ingest_treats_as_one_id_gets_one_pseudonym() -> None:
    pseudo = Pseudonymizer(b"k" * 32)
    spellings = ["ABC-7", " ABC-7 ", "ＡＢＣ-7", "ABC-7\t", "ＡＢＣ－７"]
    assert {clean_id(s) for s in spellings} == {"ABC-7"}
    assert len({pseudo(s) for s in spellings}) == 1 and pseudo("ABC-8") != pseudo("ABC-7")
    assert clean_id(clean_id(" Ｘ\x00Y  z ")) == clean_id(" Ｘ\x00Y  z ") == "XY z"  # idempotent
