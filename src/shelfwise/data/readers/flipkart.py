"""Flipkart product catalogues (PromptCloud crawl, 2016, CC BY-SA 4.0).

``flipkart`` reads the 20,000-product sample with 9 of the crawl's columns: title, brand and
prices only. ``flipkart-1k`` reads a 1,002-product subset with all 16 columns: it adds the
category tree (a list written as text, e.g. ``['footwear', 'womens footwear']``, which the
quality gate normalises), the description and the specifications, written
``ideal for: women, color: red, …`` and parsed here into attributes. Prices are INR.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from shelfwise.data.readers.base import DatasetFormat, Draft, Problem, ReadOptions, Record, iter_csv

COLUMNS = (
    "uniq_id",
    "product_name",
    "pid",
    "retail_price",
    "discounted_price",
    "is_FK_Advantage_product",
    "product_rating",
    "overall_rating",
    "brand",
)
COLUMNS_1K = (
    "uniq_id",
    "crawl_timestamp",
    "product_url",
    "product_name",
    "product_category_tree",
    "pid",
    "retail_price",
    "discounted_price",
    "image",
    "is_FK_Advantage_product",
    "description",
    "product_rating",
    "overall_rating",
    "brand",
    "product_specifications",
    "formatted_specifications",
)
NO_RATING = "no rating available"
LICENCE = "CC BY-SA 4.0 (PromptCloud, Flipkart products, Kaggle)"
_SPEC = re.compile(r"([^:,]{1,80}?):\s*(.*)", re.DOTALL)


def _or_none(text: str) -> str | None:
    text = text.strip()
    return text or None


def _rating(text: str) -> str | None:
    """A product rating, or None for "No rating available" and the 1k subset's 0.0 (Flipkart rates 1-5)."""
    text = text.strip()
    if not text or text.lower() == NO_RATING:
        return None
    try:
        if float(text) == 0:
            return None
    except ValueError:
        pass
    return text


def parse_specifications(text: str) -> dict[str, str]:
    """``"ideal for: women, color: red, white"`` → ``{"ideal for": "women", "color": "red, white"}``.

    Parts are split on ", "; a part without ``key:`` continues the previous value. Text before
    the first key is dropped. Later keys do not overwrite earlier ones.
    """
    specs: dict[str, str] = {}
    key: str | None = None
    for part in text.split(", "):
        match = _SPEC.fullmatch(part.strip())
        if match and match.group(1).strip():
            key = match.group(1).strip()
            if key in specs:
                key = None  # a repeated key: keep the first, drop what follows
                continue
            specs[key] = match.group(2).strip()
        elif key is not None and part.strip():
            specs[key] = f"{specs[key]}, {part.strip()}" if specs[key] else part.strip()
    return specs


def _common(row: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    retail = row["retail_price"].strip()
    price = row["discounted_price"].strip() or retail
    attributes: dict[str, Any] = {"pid": row["pid"].strip()}
    if retail:
        attributes["retail_price"] = retail
    rating = _rating(row["product_rating"])
    if rating is not None:
        attributes["rating"] = rating
    fields: dict[str, Any] = {
        "item_id": row["uniq_id"].strip(),
        "title": _or_none(row["product_name"]),
        "brand": _or_none(row["brand"]),
        "price": price or None,
        "currency": "INR",
    }
    return fields, attributes


def read(path: Path, opts: ReadOptions) -> Iterator[Record]:
    for rec in iter_csv(path, opts, required=COLUMNS, what="Flipkart products CSV"):
        if isinstance(rec, Problem):
            yield rec
            continue
        line_no, raw, row = rec
        fields, attributes = _common(row)
        fields["attributes"] = attributes
        yield Draft(line_no, raw, fields)


def read_1k(path: Path, opts: ReadOptions) -> Iterator[Record]:
    for rec in iter_csv(path, opts, required=COLUMNS_1K, what="Flipkart products CSV (16 columns)"):
        if isinstance(rec, Problem):
            yield rec
            continue
        line_no, raw, row = rec
        fields, attributes = _common(row)
        specs = parse_specifications(row["formatted_specifications"])
        fields["description"] = _or_none(row["description"])
        fields["category"] = _or_none(row["product_category_tree"])
        fields["attributes"] = {**specs, **attributes}
        yield Draft(line_no, raw, fields)


FORMAT = DatasetFormat(
    name="flipkart",
    kind="items",
    title="Flipkart products: 20,000 products with title, brand and prices (no category or description)",
    read=read,
    currency="INR",
    licence=LICENCE,
    redistributable=True,
    vendored="data/flipkart/flipkart_com-ecommerce_sample.csv.gz",
    shared="flipkart_products/flipkart_com-ecommerce_sample.csv.gz",
    notes="Share-alike: data derived from this file carries CC BY-SA 4.0.",
)

FORMAT_1K = DatasetFormat(
    name="flipkart-1k",
    kind="items",
    title="Flipkart products, 1,002 with category tree, description and specifications",
    read=read_1k,
    currency="INR",
    licence=LICENCE,
    redistributable=True,
    vendored="data/flipkart_1k/products.csv",
    shared="flipkart_1k/products.csv",
    notes="Text lower-cased by the subset's author. Share-alike: derived data carries CC BY-SA 4.0.",
)
FORMATS = (FORMAT, FORMAT_1K)
