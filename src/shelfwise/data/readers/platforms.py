"""Exports of the platforms shops run on: Shopify, WooCommerce, Magento, Google Merchant Center.

Each reader follows the platform's published export layout (column names as the platform writes
them; the fixtures under ``tests/fixtures/platforms`` were written from that documentation, not
copied from a shop). An order line becomes one event; the order's status decides its type:

========================  =====================  ==========================================
platform status           event                  why
========================  =====================  ==========================================
paid / completed /        ``purchase``           the money was taken
processing / partially
paid / partially refunded
refunded                  ``return``             the goods came back (note ``refund_to_return``)
pending / authorized /    ``cart``               wanted but not paid (note ``unpaid_order_to_cart``)
on-hold / failed
cancelled / voided        quarantined            not a purchase (reason ``cancelled_order``):
                                                 kept with its reason, never counted as a sale
========================  =====================  ==========================================

A status the table does not know is quarantined (``unknown_status``), naming the value, so a new
status in a platform's export is seen rather than guessed. The shopper is the platform's customer
id when the export has one, else the e-mail address; either is pseudonymised at ingest like every
shopper id. Shopify writes order-level columns (e-mail, status, date) only on an order's first
line; later lines of the same order inherit them.
"""

from __future__ import annotations

import contextlib
import json
import re
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from shelfwise.core.errors import InputFileError
from shelfwise.data.readers.base import (
    MALFORMED,
    RAW_KEEP,
    DatasetFormat,
    Draft,
    Problem,
    ReadOptions,
    Record,
    iter_csv,
    open_binary,
)

CANCELLED = "cancelled_order"
UNKNOWN_STATUS = "unknown_status"
REFUND = "refund_to_return"
UNPAID = "unpaid_order_to_cart"

_PURCHASE = {"paid", "completed", "complete", "processing", "partially_paid", "partially_refunded", "closed"}
_RETURN = {"refunded"}
_UNPAID = {
    "pending",
    "authorized",
    "on-hold",
    "on_hold",
    "failed",
    "payment_review",
    "pending_payment",
    "checkout-draft",
    "checkout_draft",
}
_CANCELLED = {"cancelled", "canceled", "voided", "void"}


def status_event(status: str) -> tuple[str | None, tuple[str, ...], str | None]:
    """(event type, notes, quarantine reason) for an order status as the platforms write it."""
    key = status.strip().lower().replace(" ", "_")
    if key.startswith("wc-"):
        key = key[3:]
    if key in _PURCHASE:
        return "purchase", (), None
    if key in _RETURN:
        return "return", (REFUND,), None
    if key in _UNPAID or key.replace("_", "-") in _UNPAID:
        return "cart", (UNPAID,), None
    if key in _CANCELLED:
        return None, (), CANCELLED
    return None, (), UNKNOWN_STATUS


_OFFSET = re.compile(r"(\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)\s*([+-]\d{2}):?(\d{2})$")


def iso_time(text: str) -> str:
    """Platform date-times as ISO 8601: Shopify writes ``2024-03-01 10:15:02 -0500``."""
    text = text.strip()
    return _OFFSET.sub(r"\1\2:\3", text)


def _blank(value: str | None) -> bool:
    return value is None or not value.strip()


def _or_none(value: str | None) -> str | None:
    return None if _blank(value) else value.strip()  # type: ignore[union-attr]


def _order_line(
    line_no: int,
    raw: str,
    *,
    order: str,
    status: str,
    when: str,
    shopper: str | None,
    sku: str | None,
    name: str | None,
    quantity: str | None,
    price: str | None,
    currency: str | None,
    context: dict[str, Any],
) -> Record:
    etype, notes, reason = status_event(status)
    if reason is not None:
        detail = f"order {order}: status {status.strip()!r}" + (
            " is not a purchase" if reason == CANCELLED else " is not one shelfwise knows"
        )
        return Problem(line_no, raw, "status", reason, detail)
    item_id = sku or name
    if item_id is None:
        return Problem(line_no, raw, "item_id", MALFORMED, f"order {order}: a line with neither SKU nor name")
    if sku is None:
        notes = (*notes, "name_as_item_id")
    return Draft(
        line_no,
        raw,
        {
            "user_id": shopper,
            "session_id": order or None,
            "item_id": item_id,
            "type": etype,
            "ts": iso_time(when),
            "quantity": quantity,
            "price": price,
            "currency": currency,
            "context": context,
        },
        item={"item_id": item_id, "title": name} if name else None,
        notes=notes,
    )


