"""The analytical snapshot reads exactly what the store holds, typed, and never writes to it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pytest
import sqlalchemy as sa

from shelfwise.core.errors import StoreError
from shelfwise.data.schemas import Event, EventType
from shelfwise.store import open_store
from shelfwise.store.analytical import EVENT_SCHEMA, AnalyticalStore


def test_snapshot_holds_every_stored_event_with_declared_types(
    retail: AnalyticalStore, retail_url: str
) -> None:
    with open_store(retail_url) as store:
        stored = store.counts()
    counts = retail.counts()
    assert counts["purchase"] + counts["return"] == stored["events"]
    assert counts["users"] == stored["users"]
    # ``value`` is NULL on every Online Retail line: it must still be a float column, not int or null.
    assert retail.events_table.schema == EVENT_SCHEMA
    assert retail.events_table.column("value").null_count == retail.events_table.num_rows


def test_missing_store_is_a_store_error_and_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "nothing.db"
    with pytest.raises(StoreError, match="no store"):
        AnalyticalStore.open(f"sqlite:///{path}")
    assert not path.exists()


def test_injected_events_go_to_a_copy(rees46: AnalyticalStore) -> None:
    before = rees46.counts()["view"]
    row = {name: [None] for name in EVENT_SCHEMA.names}
    row.update(event_id=["x"], type=["view"], ts=[1], quantity=[1], item_id=["i"])
    copy = rees46.with_events(pa.table(row))
    assert copy.counts()["view"] == before + 1
    assert rees46.counts()["view"] == before


def test_cached_snapshot_is_reused_until_the_store_changes(rees46_url: str, tmp_path: Path) -> None:
    source = Path(sa.make_url(rees46_url).database or "")
    for suffix in ("", "-wal"):  # a private copy: the session's store stays as it was
        if Path(f"{source}{suffix}").exists():
            shutil.copy(f"{source}{suffix}", tmp_path / f"copy.db{suffix}")
    url = f"sqlite:///{tmp_path / 'copy.db'}"
    cache = tmp_path / "cache"
    first = AnalyticalStore.open(url, cache_dir=cache)
    again = AnalyticalStore.open(url, cache_dir=cache)
    assert len(list(cache.glob("analytics-*"))) == 1
    assert again.events_table.equals(first.events_table) and again.counts() == first.counts()
    with open_store(url) as store:
        store.append_event(Event(event_id="cache-probe", type=EventType.VIEW, ts=1569888000000, item_id="p1"))
    fresh = AnalyticalStore.open(url, cache_dir=cache)
    assert fresh.counts()["view"] == first.counts()["view"] + 1
    assert len(list(cache.glob("analytics-*"))) == 1  # the stale snapshot is gone
