"""Attribute annotation on real Online Retail titles (a slice of the shop's own descriptions)."""

from __future__ import annotations

import csv
import io

import pytest

from shelfwise.data.attributes import ANNOTATED, annotate_item, annotate_title
from shelfwise.data.schemas import Item
from tests.conftest import ONLINE_RETAIL, head_lines


@pytest.fixture(scope="module")
def retail_titles() -> dict[str, str]:
    text = b"".join(head_lines(ONLINE_RETAIL, 20_001)).decode()
    titles = {}
    for row in csv.DictReader(io.StringIO(text)):
        if row["Description"].strip():
            titles[row["StockCode"]] = row["Description"]
    return titles


def test_most_retail_items_get_a_product_type_and_category(retail_titles: dict[str, str]) -> None:
    found = [annotate_title(t) for t in retail_titles.values()]
    share = sum("product_type" in f for f in found) / len(found)
    assert len(found) > 1500
    assert share >= 0.8  # measured 0.84 (2,391 items) on the first 20,000 lines
    departments = {f["department"] for f in found if "department" in f}
    assert len(departments) >= 10  # useful facets, not one bucket


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("WHITE HANGING HEART T-LIGHT HOLDER", {"product_type": "t-light holder", "colour": "white"}),
        ("JUMBO BAG RED RETROSPOT", {"product_type": "bag", "colour": "red", "size": "jumbo"}),
        ("SET OF 3 CAKE TINS PANTRY DESIGN", {"product_type": "cake tin", "pack_size": 3}),
        ("PACK OF 72 RETROSPOT CAKE CASES", {"product_type": "cake case", "pack_size": 72}),
        ("12 PENCILS SMALL TUBE RED RETROSPOT", {"product_type": "pencil", "pack_size": 12, "size": "small"}),
        ("WHITE METAL LANTERN", {"product_type": "lantern", "material": "metal", "department": "lighting"}),
        ("KNITTED UNION FLAG HOT WATER BOTTLE", {"product_type": "hot water bottle"}),
    ],
)
def test_exact_facts_from_titles(title: str, expected: dict[str, object]) -> None:
    found = annotate_title(title)
    assert {k: found.get(k) for k in expected} == expected


def test_a_title_with_no_product_noun_gets_no_type() -> None:
    assert "product_type" not in annotate_title("POSTAGE")
    assert annotate_title("") == {}


def test_annotation_keeps_what_the_shop_gave_and_says_what_it_added() -> None:
    item = Item(
        item_id="1", title="RED WOODEN ALARM CLOCK", category="clocks", attributes={"colour": "scarlet"}
    )
    out = annotate_item(item)
    assert out.category == "clocks"
    assert out.attributes["colour"] == "scarlet"
    assert out.attributes["product_type"] == "alarm clock"
    assert out.attributes["material"] == "wood"
    assert out.attributes[ANNOTATED] == ["material", "product_type"]
    bare = annotate_item(Item(item_id="2", title="RED WOODEN ALARM CLOCK"))
    assert bare.category == "home decor > alarm clock"
    assert "category" in bare.attributes[ANNOTATED]
    assert annotate_item(bare) == bare  # annotating twice changes nothing