# --- Shopify ---------------------------------------------------------------------------------
# Orders export (Shopify Help Center, "Exporting orders"): one row per line item.
SHOPIFY_ORDER_COLUMNS = (
    "Name",
    "Email",
    "Financial Status",
    "Created at",
    "Lineitem quantity",
    "Lineitem name",
    "Lineitem price",
    "Lineitem sku",
    "Currency",
)
_SHOPIFY_ORDER_LEVEL = (
    "Email",
    "Financial Status",
    "Created at",
    "Currency",
    "Cancelled at",
    "Billing Country",
)


def read_shopify_orders(path: Path, opts: ReadOptions) -> Iterator[Record]:
    current: str | None = None
    inherited: dict[str, str] = {}
    for rec in iter_csv(path, opts, required=SHOPIFY_ORDER_COLUMNS, what="Shopify orders export"):
        if isinstance(rec, Problem):
            yield rec
            continue
        line_no, raw, row = rec
        order = row["Name"].strip()
        if order != current:
            current, inherited = order, {}
        for col in _SHOPIFY_ORDER_LEVEL:
            value = row.get(col, "")
            if not _blank(value):
                inherited[col] = value
        status = inherited.get("Financial Status", "")
        if not _blank(inherited.get("Cancelled at")):
            status = "cancelled"
        context: dict[str, Any] = {}
        if inherited.get("Billing Country"):
            context["country"] = inherited["Billing Country"].strip()
        yield _order_line(
            line_no,
            raw,
            order=order,
            status=status,
            when=inherited.get("Created at", ""),
            shopper=_or_none(inherited.get("Email")),
            sku=_or_none(row["Lineitem sku"]),
            name=_or_none(row["Lineitem name"]),
            quantity=row["Lineitem quantity"],
            price=row["Lineitem price"],
            currency=_or_none(inherited.get("Currency")),
            context=context,
        )


# Products export (Shopify Help Center, "Using CSV files to import and export products"): one row
# per variant; a product's later variant rows leave Title, Vendor and Type blank.
SHOPIFY_PRODUCT_COLUMNS = ("Handle", "Title", "Vendor", "Variant SKU", "Variant Price")


def read_shopify_products(path: Path, opts: ReadOptions) -> Iterator[Record]:
    handle: str | None = None
    product: dict[str, str] = {}
    for rec in iter_csv(path, opts, required=SHOPIFY_PRODUCT_COLUMNS, what="Shopify products export"):
        if isinstance(rec, Problem):
            yield rec
            continue
        line_no, raw, row = rec
        if row["Handle"].strip() != handle:
            handle, product = row["Handle"].strip(), {}
        product_level = ("Title", "Body (HTML)", "Vendor", "Type", "Product Category", "Tags", "Status")
        for col in (*product_level, "Option1 Name", "Option2 Name", "Option3 Name"):
            if not _blank(row.get(col)):
                product[col] = row[col].strip()
        sku = _or_none(row["Variant SKU"])
        if sku is None and _blank(row["Variant Price"]):
            continue  # an image-only row: Shopify writes extra pictures as rows of their own
        attributes: dict[str, Any] = {"handle": handle}
        for n in (1, 2, 3):
            # option names are written on a product's first row only
            name, value = product.get(f"Option{n} Name", ""), row.get(f"Option{n} Value", "")
            if not _blank(name) and not _blank(value) and value.strip() != "Default Title":
                attributes[name.strip().lower()] = value.strip()
        if product.get("Tags"):
            attributes["tags"] = [t.strip() for t in product["Tags"].split(",") if t.strip()]
        if not _blank(row.get("Image Src")):
            attributes["image"] = row["Image Src"].strip()
        status = product.get("Status", "active").lower()
        yield Draft(
            line_no,
            raw,
            {
                "item_id": sku or handle,
                "title": product.get("Title"),
                "description": _strip_html(product.get("Body (HTML)")),
                "category": product.get("Product Category") or product.get("Type"),
                "brand": product.get("Vendor"),
                "price": row["Variant Price"],
                "available": "false" if status in ("draft", "archived") else "true",
                "attributes": attributes,
            },
        )


