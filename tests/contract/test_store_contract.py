"""One contract every store backend passes: SQLite (file, WAL) and PostgreSQL (the real server)."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from shelfwise.core.errors import BackupError
from shelfwise.core.settings import Settings
from shelfwise.data.readers import get_format
from shelfwise.data.schemas import Event, EventType, Item
from shelfwise.store import QuarantineRow, Store, open_store
from shelfwise.store.backup import backup, restore, table_fingerprints
from shelfwise.store.ingest import ingest_events
from shelfwise.store.tables import metadata

T0 = 1_300_000_000_000


def ev(
    n: int, user: str | None = "u1", item: str = "i1", kind: EventType = EventType.VIEW, **kw: object
) -> Event:
    return Event(
        event_id=f"e{n}", user_id=user, session_id="s1", item_id=item, type=kind, ts=T0 + n * 1000, **kw
    )  # type: ignore[arg-type]


def test_migrations_build_exactly_the_tables_the_code_uses(store: Store) -> None:
    engine = store.engine  # type: ignore[attr-defined]
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_append_is_idempotent_across_calls_and_within_a_batch(store: Store) -> None:
    batch = [ev(1), ev(2, item="i2"), ev(1)]
    assert store.append_events(batch) == 2
    assert store.append_events(batch) == 0
    assert store.append_event(ev(3)) is True and store.append_event(ev(3)) is False
    assert store.counts()["events"] == 3


def test_events_round_trip_with_every_field(store: Store) -> None:
    original = ev(
        5,
        kind=EventType.PURCHASE,
        quantity=3,
        price=2.55,
        currency="GBP",
        value=4.5,
        context={"country": "United Kingdom", "query": "红色 杯子"},
        source="online-retail",
    )
    store.append_events([original])
    (back,) = store.events_for_user("u1")
    assert back == original


def test_events_by_user_and_time_window(store: Store) -> None:
    store.append_events(
        [
            ev(i, user="u1" if i % 2 else "u2", kind=EventType.CART if i == 3 else EventType.VIEW)
            for i in range(1, 9)
        ]
    )
    u1 = store.events_for_user("u1")
    assert [e.event_id for e in u1] == ["e1", "e3", "e5", "e7"]  # time order
    window = store.events_for_user("u1", since=T0 + 3000, until=T0 + 7000)
    assert [e.event_id for e in window] == ["e3", "e5"]
    assert [e.event_id for e in store.events_for_user("u1", types=[EventType.CART])] == ["e3"]
    assert [e.event_id for e in store.iter_events(since=T0 + 7000)] == ["e7", "e8"]


def test_items_upsert_replaces_or_fills(store: Store) -> None:
    store.upsert_items(
        [Item(item_id="i1", title="Mug", price=3.0, currency="GBP", attributes={"colour": "red"})]
    )
    store.upsert_items([Item(item_id="i1", title="Red mug", available=False)])  # replace what is given
    item = store.get_items(["i1"])["i1"]
    assert (item.title, item.price, item.available, item.attributes) == (
        "Red mug",
        3.0,
        False,
        {"colour": "red"},
    )
    # inline facts carried by events only fill gaps; they never undo the catalogue
    store.append_events([ev(1)], items=[Item(item_id="i1", title="MUG", brand="Acme"), Item(item_id="i9")])
    item = store.get_items(["i1"])["i1"]
    assert (item.title, item.brand, item.available) == ("Red mug", "Acme", False)
    assert store.item_ids() == {"i1", "i9"}


def test_interactions_export_as_arrays(store: Store) -> None:
    store.append_events(
        [ev(1, "a", "x"), ev(2, "b", "y", EventType.PURCHASE), ev(3, "a", "y"), ev(4, None, "z")]
    )
    data = store.interactions()
    assert len(data) == 3  # the guest event has no user
    pairs = [(data.user_ids[u], data.item_ids[i]) for u, i in zip(data.users, data.items, strict=True)]
    assert pairs == [("a", "x"), ("b", "y"), ("a", "y")]
    assert [data.type_names[t] for t in data.types] == ["view", "purchase", "view"]
    assert len(store.interactions(types=[EventType.PURCHASE])) == 1
    store.refresh_users(["a", "b"], flags={"b": "120 actions in one minute"})
    assert store.suspected_bots() == 1
    assert len(store.interactions()) == 2  # flagged users are left out by default
    assert len(store.interactions(exclude_bots=False)) == 3


def test_users_are_recomputed_from_stored_events(store: Store) -> None:
    store.append_events([ev(1), ev(2), ev(3, user="u2")])
    store.refresh_users(["u1", "u2"])
    store.refresh_users(["u1"])  # idempotent
    user = store.get_user("u1")
    assert user is not None and (user["n_events"], user["first_seen"], user["last_seen"]) == (
        2,
        T0 + 1000,
        T0 + 2000,
    )
    assert store.delete_user("u1") == {"events": 2, "users": 1, "quarantine": 0}
    assert store.get_user("u1") is None and store.events_for_user("u1") == []


def test_an_erased_user_is_refused_by_every_write_and_the_store_keeps_one_id(store: Store) -> None:
    store.append_events([ev(1), ev(2, user="u2")])
    store.delete_user("u1")
    assert store.erased_among(["u1", "u2"]) == {"u1"} and store.erased_since(0) == ["u1"]
    # a replayed or retried write of the erased shopper stores nothing; the others' are kept
    assert store.append_events([ev(1), ev(3), ev(4, user="u2")]) == 1
    assert store.append_event_groups([[ev(5)], [ev(6, user="u2")]]) == [0, 1]
    named = QuarantineRow(
        "api", "event", 0, "price", "negative_price", "-1", '{"user_id": "u1"}', user_id="u1"
    )
    store.add_quarantine([named])
    assert store.events_for_user("u1") == [] and store.quarantine_summary()["total"] == 0
    assert store.store_id == store.store_id and len(store.store_id) == 32
    with open_store(store.url) as again:  # made once, kept in the store
        assert again.store_id == store.store_id


def test_quarantine_is_kept_once_and_summarised(store: Store) -> None:
    rows = [
        QuarantineRow("src", "event", 4, "price", "negative_price", "-1", '{"price": "-1"}'),
        QuarantineRow("src", "event", 9, None, "malformed_record", "3 fields", "a,b,c"),
    ]
    store.add_quarantine(rows)
    store.add_quarantine(rows)
    summary = store.quarantine_summary()
    assert summary["total"] == 2
    assert summary["by_reason"] == {"malformed_record": 1, "negative_price": 1}
    assert summary["by_field"] == {"(record)": 1, "price": 1}
    assert store.quarantined(reason="negative_price")[0]["line_no"] == 4


def test_ingest_of_real_data_is_identical_and_idempotent(
    store: Store, retail_slice: Path, settings: Settings
) -> None:
    fmt = get_format("online-retail")
    first = ingest_events(store, retail_slice, fmt, settings)
    assert first.records == 3000
    assert first.accepted + first.duplicates + first.quarantined == 3000
    assert first.accepted > 2800 and first.quarantined > 0
    again = ingest_events(store, retail_slice, fmt, settings)
    assert again.accepted == 0 and again.duplicates == first.accepted + first.duplicates
    counts = store.counts()
    assert counts["events"] == first.accepted
    assert counts["quarantine"] == first.quarantined
    assert [r["report"]["accepted"] for r in store.runs()] == [first.accepted, 0]


@pytest.mark.parametrize("target", ["sqlite", "postgres"])
def test_backup_then_restore_is_verified(
    store: Store,
    retail_slice: Path,
    settings: Settings,
    tmp_path: Path,
    target: str,
    request: pytest.FixtureRequest,
) -> None:
    ingest_events(store, retail_slice, get_format("online-retail"), settings)
    manifest = backup(store, tmp_path / "backup")
    assert manifest["tables"]["events"]["rows"] == store.counts()["events"] > 0
    target_url = (
        f"sqlite:///{tmp_path / 'restored.db'}" if target == "sqlite" else _second_pg_database(request)
    )
    with open_store(target_url) as fresh:
        result = restore(fresh, tmp_path / "backup")
        assert result["verified"]
        assert table_fingerprints(fresh) == table_fingerprints(store)
        assert fresh.counts() == store.counts()
        with pytest.raises(BackupError, match="not empty"):
            restore(fresh, tmp_path / "backup")
        # ids keep counting after restored rows
        fresh.add_quarantine([QuarantineRow("x", "event", 1, None, "malformed_record", "d", "new")])


def test_corrupt_backup_is_refused(store: Store, tmp_path: Path, sqlite_url: str) -> None:
    store.append_events([ev(1), ev(2)])
    backup(store, tmp_path / "b")
    with (tmp_path / "b" / "events.parquet").open("r+b") as fh:
        fh.seek(20)
        fh.write(b"\xff\xff\xff")
    with (
        open_store(f"sqlite:///{tmp_path / 'other.db'}") as fresh,
        pytest.raises(BackupError, match="corrupt"),
    ):
        restore(fresh, tmp_path / "b")
    with pytest.raises(BackupError, match="already holds"):
        backup(store, tmp_path / "b")


def _second_pg_database(request: pytest.FixtureRequest) -> str:
    """A second, empty PostgreSQL database for restores, dropped after the test."""
    import uuid

    import psycopg

    base = sa.make_url(request.getfixturevalue("pg_url"))
    name = f"{base.database}_r{uuid.uuid4().hex[:6]}"
    conninfo = f"host={base.host} port={base.port or 5432} dbname={base.database}"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    request.addfinalizer(drop)
    return base.set(database=name).render_as_string(hide_password=False)


def test_bulk_catalogue_reads_equal_get_items(store: Store) -> None:
    """The reads a 1M-item start uses (issue 19) give what ``get_items`` gives, on every backend."""
    import numpy as np

    from shelfwise.store import CatalogueColumns

    store.upsert_items(
        [
            Item(item_id="b2", title="Mug", description="big", category="kitchen", brand="Acme", price=3.0),
            Item(item_id="a1", title="Cup", available=False),
            Item(item_id="c3"),
        ]
    )
    items = sorted(store.get_items(store.item_ids()).values(), key=lambda it: it.item_id)
    assert store.item_count() == 3
    assert store.all_items() == items
    assert store.first_items(1) == [items[1]]  # the first available one in id order
    columns, reference = store.catalogue_columns(), CatalogueColumns.from_items(items)
    assert columns.item_ids == reference.item_ids == ["a1", "b2", "c3"]
    assert columns.title == reference.title and columns.brand == reference.brand
    assert np.array_equal(columns.price, reference.price, equal_nan=True)
    assert columns.available.tolist() == [False, True, True]
