"""Platform exports: one fixture per published layout (written from the platform's documentation),
read as a shop would load it — through the quality gate into a real store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import TEST_KEY

from shelfwise.core.settings import Settings
from shelfwise.data.readers import FORMATS, ReadOptions
from shelfwise.data.readers.base import Draft, Problem
from shelfwise.data.readers.generic import ColumnMapping, make_generic_format
from shelfwise.data.readers.platforms import CANCELLED, UNKNOWN_STATUS, iso_time, status_event
from shelfwise.store import open_store
from shelfwise.store.base import Store
from shelfwise.store.ingest import ingest_events, ingest_items

HERE = Path(__file__).parent / "platforms"


def _read(name: str, file: str) -> tuple[list[Draft], list[Problem]]:
    records = list(FORMATS[name].read(HERE / file, ReadOptions()))
    return [r for r in records if isinstance(r, Draft)], [r for r in records if isinstance(r, Problem)]


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    with open_store(f"sqlite:///{tmp_path / 'shop.db'}") as s:
        yield s


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(pseudonym_key=TEST_KEY, var_dir=tmp_path / "var", shop_start="2000-01-01")


def test_status_table() -> None:
    assert status_event("paid")[0] == "purchase"
    assert status_event("wc-completed")[0] == "purchase"
    assert status_event("Partially refunded")[0] == "purchase"
    assert status_event("refunded")[0] == "return"
    assert status_event("on-hold")[0] == "cart"
    assert status_event("voided")[2] == CANCELLED
    assert status_event("cancelled")[2] == CANCELLED
    assert status_event("wc-awaiting-shipment")[2] == UNKNOWN_STATUS
    assert iso_time("2024-03-01 10:15:02 -0500") == "2024-03-01 10:15:02-05:00"


def test_shopify_orders_inherit_order_columns_and_map_statuses() -> None:
    drafts, problems = _read("shopify-orders", "shopify_orders.csv")
    by_item = [(d.fields["session_id"], d.fields["item_id"], d.fields["type"]) for d in drafts]
    assert by_item == [
        ("#1001", "MUG-BLU", "purchase"),
        ("#1001", "TOWEL-1", "purchase"),  # the second line inherits e-mail, status and currency
        ("#1002", "MUG-BLU", "return"),
        ("#1004", "Gift Card", "cart"),  # pending, no SKU: the name is the id, said in a note
        ("#1005", "CANDLE-S", "purchase"),
    ]
    second = drafts[1]
    assert second.fields["user_id"] == "ada@example.com" and second.fields["currency"] == "USD"
    assert second.fields["ts"] == "2024-03-01 10:15:02-05:00"
    assert "name_as_item_id" in drafts[3].notes and drafts[3].fields["user_id"] is None
    assert [(p.field, p.reason) for p in problems] == [("status", CANCELLED)]
    assert "#1003" in problems[0].detail


def test_shopify_orders_through_the_gate(sqlite_store: Store, settings: Settings) -> None:
    report = ingest_events(sqlite_store, HERE / "shopify_orders.csv", FORMATS["shopify-orders"], settings)
    # 5 lines in; the voided order and the free sample with no price (a required column) are held
    assert report.accepted == 4
    assert report.reasons == {CANCELLED: 1, "missing_field": 1}
    assert report.fields.get("price") == 1
    events = sqlite_store.interactions()
    # the guest's unpaid gift card has no shopper: stored, but not a user-item interaction
    assert sorted(events.item_ids[events.items]) == ["MUG-BLU", "MUG-BLU", "TOWEL-1"]
    assert sorted(events.type_names[t] for t in events.types) == ["purchase", "purchase", "return"]
    # e-mail addresses are shopper ids, pseudonymised like any other: none is stored in clear
    assert not any("@" in u for u in events.user_ids)


def test_shopify_products_variants_images_and_status(sqlite_store: Store, settings: Settings) -> None:
    drafts, problems = _read("shopify-products", "shopify_products.csv")
    assert problems == []
    assert [d.fields["item_id"] for d in drafts] == ["MUG-BLU", "MUG-GRN", "TOWEL-1"]  # image row skipped
    blue, green, towel = (d.fields for d in drafts)
    assert blue["title"] == green["title"] == "Ceramic Mug" and green["brand"] == "Kiln & Co"
    assert blue["description"] == "Hand-thrown stoneware mug & saucer."
    assert blue["attributes"]["color"] == "Blue" and green["attributes"]["color"] == "Green"
    assert blue["category"].startswith("Home & Garden")
    assert "title" not in towel["attributes"] and towel["available"] == "false"  # a draft product
    report = ingest_items(sqlite_store, HERE / "shopify_products.csv", FORMATS["shopify-products"], settings)
    assert report.accepted == 3 and report.quarantined == 0


def test_woocommerce_orders_unit_price_guests_and_statuses(sqlite_store: Store, settings: Settings) -> None:
    drafts, problems = _read("woocommerce-orders", "woocommerce_orders.csv")
    rows = [tuple(d.fields[f] for f in ("session_id", "type", "user_id", "price")) for d in drafts]
    assert rows == [
        ("101", "purchase", "7", "18.0000"),  # item_total 36.00 over 2: the unit price
        ("102", "return", "7", "18.0000"),
        ("103", "cart", "guest@example.org", "12.5000"),  # customer 0 is a guest: the e-mail names them
        ("105", "purchase", "9", "12.5000"),
    ]
    held = sorted((p.reason, p.field) for p in problems)
    assert held == [(CANCELLED, "status"), (UNKNOWN_STATUS, "status")]
    assert any("wc-awaiting-shipment" in p.detail for p in problems)
    report = ingest_events(
        sqlite_store, HERE / "woocommerce_orders.csv", FORMATS["woocommerce-orders"], settings
    )
    assert report.accepted == 4 and report.quarantined == 2


def test_magento_products_default_view_attributes_and_stock() -> None:
    drafts, problems = _read("magento-products", "magento_products.csv")
    assert problems == [] and [d.fields["item_id"] for d in drafts] == ["MB01", "WJ01"]  # fr_fr row skipped
    bag, jacket = (d.fields for d in drafts)
    assert bag["category"] == "Gear/Bags" and bag["brand"] == "Joust"
    assert bag["attributes"]["material"] == "Nylon,Polyester" and bag["attributes"]["color"] == "Blue"
    assert bag["description"] == "The sporty Joust Duffle Bag can't be beat."
    assert jacket["available"] == "false" and jacket["category"] == "Women/Tops/Jackets"


@pytest.mark.parametrize("file", ["google_merchant.tsv", "google_merchant.xml"])
def test_google_merchant_feed(file: str, sqlite_store: Store, settings: Settings) -> None:
    drafts, problems = _read("google-merchant", file)
    first = drafts[0].fields
    assert first["item_id"] == "TSH-1" and first["price"] == "15.00" and first["currency"] == "USD"
    assert first["category"] == "Clothing/Tops/T-Shirts" and first["attributes"]["color"] == "white"
    if file.endswith(".tsv"):
        linen = drafts[1].fields
        assert linen["price"] == "999.00" and linen["currency"] == "JPY"  # the sale price is what is paid
        assert linen["available"] == "false"
        report = ingest_items(sqlite_store, HERE / file, FORMATS["google-merchant"], settings)
        # "free" is not money: that item is held, naming the field; the other two go in
        assert report.accepted == 2 and report.reasons == {"bad_type": 1} and report.fields == {"price": 1}
    else:
        assert [(p.field, p.reason) for p in problems] == [("title", "missing_field")]


def test_a_constant_event_type_for_a_file_with_no_type_column(tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    path.write_text("when,sku,customer,amount\n2024-01-01T10:00:00,A1,c1,3.50\n")
    mapping = ColumnMapping(
        columns={"ts": "when", "item_id": "sku", "user_id": "customer", "price": "amount"},
        event_type="purchase",
    )
    fmt = make_generic_format("events", "csv", mapping)
    (draft,) = list(fmt.read(path, ReadOptions()))
    assert isinstance(draft, Draft) and draft.fields["type"] == "purchase"
    with pytest.raises(ValueError, match="unknown event type"):
        ColumnMapping(event_type="bought-it")
