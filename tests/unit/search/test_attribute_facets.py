"""Annotated attributes (ingest's product type, colour…) as search facets and filters, on Online Retail."""

from __future__ import annotations

import csv
import io

import pytest
from pydantic import ValidationError

from shelfwise.data.attributes import annotate_item
from shelfwise.data.schemas import Item
from shelfwise.search.engine import Filters, SearchEngine
from tests.conftest import ONLINE_RETAIL, head_lines


@pytest.fixture(scope="module")
def engine() -> SearchEngine:
    text = b"".join(head_lines(ONLINE_RETAIL, 5001)).decode()
    items: dict[str, Item] = {}
    for row in csv.DictReader(io.StringIO(text)):
        if row["Description"].strip() and row["StockCode"] not in items:
            items[row["StockCode"]] = annotate_item(Item(item_id=row["StockCode"], title=row["Description"]))
    return SearchEngine.build(items.values())


def test_facets_count_annotated_attributes(engine: SearchEngine) -> None:
    result = engine.search("lantern", k=50, mode="bm25")
    types = {f["value"]: f["count"] for f in result.facets["product_type"]}
    assert types.get("lantern", 0) >= 3
    assert any(f["value"] == "lighting" for f in result.facets["category"])
    assert "colour" in result.facets


def test_attribute_filter_keeps_only_matching_items(engine: SearchEngine) -> None:
    plain = engine.search("heart", k=100, mode="bm25")
    white = engine.search("heart", k=100, mode="bm25", filters=Filters(attributes={"colour": ["White"]}))
    assert 0 < len(white.item_ids) < len(plain.item_ids)
    assert all(engine._items[engine._slot[i]].attributes.get("colour") == "white" for i in white.item_ids)
    with pytest.raises(ValidationError, match="no attribute facet 'flavour'"):
        Filters(attributes={"flavour": ["mint"]})
