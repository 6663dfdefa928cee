"""A small real catalogue: Online Retail items (first invoice lines), annotated as ingest does."""

from __future__ import annotations

import csv
import io

import pytest

from shelfwise.data.attributes import annotate_item
from shelfwise.data.schemas import Item
from shelfwise.merchandising.engine import Candidate
from tests.conftest import ONLINE_RETAIL, head_lines


@pytest.fixture(scope="session")
def retail_items() -> dict[str, Item]:
    text = b"".join(head_lines(ONLINE_RETAIL, 3001)).decode()
    out: dict[str, Item] = {}
    for row in csv.DictReader(io.StringIO(text)):
        code = row["StockCode"]
        if code not in out and row["Description"].strip():
            out[code] = annotate_item(
                Item(item_id=code, title=row["Description"], price=float(row["UnitPrice"]))
            )
    return out


@pytest.fixture
def ranked(retail_items: dict[str, Item]) -> list[Candidate]:
    """The first 60 categorised items, in file order, as a model's ranked answer."""
    ids = [i for i, it in retail_items.items() if it.category][:60]
    return [Candidate(i, score=float(60 - n), reasons=["popular"]) for n, i in enumerate(ids)]
