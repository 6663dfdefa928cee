"""The catalogue read as columns (issue 19: a 1M-item start) gives what the per-item read gave:
``Dataset.from_store`` (``Store.catalogue_columns``) equals the dataset built from ``get_items``
objects, on a real SQLite store holding events, cold items (with ids before and after the ones the
events name), unavailable items and items without title, price, brand or category."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shelfwise.core.settings import Settings
from shelfwise.data.readers import get_format
from shelfwise.data.schemas import Item
from shelfwise.features.dataset import Dataset
from shelfwise.store import CatalogueColumns, open_store
from shelfwise.store.ingest import ingest_events
from tests.conftest import TEST_KEY

EXTRA = [
    Item(
        item_id="000-cold",
        title="Aardvark mug",
        description="A big mug",
        category="kitchen > mugs",
        brand="Zoo",
        price=3.5,
    ),
    Item(item_id="zzz-cold", title=None, description="only a description", price=None, available=False),
    Item(item_id="mmm-bare"),
    Item(
        item_id="85123A",
        title="WHITE HANGING HEART T-LIGHT HOLDER",
        description="  padded  ",
        category="home > lights",
        brand="",
        price=2.55,
        available=False,
    ),
]


@pytest.fixture
def store_url(tmp_path: Path, retail_slice: Path) -> str:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    settings = Settings(var_dir=tmp_path / "var", pseudonym_key=TEST_KEY)
    with open_store(url) as store:
        ingest_events(store, retail_slice, get_format("online-retail"), settings)
        store.upsert_items(EXTRA, replace=True)
    return url


def _reference(store: object) -> Dataset:
    """The loader before columns: one ``Item`` per catalogue item."""
    inter = store.interactions()  # type: ignore[attr-defined]
    return Dataset.from_interactions(inter, items=store.get_items(store.item_ids()))  # type: ignore[attr-defined]


def test_columnar_loader_equals_the_item_loader(store_url: str) -> None:
    with open_store(store_url) as store:
        new, old = Dataset.from_store(store), _reference(store)
        n_catalogue = store.item_count()
    assert new.n_items == old.n_items == n_catalogue > len(EXTRA)
    assert new.item_map.external.tolist() == old.item_map.external.tolist()
    a, b = new.item_attributes.arrays(), old.item_attributes.arrays()
    assert a.keys() == b.keys() and "item_text" in a
    for name in a:
        assert np.array_equal(a[name], b[name], equal_nan=a[name].dtype.kind == "f"), name
    for name in ("users", "items", "ts", "types", "weight"):
        assert np.array_equal(getattr(new, name), getattr(old, name)), name
    # the facts of the extra items made it through (not all defaults)
    at = new.item_map.index
    assert not new.item_attributes.available[at["zzz-cold"]]
    assert new.item_attributes.price[at["000-cold"]] == 3.5
    assert np.isnan(new.item_attributes.price[at["mmm-bare"]])
    assert new.item_attributes.text is not None and new.item_attributes.text[at["85123A"]].endswith("padded")


def test_bulk_reads_equal_the_per_item_read(store_url: str) -> None:
    with open_store(store_url) as store:
        items = sorted(store.get_items(store.item_ids()).values(), key=lambda it: it.item_id)
        assert store.all_items() == items
        assert store.first_items(7) == [it for it in items if it.available][:7]
        columns = store.catalogue_columns()
    reference = CatalogueColumns.from_items(items)
    assert columns.item_ids == reference.item_ids
    for name in ("title", "description", "category", "brand"):
        assert getattr(columns, name) == [v or None for v in getattr(reference, name)], name
    assert np.array_equal(columns.price, reference.price, equal_nan=True)
    assert np.array_equal(columns.available, reference.available)
