"""REES46 "eCommerce behavior data from multi category store" (Kechinov, Kaggle), October 2019 file.

One CSV line per event: ``view``, ``cart`` or ``purchase`` of a product, with the product's
category, brand and price carried inline. Times are written ``2019-10-01 00:00:00 UTC``; the
reader drops the `` UTC`` suffix so the quality gate sees plain ISO text in UTC. Prices are USD.
The licence is unclear ("data from REES46 Marketing Platform"), so the file is never vendored:
it is read from the shared data folder.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from shelfwise.data.readers.base import DatasetFormat, Draft, Problem, ReadOptions, Record, TimeSpec, iter_csv

COLUMNS = (
    "event_time",
    "event_type",
    "product_id",
    "category_id",
    "category_code",
    "brand",
    "price",
    "user_id",
    "user_session",
)


def _or_none(text: str) -> str | None:
    return text if text.strip() else None


def read(path: Path, opts: ReadOptions) -> Iterator[Record]:
    for rec in iter_csv(path, opts, required=COLUMNS, what="REES46 events CSV"):
        if isinstance(rec, Problem):
            yield rec
            continue
        line_no, raw, row = rec
        product = row["product_id"].strip()
        price = row["price"]
        yield Draft(
            line_no,
            raw,
            {
                "user_id": _or_none(row["user_id"].strip()),
                "session_id": _or_none(row["user_session"].strip()),
                "item_id": product,
                "type": row["event_type"],
                "ts": row["event_time"].strip().removesuffix(" UTC"),
                "price": price,
            },
            item={
                "item_id": product,
                "category": _or_none(row["category_code"]),
                "brand": _or_none(row["brand"]),
                "price": price,
                "attributes": {"category_id": row["category_id"].strip()},
            },
        )


FORMAT = DatasetFormat(
    name="rees46",
    kind="events",
    title="REES46 multi-category store: views, carts and purchases with inline product facts (2019)",
    read=read,
    time=TimeSpec(unit="iso", tz="UTC"),
    currency="USD",
    licence="unclear (Kaggle: © original authors; REES46 asks for 'data from REES46 Marketing Platform')",
    redistributable=False,
    shared="rees46_sample/events.csv",
    notes="Licence unclear: internal prototyping only, never copied into the repository.",
    required=("item_id", "type", "ts", "price"),  # every REES46 event carries the product's price
)
