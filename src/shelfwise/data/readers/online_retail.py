"""UCI Online Retail (Chen 2015, CC BY 4.0): invoice lines of a UK gift shop, 2010-12 to 2011-12.

Cancellation invoices (``C536379``) become ``return`` events with a positive quantity; fee and
postage codes (``POST``, ``BANK CHARGES``…) are not products and are quarantined as such.
Times are shop-local (Europe/London). A line without a CustomerID is a guest purchase: kept,
with no user.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from shelfwise.data.columnar import Coded, encode, flags
from shelfwise.data.readers.arrow_csv import columns_of, iter_csv_chunks_arrow
from shelfwise.data.readers.base import (
    DatasetFormat,
    Draft,
    DraftBatch,
    Problem,
    ReadOptions,
    Record,
    TimeSpec,
    iter_csv,
    iter_csv_chunks,
)

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
        yield rec if isinstance(rec, Problem) else _record(*rec)


def _record(line_no: int, raw: str, row: dict[str, str]) -> Record:
    code = row["StockCode"].strip()
    if NON_PRODUCT.match(code):
        return Problem(line_no, raw, "item_id", NON_PRODUCT_ITEM, f"{code!r} is a fee or service code")
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
    return Draft(
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


def read_batches(path: Path, opts: ReadOptions, size: int) -> Iterator[DraftBatch]:
    """``read`` in columns: each rule above applied once per distinct value of its column (a file
    repeats its stock codes, invoices, customers and countries on many lines), not once per line."""
    chunks = (
        iter_csv_chunks_arrow(path, opts, size, required=COLUMNS, what="Online Retail")
        if opts.limit is None  # Arrow reads ahead a piece: a limit stays with the stdlib reader
        else iter_csv_chunks(path, opts, size, required=COLUMNS, what="Online Retail")
    )
    for names, nums, rows, problems in chunks:
        yield _columns(names, nums, rows, problems)


def _columns(
    names: list[str], nums: list[int], rows: Sequence[list[str]], problems: list[Problem]
) -> DraftBatch:
    if not rows:
        return DraftBatch(line_no=[], fields={}, notes=[], draft=_no_draft, problems=problems)
    # every column the gate reads (the description is only read back for a new item's stub)
    columns = zip(names, columns_of(rows, len(names)), strict=True)
    raw = {n: encode(col) for n, col in columns if n != "Description"}
    code_d, code_c = raw["StockCode"]
    codes = [c.strip() for c in code_d]
    fee = flags([NON_PRODUCT.match(c) is not None for c in codes], code_c)
    for i in np.flatnonzero(fee).tolist():
        detail = f"{codes[code_c[i]]!r} is a fee or service code"
        problems.append(Problem(nums[i], ",".join(rows[i]), "item_id", NON_PRODUCT_ITEM, detail))
    kept = np.flatnonzero(~fee)

    def column(name: str, fn: Callable[[str], Any]) -> Coded:
        distinct, at = raw[name]
        return Coded([fn(v) for v in distinct], at[kept])

    inv_d, inv_c = raw["InvoiceNo"]
    invoices = [v.strip() for v in inv_d]
    is_return = flags([v[:1] in ("C", "c") for v in invoices], inv_c)[kept]
    returns = is_return.astype(np.intp)
    qty_d, qty_c = raw["Quantity"]
    quantities = [v.strip() for v in qty_d]
    quantity = Coded(
        [*quantities, *(q.removeprefix("-") for q in quantities)], qty_c[kept] + returns * len(qty_d)
    )
    fields: dict[str, Sequence[Any]] = {
        "user_id": column("CustomerID", _customer),
        "session_id": Coded([v or None for v in invoices], inv_c[kept]),
        "item_id": Coded(codes, code_c[kept]),
        "type": Coded(["purchase", "return"], returns),
        "ts": column("InvoiceDate", str),
        "quantity": quantity,
        "price": column("UnitPrice", str),
        "context": column("Country", lambda c: {"country": c.strip()}),  # shared: the gate copies nothing
    }
    line_no = [nums[i] for i in kept.tolist()] if len(kept) < len(nums) else nums

    def draft(i: int) -> Draft:
        at = int(kept[i])
        row = rows[at]
        rec = _record(nums[at], ",".join(row), dict(zip(names, row, strict=True)))
        assert isinstance(rec, Draft)  # fee codes were taken out above
        return rec

    return DraftBatch(
        line_no=line_no,
        fields=fields,
        notes=Coded([(), (CANCELLATION,)], returns),
        draft=draft,
        problems=problems,
    )


def _no_draft(i: int) -> Draft:
    raise IndexError(i)


def _customer(value: str) -> str | None:
    customer = value.strip()
    if customer.endswith(".0"):
        customer = customer[:-2]
    return customer or None


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
    read_batches=read_batches,
)
