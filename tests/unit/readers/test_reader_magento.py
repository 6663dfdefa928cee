"""Magento 2 orders with their line items (the REST API's ``GET /V1/orders`` orders, one a line),
from a fixture of our own written in that layout: statuses mapped, a configurable product's child
line folded into its parent, bad lines quarantined with the record and the field, the admin grid's
CSV (no line items) refused with a hint; and parity: the same orders written as a generic events CSV
store exactly the same events."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from tests.conftest import TEST_KEY

from shelfwise.core.errors import InputFileError
from shelfwise.core.settings import Settings
from shelfwise.data.readers import FORMATS, ReadOptions
from shelfwise.data.readers.base import MALFORMED, Draft, Problem
from shelfwise.data.readers.platforms import CANCELLED, UNKNOWN_STATUS
from shelfwise.store import open_store
from shelfwise.store.base import Store
from shelfwise.store.ingest import ingest_events

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "platforms"
ORDERS = FIXTURES / "magento_orders.jsonl"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(pseudonym_key=TEST_KEY, var_dir=tmp_path / "var", shop_start="2000-01-01")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with open_store(f"sqlite:///{tmp_path / 'magento.db'}") as s:
        yield s


def test_orders_become_line_events_with_mapped_states() -> None:
    records = list(FORMATS["magento"].read(ORDERS, ReadOptions()))
    drafts = [r for r in records if isinstance(r, Draft)]
    problems = [r for r in records if isinstance(r, Problem)]
    rows = [
        tuple(d.fields[f] for f in ("session_id", "item_id", "type", "quantity", "price")) for d in drafts
    ]
    assert rows == [
        ("000000011", "TEE-RED-M", "purchase", "2", "19.5"),  # the configurable's child line is folded in
        ("000000011", "MUG-01", "purchase", "1", "22.5"),
        ("000000012", "MUG-01", "purchase", "3", "22.5"),
        ("000000013", "MUG-01", "return", "1", "22.5"),  # closed: refunded by a credit memo
        ("000000015", "TOTE-1", "cart", "1", "12.0"),  # new / pending: not paid
        ("000000016", "CARD-1", "purchase", "1", None),  # no price: the gate holds it (required)
        ("000000016", "MUG-01", "purchase", "1", "twenty"),  # a price that is no number: the gate's to name
    ]
    first = drafts[0].fields
    assert first["user_id"] == "42" and first["currency"] == "EUR" and first["ts"] == "2024-05-02 09:14:21"
    assert first["context"]["country"] == "DE"
    assert drafts[2].fields["user_id"] == "guest.shopper@example.org"  # a guest: the e-mail names them
    held = sorted((p.line_no, p.field, p.reason) for p in problems)
    assert held == [
        (4, "status", CANCELLED),
        (6, "item_id", MALFORMED),  # a line with neither SKU nor name
        (7, "status", UNKNOWN_STATUS),
        (8, "item_id", MALFORMED),  # items is not a list
    ]
    # the record kept with each problem is the order line it came from
    no_sku = next(p for p in problems if p.line_no == 6)
    assert json.loads(no_sku.raw)["increment_id"] == "000000016" and "000000016" in no_sku.detail
    assert "fraud_suspected" in next(p for p in problems if p.line_no == 7).detail


def test_through_the_gate_bad_lines_are_quarantined_with_record_and_field(
    store: Store, settings: Settings
) -> None:
    report = ingest_events(store, ORDERS, FORMATS["magento"], settings)
    assert report.accepted == 5
    assert report.quarantined == 6
    assert report.reasons[CANCELLED] == 1 and report.reasons[UNKNOWN_STATUS] == 1
    assert report.fields.get("price") == 2 and report.fields.get("item_id") == 2
    with store.engine.connect() as conn:  # type: ignore[attr-defined]
        held = conn.execute(sa.text("SELECT * FROM quarantine")).mappings().all()
    assert len(held) == 6
    by_field = {}
    for row in held:
        text = " ".join(str(v) for v in row.values() if v is not None)
        by_field.setdefault(next((f for f in ("price", "item_id", "status") if f in text), "?"), []).append(
            text
        )
    assert any("twenty" in t for t in by_field["price"])  # the record itself is kept
    # shoppers' e-mails are pseudonymised like any shopper id: none stored in clear
    events = store.interactions()
    assert not any("@" in u for u in events.user_ids)


def test_the_order_grid_export_is_refused_with_a_hint() -> None:
    with pytest.raises(InputFileError) as info:
        list(FORMATS["magento"].read(FIXTURES / "magento_order_grid.csv", ReadOptions()))
    message = str(info.value)
    assert "no" in message and "line items" in message and "GET /V1/orders" in message
    assert str(FIXTURES / "magento_order_grid.csv") in message


def _stored(store: Store) -> list[tuple[object, ...]]:
    with store.engine.connect() as conn:  # type: ignore[attr-defined]
        rows = conn.execute(
            sa.text("SELECT user_id, session_id, item_id, type, ts, quantity, price, currency FROM events")
        ).all()
    return sorted(tuple(r) for r in rows)


def test_parity_with_the_same_orders_as_a_generic_csv(tmp_path: Path, settings: Settings) -> None:
    with open_store(f"sqlite:///{tmp_path / 'a.db'}") as a, open_store(f"sqlite:///{tmp_path / 'b.db'}") as b:
        ingest_events(a, ORDERS, FORMATS["magento"], settings)
        ingest_events(b, FIXTURES / "magento_orders_parity.csv", FORMATS["csv"], settings)
        magento, generic = _stored(a), _stored(b)
    assert len(magento) == 5
    assert magento == generic
