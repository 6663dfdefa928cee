"""Small slices of real data for the recommender and evaluation tests, built once per run.

- ``retail()``: the first invoice lines of the vendored UCI Online Retail file, read through the
  same quality gate as ingest, with a catalogue taken from the same lines: the price paid, and a
  category from the product title's last word (LANTERN, HOLDER, BAG…), so filters have real values.
- ``beauty()``: the first users of Amazon Beauty (research-only, read from ../shared/data; the
  test is skipped when that file is absent).
- ``retail_sequences_file()``: the retail slice written in the common sequence format
  (``user item item …``), for the CLI.
"""

from __future__ import annotations

import csv
import functools
import gzip
import io
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from shelfwise.features.dataset import Dataset
from tests.conftest import ONLINE_RETAIL, SHARED

BEAUTY = SHARED / "amazon_beauty" / "Beauty.txt"
RETAIL_LINES = 40_000
_TMP = Path(tempfile.mkdtemp(prefix="shelfwise-rec-tests-"))


@dataclass(frozen=True)
class _Item:
    category: str | None
    price: float | None
    brand: str | None = None
    available: bool = True


def _retail_head(lines: int) -> Path:
    path = _TMP / f"online_retail_{lines}.csv"
    if not path.exists():
        with gzip.open(ONLINE_RETAIL, "rb") as fh:
            path.write_bytes(b"".join(line for _, line in zip(range(lines + 1), fh, strict=False)))
    return path


@functools.cache
def retail(lines: int = RETAIL_LINES) -> Dataset:
    path = _retail_head(lines)
    ds = Dataset.from_file(path, "online-retail")
    catalogue: dict[str, _Item] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(io.StringIO(fh.read())):
            words = row["Description"].split()
            price = float(row["UnitPrice"])
            if row["StockCode"] not in catalogue and words and price > 0:
                catalogue[row["StockCode"]] = _Item(category=words[-1], price=price)
    return ds.with_items(catalogue)


@functools.cache
def retail_purchases(lines: int = RETAIL_LINES) -> Dataset:
    ds = retail(lines)
    return ds.select(ds.type_mask(["purchase"]))


@functools.cache
def beauty(users: int = 4000, top_items: int = 1500) -> Dataset:
    """The first ``users`` lines of Amazon Beauty, keeping only the ``top_items`` items most
    reviewed in them (users left with fewer than three items are dropped): dense enough for
    small models to learn, small enough for EASE to fit in a second."""
    if not BEAUTY.is_file():
        pytest.skip(f"{BEAUTY} is absent (research-only data, not vendored)")
    path = _TMP / f"beauty_{users}_{top_items}.txt"
    if not path.exists():
        with open(BEAUTY, encoding="utf-8") as fh:
            lines = [line.split() for _, line in zip(range(users), fh, strict=False)]
        counts: dict[str, int] = {}
        for tokens in lines:
            for item in tokens[1:]:
                counts[item] = counts.get(item, 0) + 1
        keep = set(sorted(counts, key=lambda i: (-counts[i], i))[:top_items])
        out = []
        for tokens in lines:
            items = [i for i in tokens[1:] if i in keep]
            if len(items) >= 3:
                out.append(" ".join([tokens[0], *items]))
        path.write_text("\n".join(out) + "\n")
    return Dataset.from_file(path, "sequences")


def retail_sequences_file(lines: int = RETAIL_LINES) -> Path:
    """The retail slice's purchases, one customer a line, in time order."""
    path = _TMP / f"retail_sequences_{lines}.txt"
    if not path.exists():
        ds = retail_purchases(lines)
        users = ds.user_map.external
        items = ds.item_map.external
        out = []
        for u, hist in enumerate(ds.histories()):
            if len(hist):
                out.append(" ".join([users[u], *items[hist].tolist()]))
        path.write_text("\n".join(out) + "\n")
    return path


def item_index(ds: Dataset, external: list[str]) -> np.ndarray:
    return ds.item_map.to_internal(external)
