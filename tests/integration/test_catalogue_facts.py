"""Ingest fills catalogue facts on both backends: prices from the latest sale, annotated attributes."""

from __future__ import annotations

from pathlib import Path

import pytest

from shelfwise.core.settings import Settings
from shelfwise.data.readers import get_format
from shelfwise.data.schemas import EventType, Item
from shelfwise.store import Store
from shelfwise.store.catalogue_facts import LATEST_SALE, PRICE_SOURCE, complete_catalogue
from shelfwise.store.ingest import ingest_events


def test_online_retail_items_get_prices_and_categories(
    store: Store, retail_slice: Path, settings: Settings
) -> None:
    report = ingest_events(store, retail_slice, get_format("online-retail"), settings)
    items = store.get_items(store.item_ids())
    assert len(items) > 500
    priced = [it for it in items.values() if it.price is not None]
    sold = {e.item_id for e in store.iter_events(types=[EventType.PURCHASE]) if e.price}
    assert {it.item_id for it in priced} == sold  # every item with a priced sale (the rest: returns only)
    assert len(priced) / len(items) > 0.99
    assert all(it.attributes[PRICE_SOURCE] == LATEST_SALE for it in priced)
    with_category = sum(it.category is not None for it in items.values())
    assert with_category / len(items) >= 0.75
    assert report.catalogue_facts["priced_from_sales"] == len(priced)
    holder = items["85123A"]  # WHITE HANGING HEART T-LIGHT HOLDER: last line in the slice 17:06, 5.91
    assert holder.category == "lighting > t-light holder"
    assert holder.attributes["colour"] == "white"
    assert holder.price == 5.91 and holder.currency == "GBP"


def test_catalogue_price_wins_over_sales_and_sales_refresh_their_own(
    store: Store, retail_slice: Path, settings: Settings
) -> None:
    ingest_events(store, retail_slice, get_format("online-retail"), settings)
    store.upsert_items([Item(item_id="85123A", price=9.99, attributes={"colour": "ivory"})], replace=True)
    complete_catalogue(store, ["85123A"])
    item = store.get_items(["85123A"])["85123A"]
    assert item.price == 9.99
    assert item.attributes["colour"] == "ivory"  # the shop's value, not the title's "white"


def test_annotation_can_be_turned_off(store: Store, retail_slice: Path, tmp_path: Path) -> None:
    settings = Settings(
        var_dir=tmp_path / "v", pseudonym_key="k" * 32, annotate_items=False, prices_from_sales=False
    )
    report = ingest_events(store, retail_slice, get_format("online-retail"), settings, limit=200)
    assert report.catalogue_facts == {}
    items = store.get_items(store.item_ids())
    assert all(it.category is None and it.price is None for it in items.values())


def test_latest_sale_prices_whole_table_and_per_item_agree(
    store: Store, retail_slice: Path, settings: Settings
) -> None:
    """SQLite answers a run that touched most of the catalogue with one scan of the events table;
    it must give what the per-item query gives (and what the events say), ties on time included."""
    from shelfwise.data.schemas import Event
    from shelfwise.store.catalogue_facts import latest_sale_prices

    ingest_events(store, retail_slice, get_format("online-retail"), settings)
    t = 1_400_000_000_000
    store.append_events(
        [  # one instant, three purchases of one item: the highest event id wins; a later free one and
            # a later return do not count
            Event(
                event_id="e-tie-a", type=EventType.PURCHASE, ts=t, item_id="85123A", price=1.5, currency="GBP"
            ),
            Event(
                event_id="e-tie-c", type=EventType.PURCHASE, ts=t, item_id="85123A", price=3.5, currency="EUR"
            ),
            Event(
                event_id="e-tie-b", type=EventType.PURCHASE, ts=t, item_id="85123A", price=2.5, currency="GBP"
            ),
            Event(
                event_id="e-free",
                type=EventType.PURCHASE,
                ts=t + 1,
                item_id="85123A",
                price=0.0,
                currency="GBP",
            ),
            Event(
                event_id="e-ret", type=EventType.RETURN, ts=t + 2, item_id="85123A", price=9.0, currency="GBP"
            ),
            Event(
                event_id="e-only-return",
                type=EventType.RETURN,
                ts=t,
                item_id="NO-SALE",
                price=4.0,
                currency="GBP",
            ),
        ]
    )
    ids = sorted(store.item_ids() | {"NO-SALE", "NOT-THERE"})
    whole = latest_sale_prices(store, ids)
    one_by_one = {i: p for i in ids for p in latest_sale_prices(store, [i]).values()}
    assert whole == one_by_one
    assert whole["85123A"] == (3.5, "EUR")
    assert "NO-SALE" not in whole and "NOT-THERE" not in whole
    expected: dict[str, tuple[int, str, float, str | None]] = {}
    for e in store.iter_events(types=[EventType.PURCHASE]):
        if (
            e.item_id
            and e.price
            and (e.item_id not in expected or (e.ts, e.event_id) > expected[e.item_id][:2])
        ):
            expected[e.item_id] = (e.ts, e.event_id, e.price, e.currency)
    assert whole == {i: (p, c) for i, (_, _, p, c) in expected.items()}


@pytest.mark.parametrize("batch_size", [2, 20_000])
def test_first_load_prices_from_its_rows_as_the_store_would(
    store: Store, tmp_path: Path, settings: Settings, batch_size: int
) -> None:
    """A first load prices its items from the rows it stored (no re-read of the events table): the
    same prices ``latest_sale_prices`` reads back from the store, ties on time, repeated lines, free
    lines, returns and guests included, whether the ties share a batch or not."""
    from shelfwise.store.catalogue_facts import latest_sale_prices

    head = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"
    lines = [
        "536365,85123A,HOLDER,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom",
        "536366,85123A,HOLDER,6,2010-12-01 08:28:00,2.65,17850.0,United Kingdom",
        "536367,85123A,HOLDER,6,2010-12-01 08:28:00,2.75,13047.0,United Kingdom",
        "536368,85123A,HOLDER,3,2010-12-01 08:28:00,2.85,13047.0,France",
        "536369,85123A,HOLDER,6,2010-12-01 08:29:00,0,13047.0,France",
        "C536370,85123A,HOLDER,-6,2010-12-01 09:00:00,9.99,13047.0,France",
        "536371,22633,HAND WARMER,6,2010-12-01 08:30:00,1.85,,United Kingdom",
        "536371,22633,HAND WARMER,6,2010-12-01 08:30:00,1.85,,United Kingdom",
        "536372,22633,HAND WARMER,2,2010-12-01 08:30:00,1.95,,United Kingdom",
        "C536373,22634,ONLY RETURNED,-1,2010-12-01 08:31:00,4.25,17850.0,United Kingdom",
        "536374,22635,ZERO ONLY,1,2010-12-01 08:32:00,0,17850.0,United Kingdom",
    ]
    path = tmp_path / "ties.csv"
    path.write_text("\n".join([head, *lines]) + "\n")
    settings = settings.model_copy(update={"ingest_batch_size": batch_size})

    def not_read(*_: object) -> None:
        raise AssertionError("a first load must not read its sales back")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("shelfwise.store.catalogue_facts.latest_sale_prices", not_read)
        ingest_events(store, path, get_format("online-retail"), settings, engine="batch")
    items = store.get_items(store.item_ids())
    want = latest_sale_prices(store, sorted(items))
    got = {i: (it.price, it.currency) for i, it in items.items() if it.price is not None}
    assert got == want
    assert set(got) == {"85123A", "22633"} and got["85123A"][0] in (2.65, 2.75, 2.85)