_TAG = re.compile(r"<[^>]+>")


def _strip_html(text: str | None) -> str | None:
    """Product descriptions are HTML in every platform's export; the catalogue keeps the text."""
    if text is None:
        return None
    import html

    plain = html.unescape(_TAG.sub(" ", text))
    return " ".join(plain.split()) or None


# --- WooCommerce -----------------------------------------------------------------------------
# Customer/Order CSV Export, "Default - One Row per Item" layout (WooCommerce.com documentation):
# order columns repeated on each item row.
WOO_ORDER_COLUMNS = ("order_number", "order_date", "status", "item_name", "item_sku", "item_quantity")


def read_woocommerce_orders(path: Path, opts: ReadOptions) -> Iterator[Record]:
    for rec in iter_csv(path, opts, required=WOO_ORDER_COLUMNS, what="WooCommerce order export"):
        if isinstance(rec, Problem):
            yield rec
            continue
        line_no, raw, row = rec
        customer = _or_none(row.get("customer_id"))
        if customer in ("0", None):  # a guest order: WooCommerce writes customer 0
            customer = None
        price = _or_none(row.get("item_total"))
        quantity = _or_none(row["item_quantity"])
        if price is not None and quantity not in (None, "0"):
            # item_total is the line's total; the event carries the unit price (a value that is no
            # number is left as it is, for the quality gate to name)
            with contextlib.suppress(ValueError):
                price = f"{float(price) / float(quantity or 1):.4f}"
        context: dict[str, Any] = {}
        if not _blank(row.get("billing_country")):
            context["country"] = row["billing_country"].strip()
        yield _order_line(
            line_no,
            raw,
            order=row["order_number"].strip(),
            status=row["status"],
            when=row["order_date"],
            shopper=customer or _or_none(row.get("billing_email")),
            sku=_or_none(row["item_sku"]),
            name=_or_none(row["item_name"]),
            quantity=row["item_quantity"],
            price=price,
            currency=_or_none(row.get("order_currency") or row.get("currency")),
            context=context,
        )


# --- Magento ---------------------------------------------------------------------------------
# Magento 2 catalogue export (System > Data Transfer > Export, entity "Products"): one row per
# product and store view; the default store view's rows have an empty store_view_code.
MAGENTO_PRODUCT_COLUMNS = ("sku", "store_view_code", "name", "price", "categories")


def read_magento_products(path: Path, opts: ReadOptions) -> Iterator[Record]:
    for rec in iter_csv(path, opts, required=MAGENTO_PRODUCT_COLUMNS, what="Magento 2 product export"):
        if isinstance(rec, Problem):
            yield rec
            continue
        line_no, raw, row = rec
        if not _blank(row["store_view_code"]):
            continue  # a store view's translation of a product the default row already gave
        attributes: dict[str, Any] = {}
        for pair in _split_unquoted(row.get("additional_attributes", "")):
            key, sep, value = pair.partition("=")
            if sep and key.strip() and value.strip():
                attributes[key.strip()] = value.strip()
        if not _blank(row.get("product_type")):
            attributes["product_type"] = row["product_type"].strip()
        if not _blank(row.get("base_image")):
            attributes["image"] = row["base_image"].strip()
        # categories: "Default Category/Gear/Bags,Default Category/Collections/New": the first path
        # without the root is the item's category
        first = row["categories"].split(",")[0].strip()
        category = "/".join(first.split("/")[1:]) or first or None
        online = row.get("product_online", "1").strip()
        in_stock = row.get("is_in_stock", "1").strip()
        yield Draft(
            line_no,
            raw,
            {
                "item_id": row["sku"].strip(),
                "title": _or_none(row["name"]),
                "description": _strip_html(_or_none(row.get("description"))),
                "category": category,
                "brand": attributes.pop("manufacturer", None) or attributes.pop("brand", None),
                "price": row["price"],
                "available": "false" if "0" in (online, in_stock) else "true",
                "attributes": attributes,
            },
        )


def _split_unquoted(text: str) -> list[str]:
    """Magento's ``additional_attributes``: ``a=1,b="x,y"`` (values with commas are quoted)."""
    out: list[str] = []
    cur: list[str] = []
    quoted = False
    for ch in text or "":
        if ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if cur:
        out.append("".join(cur))
    return out


