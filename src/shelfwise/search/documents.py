"""What of an item is searchable, and reading product files for search evaluation.

An item becomes one document with five text fields (title, brand, category path, description,
attribute values); price, availability and popularity stay numbers for filters, facets and sorting.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Final

from shelfwise.core.errors import InputFileError
from shelfwise.data.normalize import category_path, clean_text
from shelfwise.data.schemas import Item

TEXT_FIELDS: Final = ("title", "brand", "category", "description", "attributes")
# Attribute keys that are bookkeeping, not words a shopper types.
_HIDDEN_ATTRIBUTES: Final = frozenset({"pid", "retail_price", "rating", "popularity", "sku", "gtin", "image"})
DESCRIPTION_CHARS: Final = 3000


def attributes_text(item: Item) -> str:
    parts = []
    for key, value in item.attributes.items():
        if key in _HIDDEN_ATTRIBUTES or value is None or isinstance(value, dict | list):
            continue
        parts.append(str(value))
    return " ".join(parts)


def document_fields(item: Item) -> dict[str, str]:
    """The text of each searchable field (the category path's separators become spaces)."""
    return {
        "title": item.title or "",
        "brand": item.brand or "",
        "category": (item.category or "").replace(" > ", " "),
        "description": (item.description or "")[:DESCRIPTION_CHARS],
        "attributes": attributes_text(item),
    }


def popularity(item: Item) -> float:
    """A popularity signal from the item's attributes (``popularity``, else ``rating``), 0 when unknown."""
    for key in ("popularity", "rating"):
        value = item.attributes.get(key)
        if value is None:
            continue
        try:
            return float(value)
        except (TypeError, ValueError):
            continue
    return 0.0


def _open(path: Path) -> IO[str]:
    if not path.exists():
        raise InputFileError(f"{path}: no such file")
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return path.open(encoding="utf-8", newline="")


def _item(row: dict[str, Any], line_no: int, path: Path) -> Item:
    raw_id = row.get("id", row.get("item_id"))
    if raw_id is None or not str(raw_id).strip():
        raise InputFileError(f"{path}:{line_no}: a product without an id", hint="columns: id,title,...")
    price: float | None = None
    raw_price = row.get("price")
    if raw_price not in (None, ""):
        try:
            price = float(str(raw_price).replace(",", ""))
        except ValueError:
            raise InputFileError(f"{path}:{line_no}: price {raw_price!r} is not a number") from None
    attributes = row.get("attributes") or {}
    if isinstance(attributes, str):
        try:
            attributes = json.loads(attributes) if attributes.strip() else {}
        except ValueError:
            attributes = {}
    available = row.get("available", True)
    if isinstance(available, str):
        available = available.strip().lower() not in ("0", "false", "no", "n", "out of stock")
    category = row.get("category")

    def text(name: str) -> str | None:
        value = row.get(name)
        return clean_text(str(value)) or None if value not in (None, "") else None

    return Item(
        item_id=str(raw_id).strip(),
        title=text("title"),
        description=text("description"),
        category=category_path(str(category)) if category else None,
        brand=text("brand"),
        price=price,
        attributes=dict(attributes) if isinstance(attributes, dict) else {},
        available=bool(available),
        source=path.name,
    )


def read_products(path: Path) -> list[Item]:
    """Products from CSV or JSON Lines (``.gz`` too) with ``id,title,description,category,brand,price``.

    ``item_id`` is accepted for ``id``; ``attributes`` (a JSON object) and ``available`` are optional.
    """
    items: list[Item] = []
    with _open(path) as handle:
        is_jsonl = ".jsonl" in path.name or ".json" in path.name
        if is_jsonl:
            for line_no, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError as exc:
                    raise InputFileError(f"{path}:{line_no}: not JSON ({exc})") from None
                if not isinstance(row, dict):
                    raise InputFileError(f"{path}:{line_no}: not a JSON object")
                items.append(_item(row, line_no, path))
        else:
            reader = csv.DictReader(handle)
            if not reader.fieldnames or not ({"id", "item_id"} & set(reader.fieldnames)):
                raise InputFileError(f"{path}: no id column", hint="expected id,title,description,...")
            for line_no, row in enumerate(reader, 2):
                items.append(_item(row, line_no, path))
    return items


def read_queries(path: Path) -> dict[str, str]:
    """``query_id<TAB>query`` lines (no header; a ``query_id`` header line is skipped)."""
    queries: dict[str, str] = {}
    with _open(path) as handle:
        for line_no, line in enumerate(handle, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            qid, sep, text = line.partition("\t")
            if not sep:
                raise InputFileError(f"{path}:{line_no}: expected query_id<TAB>query")
            if line_no == 1 and qid.strip().lower() in ("query_id", "qid", "id"):
                continue
            queries[qid.strip()] = text.split("\t")[0].strip()
    return queries


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """TREC qrels ``query_id 0 product_id grade`` → ``{query_id: {product_id: grade}}``."""
    qrels: dict[str, dict[str, int]] = {}
    with _open(path) as handle:
        for line_no, line in enumerate(handle, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 4:
                raise InputFileError(f"{path}:{line_no}: expected 'query_id 0 product_id grade'")
            try:
                grade = int(float(parts[3]))
            except ValueError:
                raise InputFileError(f"{path}:{line_no}: grade {parts[3]!r} is not a number") from None
            qrels.setdefault(parts[0], {})[parts[2]] = grade
    return qrels


def iter_text(items: list[Item]) -> Iterator[str]:
    """Title + brand + category: the short text embedded for semantic retrieval."""
    for item in items:
        yield embedding_text(item)


def embedding_text(item: Item) -> str:
    parts = [item.title or ""]
    if item.brand and item.brand.lower() not in (item.title or "").lower():
        parts.append(item.brand)
    if item.category:
        parts.append(item.category.split(" > ")[-1] if " > " in item.category else item.category)
    if not item.title and item.description:
        parts.append(item.description[:200])
    return " | ".join(p for p in parts if p)


def read_dataset(name: str, path: Path | None = None, *, limit: int | None = None) -> list[Item]:
    """Items of a named dataset format (``flipkart``, ``flipkart-1k``, ``csv-items``…) through the
    quality gate, as ``shelfwise ingest items`` would store them; rejected records are skipped."""
    from shelfwise.data.privacy import Pseudonymizer
    from shelfwise.data.quality import GateConfig, ItemGate
    from shelfwise.data.readers import get_format
    from shelfwise.data.readers.base import ReadOptions
    from shelfwise.data.readers.locate import find_dataset_file, find_repo_root

    fmt = get_format(name)
    # from the working directory's checkout, else the one this package was installed from
    found = path or find_dataset_file(fmt) or find_dataset_file(fmt, repo_root=find_repo_root(Path(__file__)))
    if found is None:
        raise InputFileError(f"no file for dataset {name!r}", hint="pass its path")
    gate = ItemGate(
        GateConfig(source=fmt.name, currency=fmt.currency), Pseudonymizer(b"catalogue-has-no-users!")
    )
    items: dict[str, Item] = {}
    for record in fmt.read(found, ReadOptions(limit=limit)):
        checked = gate.check(record)
        if isinstance(checked, Item):
            items[checked.item_id] = checked
    return list(items.values())
