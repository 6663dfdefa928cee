"""UCI Online Retail (Chen 2015, CC BY 4.0): invoice lines of a UK gift shop, 2010-12 to 2011-12.

Cancellation invoices (``C536379``) become ``return`` events with a positive quantity; fee and
postage codes (``POST``, ``BANK CHARGES``…) are not products and are quarantined as such.
Times are shop-local (Europe/London). A line without a CustomerID is a guest purchase: kept,
with no user.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from shelfwise.data.readers.base import DatasetFormat, Draft, Problem, ReadOptions, Record, TimeSpec, iter_csv

COLUMNS = (
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
    "Country",
)
NON_PRODUCT = re.compile(
    r"^(POST|DOT|M|D|C2|CRUK|PADS|B|S|BANK CHARGES|AMAZONFEE|ADJUST\d*|TEST\d*|gift_\d+_\d+)$", re.IGNORECASE
)
NON_PRODUCT_ITEM = "non_product_item"
CANCELLATION = "cancellation_to_return"


def read(path: Path, opts: ReadOptions) -> Iterator[Record]:
    for rec in iter_csv(path, opts, required=COLUMNS, what="Online Retail"):
        if isinstance(rec, Problem):
            yield rec
            continue
        line_no, raw, row = rec
        code = row["StockCode"].strip()
        if NON_PRODUCT.match(code):
            yield Problem(line_no, raw, "item_id", NON_PRODUCT_ITEM, f"{code!r} is a fee or service code")
            continue
        invoice = row["InvoiceNo"].strip()
        quantity = row["Quantity"].strip()
        notes: tuple[str, ...] = ()
        event_type = "purchase"
        if invoice[:1] in ("C", "c"):
            event_type = "return"
            notes = (CANCELLATION,)
            quantity = quantity.removeprefix("-")
        customer = row["CustomerID"].strip()
        if customer.endswith(".0"):
            customer = customer[:-2]
        description = row["Description"]
        yield Draft(
            line_no,
            raw,
            {
                "user_id": customer or None,
                "session_id": invoice or None,
                "item_id": code,
                "type": event_type,
                "ts": row["InvoiceDate"],
                "quantity": quantity,
                "price": row["UnitPrice"],
                "context": {"country": row["Country"].strip()},
            },
            item={"item_id": code, "title": description} if description.strip() else None,
            notes=notes,
        )


FORMAT = DatasetFormat(
    name="online-retail",
    kind="events",
    title="UCI Online Retail: 541,909 invoice lines of a UK online gift shop (2010-12 to 2011-12)",
    read=read,
    time=TimeSpec(unit="iso", tz="Europe/London"),
    currency="GBP",
    licence="CC BY 4.0 (Chen, D. (2015). Online Retail. UCI ML Repository. doi:10.24432/C5BW33)",
    redistributable=True,
    vendored="data/online_retail/online_retail.csv.gz",
    shared="online_retail/online_retail.csv.gz",
    # every invoice line names its stock code, date, quantity and unit price: a blank one is a hole
    # in the export (a purchase at price NULL would understate revenue), not a guest or a default
    required=("item_id", "type", "ts", "quantity", "price"),
)
