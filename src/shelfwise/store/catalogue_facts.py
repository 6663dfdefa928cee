"""Catalogue facts the shop did not send but its data states: a price from the latest sale, and
attributes (product type, category, colour, material, size, pack size) read from titles.

Ingest calls ``complete_catalogue`` for the items a run touched, so a shop that loads only its
orders (Online Retail carries a unit price on every invoice line and no catalogue) still gets priced,
categorised items with facets. Derived values never replace ones the shop gave: a price from sales is
marked ``attributes["price_source"] = "latest_sale"`` and is refreshed by later sales until the
catalogue states a price; annotated keys are listed in ``attributes["annotated"]``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from shelfwise.data.attributes import annotate_item
from shelfwise.data.schemas import EventType, Item
from shelfwise.store.base import Store
from shelfwise.store.tables import events, items

PRICE_SOURCE = "price_source"
LATEST_SALE = "latest_sale"
_CHUNK = 2_000


def latest_sale_prices(store: Store, item_ids: Iterable[str]) -> dict[str, tuple[float, str | None]]:
    """``item_id -> (unit price, currency)`` of each item's latest purchase that carried a price
    (latest by time, then by event id)."""
    ids = list(dict.fromkeys(item_ids))
    engine: Any = store.engine  # type: ignore[attr-defined]
    out: dict[str, tuple[float, str | None]] = {}
    with engine.connect() as conn:
        if ids and engine.dialect.name == "sqlite" and _wide(conn, len(ids)):
            wanted = set(ids)
            for item_id, price, currency in conn.exec_driver_sql(
                _SQLITE_ALL, (EventType.PURCHASE.value,) * 2
            ):
                if item_id in wanted:
                    out[item_id] = (float(price), currency)
            return out
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            ranked = (
                sa.select(
                    events.c.item_id,
                    events.c.price,
                    events.c.currency,
                    sa.func.row_number()
                    .over(
                        partition_by=events.c.item_id, order_by=(events.c.ts.desc(), events.c.event_id.desc())
                    )
                    .label("rn"),
                )
                .where(
                    events.c.item_id.in_(chunk),
                    events.c.type == EventType.PURCHASE.value,
                    events.c.price.is_not(None),
                    events.c.price > 0,
                )
                .subquery()
            )
            rows = conn.execute(
                sa.select(ranked.c.item_id, ranked.c.price, ranked.c.currency).where(ranked.c.rn == 1)
            )
            for item_id, price, currency in rows:
                out[item_id] = (float(price), currency)
    return out


# The same answer for every item at once, for SQLite when a run touched a good share of the
# catalogue (an initial load touches all of it): two sequential scans of the events table (the
# latest time per item, then the rows at that time, the highest event id winning) instead of
# reaching each item's events through ``ix_events_item`` one random row at a time (Online Retail:
# about 1 s of CPU instead of 3.5 s). ``NOT INDEXED`` keeps SQLite from walking that index.
_SQLITE_ALL = """
SELECT item_id, price, currency FROM (
  SELECT e.item_id, e.price, e.currency,
         row_number() OVER (PARTITION BY e.item_id ORDER BY e.event_id DESC) AS rn
  FROM events AS e NOT INDEXED
  JOIN (SELECT item_id, max(ts) AS ts FROM events NOT INDEXED
        WHERE type = ? AND price IS NOT NULL AND price > 0 AND item_id IS NOT NULL
        GROUP BY item_id) AS m
    ON e.item_id = m.item_id AND e.ts = m.ts
  WHERE e.type = ? AND e.price IS NOT NULL AND e.price > 0
) WHERE rn = 1
"""


def _wide(conn: sa.Connection, n: int) -> bool:
    """Whether ``n`` items are enough of the catalogue for a whole-table scan to be the cheaper way."""
    total = conn.execute(sa.select(sa.func.count()).select_from(items)).scalar_one()
    return n * 4 >= total


def _with_sale_price(item: Item, sale: tuple[float, str | None] | None) -> Item:
    if sale is None:
        return item
    from_sales = item.attributes.get(PRICE_SOURCE) == LATEST_SALE
    if item.price is not None and not from_sales:
        return item  # the catalogue's own price wins
    price, currency = sale
    if from_sales and item.price == price and (item.currency or None) == (currency or item.currency):
        return item
    return dataclasses.replace(
        item,
        price=price,
        currency=item.currency or currency,
        attributes={**item.attributes, PRICE_SOURCE: LATEST_SALE},
    )


def complete_catalogue(
    store: Store,
    item_ids: Iterable[str],
    *,
    prices: bool = True,
    annotate: bool = True,
    sales: dict[str, tuple[float, str | None]] | None = None,
) -> dict[str, int]:
    """Fill prices from sales and annotate attributes for ``item_ids``; returns how many items got
    a price and how many got at least one annotated fact. ``sales``: ``latest_sale_prices`` of these
    items when the caller already knows it (ingest's first load does), else it is read here."""
    ids = list(dict.fromkeys(item_ids))
    report = {"priced_from_sales": 0, "annotated": 0}
    if not prices or not ids:
        sales = {}
    elif sales is None:
        sales = latest_sale_prices(store, ids)  # one query for the whole run
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        stored = store.get_items(chunk)
        changed: list[Item] = []
        for item_id in chunk:
            item = stored.get(item_id)
            if item is None:
                continue
            new = _with_sale_price(item, sales.get(item_id))
            report["priced_from_sales"] += new is not item
            if annotate:
                annotated = annotate_item(new)
                report["annotated"] += annotated is not new
                new = annotated
            if new is not item:
                changed.append(new)
        if changed:
            store.upsert_items(changed, replace=True)
    return report