# --- Magento orders --------------------------------------------------------------------------
# Magento 2's admin order grid export (Sales > Orders > Export, CSV: "ID", "Purchase Point",
# "Purchase Date", "Bill-to Name", "Ship-to Name", "Grand Total (Base)", "Grand Total (Purchased)",
# "Status", …) lists orders without their line items, so it cannot say what was bought. The line
# items come from the REST API, ``GET /V1/orders`` (``Magento\Sales\Api\Data\OrderInterface``
# with its ``items``, ``OrderItemInterface``): the reader takes its orders as JSON Lines, one order
# a line (``jq -c '.items[]'`` over the API's answers). Order fields: ``increment_id``,
# ``created_at`` (UTC), ``state``/``status``, ``customer_id`` (null for a guest), ``customer_email``,
# ``order_currency_code``, ``billing_address.country_id``; line fields: ``sku``, ``name``,
# ``qty_ordered``, ``price``, ``parent_item_id``. A child line of a configurable or bundle product
# (``parent_item_id`` set) is not a purchase of its own: its parent line carries the SKU bought.
MAGENTO_GRID_COLUMNS = ("ID", "Purchase Point", "Purchase Date", "Bill-to Name", "Ship-to Name")
WHAT_MAGENTO = "Magento 2 orders JSON Lines (GET /V1/orders, one order a line)"
# Magento's order states (the status is a label a shop may rename; the state is fixed)
_MAGENTO_STATE = {
    "complete": "paid",
    "processing": "paid",
    "closed": "refunded",  # closed: a credit memo refunded the whole order
    "canceled": "canceled",
    "new": "pending",
    "pending_payment": "pending",
    "holded": "on-hold",
    "payment_review": "payment_review",
}


def _magento_text(value: Any, field: str, line_no: int, raw: str) -> str | Problem | None:
    from shelfwise.data.readers.generic import NotAValue, raw_text

    try:
        text = raw_text(value)
    except NotAValue as exc:
        return Problem(line_no, raw, field, exc.reason, f"{field}: {exc.detail}")
    return None if text is None or not text.strip() else text.strip()


def _magento_order(line_no: int, raw: str, order: Any) -> Iterator[Record]:
    if not isinstance(order, dict):
        yield Problem(line_no, raw, None, MALFORMED, f"a JSON {type(order).__name__}, not an order object")
        return
    fields: dict[str, str | None] = {}
    for key, field in (
        ("increment_id", "session_id"),
        ("created_at", "ts"),
        ("state", "status"),
        ("status", "status"),
        ("customer_id", "user_id"),
        ("customer_email", "user_id"),
        ("order_currency_code", "currency"),
    ):
        text = _magento_text(order.get(key), field, line_no, raw)
        if isinstance(text, Problem):
            yield text
            return
        fields[key] = text
    number = fields["increment_id"]
    if number is None:
        yield Problem(line_no, raw, "session_id", MALFORMED, "an order with no increment_id")
        return
    if fields["created_at"] is None:
        yield Problem(line_no, raw, "ts", MALFORMED, f"order {number}: no created_at")
        return
    state = fields["state"]
    status = _MAGENTO_STATE.get(state.lower(), state) if state else fields["status"]
    if status is None:
        yield Problem(line_no, raw, "status", MALFORMED, f"order {number}: neither state nor status")
        return
    lines = order.get("items")
    if not isinstance(lines, list) or not lines:
        shown = "missing" if lines is None else "empty" if lines == [] else f"a JSON {type(lines).__name__}"
        yield Problem(
            line_no, raw, "item_id", MALFORMED, f"order {number}: items is {shown}, not a list of lines"
        )
        return
    context: dict[str, Any] = {}
    billing = order.get("billing_address")
    if (
        isinstance(billing, dict)
        and isinstance(billing.get("country_id"), str)
        and billing["country_id"].strip()
    ):
        context["country"] = billing["country_id"].strip()
    shopper = fields["customer_id"] or fields["customer_email"]
    for pos, line in enumerate(lines):
        one = json.dumps(
            {"increment_id": number, "state": state, "status": fields["status"], "item": line},
            ensure_ascii=False,
            default=str,
        )[:RAW_KEEP]
        if not isinstance(line, dict):
            yield Problem(line_no, one, "item_id", MALFORMED, f"order {number}, line {pos}: not an object")
            continue
        if line.get("parent_item_id") not in (None, "", 0):
            continue  # a configurable or bundle product's child: its parent line is the purchase
        cells: dict[str, str | None] = {}
        bad = None
        for key, field in (
            ("sku", "item_id"),
            ("name", "item_id"),
            ("qty_ordered", "quantity"),
            ("price", "price"),
        ):
            text = _magento_text(line.get(key), field, line_no, one)
            if isinstance(text, Problem):
                bad = text
                break
            cells[key] = text
        if bad is not None:
            yield bad
            continue
        quantity = cells["qty_ordered"]
        if quantity is not None:
            # Magento writes quantities as decimals (2.0000); a whole number is the event's quantity
            with contextlib.suppress(ValueError):
                if float(quantity).is_integer():
                    quantity = str(int(float(quantity)))
        yield _order_line(
            line_no,
            one,
            order=number,
            status=status,
            when=fields["created_at"],
            shopper=shopper,
            sku=cells["sku"],
            name=cells["name"],
            quantity=quantity,
            price=cells["price"],
            currency=fields["order_currency_code"],
            context={**context, "order_line": pos},
        )


def read_magento_orders(path: Path, opts: ReadOptions) -> Iterator[Record]:
    from dataclasses import replace

    from shelfwise.data.readers.base import iter_jsonl

    count, first = 0, True
    try:
        for rec in iter_jsonl(path, replace(opts, limit=None), what=WHAT_MAGENTO):
            if isinstance(rec, Problem):
                records: Iterator[Record] = iter((rec,))
            else:
                line_no, raw, value = rec
                if first and not (isinstance(value, dict) and "increment_id" in value):
                    raise InputFileError(
                        f'{path}: not a {WHAT_MAGENTO} file (line {line_no} has no "increment_id")'
                    )
                records = _magento_order(line_no, raw, value)
            first = False
            for out in records:
                yield out
                count += 1
                if opts.limit is not None and count >= opts.limit:
                    return
    except InputFileError:
        if first and _is_magento_grid(path):
            raise InputFileError(
                f"{path}: this is Magento's order grid export (ID, Purchase Point, Purchase Date, …): it "
                "lists orders without their line items, so it cannot say what was bought",
                hint="export the orders through Magento's REST API (GET /V1/orders) as JSON Lines, one "
                "order a line (jq -c '.items[]'), and ingest that with --format magento",
            ) from None
        raise


def _is_magento_grid(path: Path) -> bool:
    try:
        with open_binary(path) as fh:
            head = fh.read(4096).decode("utf-8", errors="replace").lstrip("\ufeff")
    except Exception:  # unreadable (a cut gzip, …): not the grid export; the first error stands
        return False
    first = head.splitlines()[0] if head else ""
    return all(f'"{c}"' in first or c in first.split(",") for c in MAGENTO_GRID_COLUMNS[:3])


# --- Google Merchant Center ------------------------------------------------------------------
# Product data specification (Google Merchant Center Help): TSV with a header of attribute names,
# or RSS 2.0 XML with the attributes in the ``g:`` namespace.
GOOGLE_NS = "http://base.google.com/ns/1.0"
GOOGLE_REQUIRED = ("id", "title", "price")
_MONEY = re.compile(r"^\s*([0-9][0-9.,]*)\s*([A-Za-z]{3})\s*$")
_GOOGLE_ATTRIBUTES = (
    "gtin",
    "mpn",
    "condition",
    "color",
    "size",
    "material",
    "pattern",
    "gender",
    "age_group",
    "item_group_id",
    "image_link",
    "link",
    "google_product_category",
)


def _google_item(line_no: int, raw: str, row: dict[str, str]) -> Record:
    price = row.get("sale_price") or row.get("price") or ""
    money = _MONEY.match(price)
    amount, currency = (money.group(1).replace(",", ""), money.group(2).upper()) if money else (price, None)
    attributes = {k: row[k].strip() for k in _GOOGLE_ATTRIBUTES if not _blank(row.get(k))}
    category = _or_none(row.get("product_type")) or _or_none(row.get("google_product_category"))
    if category is not None:
        category = "/".join(part.strip() for part in category.split(">"))
    availability = (row.get("availability") or "in stock").strip().lower().replace("_", " ")
    return Draft(
        line_no,
        raw,
        {
            "item_id": (row.get("id") or "").strip(),
            "title": _or_none(row.get("title")),
            "description": _or_none(row.get("description")),
            "category": category,
            "brand": _or_none(row.get("brand")),
            "price": amount or None,
            "currency": currency,
            "available": "false" if availability in ("out of stock", "discontinued") else "true",
            "attributes": attributes,
        },
    )


def read_google_merchant(path: Path, opts: ReadOptions) -> Iterator[Record]:
    """A Merchant Center feed: XML (RSS 2.0, ``g:`` attributes) or tab-separated text."""
    try:
        with open_binary(path, None) as fh:
            head = fh.read(512).lstrip(b"\xef\xbb\xbf").lstrip()
    except (OSError, EOFError, zlib.error) as exc:
        raise InputFileError(f"{path}: not a valid Merchant Center feed ({exc})") from exc
    if head.startswith(b"<"):
        yield from _google_xml(path, opts)
        return
    what = "Merchant Center TSV feed"
    for rec in iter_csv(path, opts, required=GOOGLE_REQUIRED, delimiter="\t", what=what):
        if isinstance(rec, Problem):
            yield rec
            continue
        line_no, raw, row = rec
        yield _google_item(line_no, raw, row)


def _google_xml(path: Path, opts: ReadOptions) -> Iterator[Record]:
    n = 0
    with open_binary(path, opts.progress) as fh:
        try:
            for _event, elem in ET.iterparse(fh, events=("end",)):
                if elem.tag != "item" and not elem.tag.endswith("}entry"):
                    continue
                n += 1
                row = {}
                for child in elem:
                    tag = child.tag.split("}")[-1]
                    if child.text is not None:
                        row[tag] = child.text
                raw = ET.tostring(elem, encoding="unicode")[:2000]
                elem.clear()
                missing = [c for c in GOOGLE_REQUIRED if _blank(row.get(c))]
                if missing:
                    yield Problem(n, raw, missing[0], "missing_field", f"item {n} has no {missing[0]}")
                else:
                    yield _google_item(n, raw, row)
                if opts.limit is not None and n >= opts.limit:
                    return
        except (ET.ParseError, EOFError, zlib.error, OSError) as exc:
            if n == 0:
                raise InputFileError(f"{path}: not a valid Merchant Center XML feed ({exc})") from exc
            yield Problem(n + 1, "", None, MALFORMED, f"the XML breaks off: {exc}")


_ORDERS_NOTE = (
    "Order status mapped: paid/completed → purchase, refunded → return, pending/on-hold → cart, "
    "cancelled/voided quarantined (cancelled_order)."
)

FORMATS = (
    DatasetFormat(
        name="shopify-orders",
        kind="events",
        title="Shopify orders export (Orders > Export, CSV): one row per line item",
        read=read_shopify_orders,
        notes=_ORDERS_NOTE,
        required=("price",),
    ),
    DatasetFormat(
        name="shopify-products",
        kind="items",
        title="Shopify products export (Products > Export, CSV): one row per variant",
        read=read_shopify_products,
    ),
    DatasetFormat(
        name="woocommerce-orders",
        kind="events",
        title="WooCommerce Customer/Order CSV Export, Default - One Row per Item",
        read=read_woocommerce_orders,
        notes=_ORDERS_NOTE,
        required=("price",),
    ),
    DatasetFormat(
        name="magento-products",
        kind="items",
        title="Magento 2 product export (System > Data Transfer > Export > Products, CSV)",
        read=read_magento_products,
    ),
    DatasetFormat(
        name="magento",
        kind="events",
        title="Magento 2 orders with their line items (REST GET /V1/orders, JSON Lines, one order a line)",
        read=read_magento_orders,
        notes=(
            "Order state mapped: complete/processing → purchase, closed (refunded) → return, "
            "new/pending_payment/holded/payment_review → cart, canceled quarantined (cancelled_order). "
            "The admin grid's CSV export has no line items and is refused with a hint."
        ),
        required=("price",),
    ),
    DatasetFormat(
        name="google-merchant",
        kind="items",
        title="Google Merchant Center product feed (TSV or RSS 2.0 XML with g: attributes)",
        read=read_google_merchant,
    ),
)
