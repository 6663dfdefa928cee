"""DuckDB over the store, for analytical scans (funnels, RFM, demand series, activity shapes).

Why not DuckDB's ``sqlite``/``postgres`` extensions: DuckDB downloads them on first use, and nothing
here may download at run time (a fresh install, CI and most shops' servers have no route to
DuckDB's extension site). Instead the store's tables are read once, column-typed, into Arrow
through ADBC (``adbc-driver-sqlite`` / ``adbc-driver-postgresql``: plain PyPI wheels, reading
straight into Arrow without Python objects per row, ~0.5 s for Online Retail's 530k events), and
DuckDB queries those Arrow tables in-process, zero-copy. A snapshot is therefore consistent: every
query of one ``AnalyticalStore`` sees the same data, whatever ingest does meanwhile.

The engines (``shelfwise.analytics``) never write SQL: they call the named queries below and work
on the Arrow tables they return (as Polars frames).

>>> with AnalyticalStore.open("sqlite:///var/shelfwise.db") as db:   # doctest: +SKIP
...     db.funnel_counts(by="category")
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import sqlalchemy as sa

from shelfwise.core.clock import now_ms
from shelfwise.core.errors import StoreError
from shelfwise.store.erasure import CLOCK_SLACK_MS, derived_lock

FunnelDimension = Literal["category", "brand", "day", "total"]
DemandLevel = Literal["item", "category"]
SalesDimension = Literal["month", "country", "category"]
Frequency = Literal["day", "week"]
ProgressFn = Callable[[str], None]

# Column types of what is loaded: ADBC's SQLite driver infers a type from the first rows, so an
# all-NULL column (``value`` in most datasets) would otherwise come back as int64 or null.
# Only what analytics reads is loaded, to keep the snapshot fast: ``event_id`` only where there is
# no session id (it then stands in for one), and of the JSON ``context`` only the device id.
EVENT_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("user_id", pa.string()),
        ("session_id", pa.string()),
        ("item_id", pa.string()),
        ("type", pa.string()),
        ("ts", pa.int64()),
        ("quantity", pa.int64()),
        ("price", pa.float64()),
        ("value", pa.float64()),
        ("device", pa.string()),
        ("country", pa.string()),
    ]
)
_EVENT_COLUMNS = {
    "event_id": "CASE WHEN session_id IS NULL THEN event_id END",
    "sqlite": "CASE WHEN instr(context, '\"device') > 0 THEN CAST(coalesce(json_extract(context, "
    "'$.device_id'), json_extract(context, '$.device')) AS TEXT) END",
    "postgresql": "CASE WHEN position('\"device' in context) > 0 THEN coalesce(context::json->>'device_id', "
    "context::json->>'device') END",
}
# the shopper's country, where the event's context names one (Online Retail's invoices do)
_COUNTRY_COLUMN = {
    "sqlite": "CASE WHEN instr(context, '\"country') > 0 "
    "THEN CAST(json_extract(context, '$.country') AS TEXT) END",
    "postgresql": "CASE WHEN position('\"country' in context) > 0 THEN context::json->>'country' END",
}
ITEM_SCHEMA = pa.schema(
    [
        ("item_id", pa.string()),
        ("title", pa.string()),
        ("category", pa.string()),
        ("brand", pa.string()),
        ("price", pa.float64()),
    ]
)
USER_SCHEMA = pa.schema([("user_id", pa.string()), ("suspected_bot", pa.bool_())])

# An item's category: the top level of its path; for a catalogue without categories (Online
# Retail) the last word of its title, which names the product type (MUG, BAG, HOLDER…).
_CATEGORY = (
    "coalesce(split_part(category, ' > ', 1), "
    "nullif(regexp_extract(upper(title), '([A-Z][A-Z\\-]+)\\s*$', 1), ''), '(none)')"
)


def _dbapi_connect(url: str) -> Any:
    parsed = sa.make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        import adbc_driver_sqlite.dbapi as sqlite_dbapi

        if not parsed.database or parsed.database == ":memory:":
            raise StoreError("analytics needs a SQLite file, not an in-memory store")
        if not Path(parsed.database).is_file():
            raise StoreError(
                f"no store at {parsed.database}", hint="ingest events first (`shelfwise ingest events …`)"
            )
        return sqlite_dbapi.connect(parsed.database)
    if backend == "postgresql":
        import adbc_driver_postgresql.dbapi as pg_dbapi

        uri = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
        return pg_dbapi.connect(uri)
    raise StoreError(f"no analytical reader for {backend!r} stores", hint="use SQLite or PostgreSQL")


def _cache_path(url: str, cache_dir: Path | None) -> Path | None:
    """Where the snapshot of this exact state of a SQLite store is cached (None: do not cache)."""
    if cache_dir is None:
        return None
    path = sqlite_path(url)
    if path is None:
        return None
    db = path.resolve()
    parts = [str(db), ",".join(EVENT_SCHEMA.names)]  # a snapshot of other columns is not this one
    for path in (db, db.with_name(db.name + "-wal")):
        if path.exists():
            stat = path.stat()
            parts.append(f"{stat.st_size}:{stat.st_mtime_ns}")
    key = hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]
    return cache_dir / f"analytics-{key}"


def _write_cache(path: Path, tables: dict[str, pa.Table]) -> None:
    import pyarrow.ipc as ipc

    for stale in path.parent.glob("analytics-*"):  # one snapshot per store state is enough
        if stale != path and stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        with ipc.new_file(tmp / f"{name}.arrow", table.schema) as writer:
            writer.write_table(table)
    if not path.exists():
        tmp.rename(path)  # whole or not at all: a reader never sees half a snapshot
    else:
        shutil.rmtree(tmp, ignore_errors=True)


def _read_ipc(path: Path) -> pa.Table:
    import pyarrow.ipc as ipc

    with pa.memory_map(str(path)) as source:
        return ipc.open_file(source).read_all()


def sqlite_path(url: str) -> Path | None:
    """The file behind a ``sqlite:///PATH`` URL (None for other stores and in-memory SQLite)."""
    try:
        parsed = sa.make_url(url)
    except Exception:
        return None
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def shown_url(url: str) -> str:
    """``url`` fit for a message: never its password."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(the store URL)"


def _has_table(conn: Any, backend: str, name: str) -> bool:
    """Whether the store has table ``name`` (a store last migrated by an older shelfwise may not)."""
    query = (
        f"SELECT count(*) AS n FROM sqlite_master WHERE type = 'table' AND name = '{name}'"
        if backend == "sqlite"
        else f"SELECT count(*) AS n FROM information_schema.tables WHERE table_name = '{name}'"
    )
    cur = conn.cursor()
    try:
        cur.execute(query)
        return int(cur.fetchone()[0]) > 0
    finally:
        cur.close()


def _events_query(url: str, *, consent: bool = False) -> str:
    """The events a snapshot holds. With ``consent``, shoppers who opted out of analytics are left
    out, so no funnel, segment, report or private release counts them."""
    backend = sa.make_url(url).get_backend_name()
    columns = []
    for name in EVENT_SCHEMA.names:
        if name == "event_id":
            columns.append(f"{_EVENT_COLUMNS['event_id']} AS event_id")
        elif name == "device":
            columns.append(f"{_EVENT_COLUMNS[backend]} AS device")
        elif name == "country":
            columns.append(f"{_COUNTRY_COLUMN[backend]} AS country")
        else:
            columns.append(name)
    opted_out = (
        " WHERE user_id IS NULL OR user_id NOT IN (SELECT user_id FROM consent WHERE no_analytics)"
        if consent
        else ""
    )
    return f"SELECT {', '.join(columns)} FROM events{opted_out}"


def _read(conn: Any, query: str, schema: pa.Schema) -> pa.Table:
    cur = conn.cursor()
    try:
        if "sqlite" in type(conn).__module__:
            # The SQLite driver infers each column's type from its first batch of rows and fails on a
            # later row of another type (a column NULL for the first 64k rows, text after): one
            # batch for the whole result makes it infer from every row.
            cur.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": "1000000000"})
        cur.execute(query)
        table = cur.fetch_arrow_table()
    finally:
        cur.close()
    if table.num_rows == 0:
        return schema.empty_table()
    return pa.Table.from_arrays(
        [table.column(f.name).cast(f.type) for f in schema], schema=schema
    ).combine_chunks()


def _erased_since(conn: Any, since_ms: int) -> list[str]:
    """Pseudonyms tombstoned at or after ``since_ms`` (none in a store from before tombstones)."""
    cur = conn.cursor()
    try:
        cur.execute(f"SELECT user_id FROM erased_users WHERE erased_at >= {int(since_ms)}")
        return [str(u) for u in cur.fetch_arrow_table().column(0).to_pylist()]
    except Exception as exc:
        if "erased_users" not in str(exc):
            raise
        return []
    finally:
        cur.close()


def erased_since(url: str, since_ms: int) -> list[str]:
    """``Store.erased_since`` read through ADBC, for processes that read the store only this way
    (one process must not load two SQLite libraries: see ``AnalyticalStore.latest_snapshot``)."""
    conn = _dbapi_connect(url)
    try:
        return _erased_since(conn, since_ms)
    finally:
        conn.close()


def _without(table: pa.Table, user_ids: list[str]) -> pa.Table:
    import pyarrow.compute as pc

    keep = pc.invert(pc.fill_null(pc.is_in(table.column("user_id"), pa.array(user_ids, pa.string())), False))
    return table.filter(keep)


# what a funnel groups by (category: the top level of the path), as SQL over ``events``/``items``;
# the funnel, its per-session rows for private releases and the public key domain all use these
_FUNNEL_KEY: dict[str, str] = {
    "category": "coalesce(split_part(category, ' > ', 1), '(none)')",
    "brand": "coalesce(brand, '(none)')",
    "day": "CAST(day AS VARCHAR)",
    "total": "'all'",
}
_NOT_BOTS = "AND user_id NOT IN (SELECT user_id FROM users WHERE suspected_bot)"


class AnalyticalStore:
    """A read-only, in-memory snapshot of a store's events, items and users, queried with DuckDB."""

    def __init__(self, events: pa.Table, items: pa.Table, users: pa.Table, *, url: str = "") -> None:
        import duckdb

        self.url = url
        self.events_table = events
        self.items_table = items
        self.users_table = users
        self.load_seconds = 0.0
        self.current = True  # False: a cached snapshot older than the store's present state
        self._con = duckdb.connect(":memory:")
        self._con.execute("SET threads TO 2")
        self._con.register("events_raw", events)
        self._con.register("items", items)
        self._con.register("users", users)
        # Every query reads events with their item's category and brand; one view says it once.
        self._con.execute(
            """
            CREATE VIEW events AS
            SELECT e.*, i.title, i.category, i.brand,
                   epoch_ms(e.ts) AS event_time,
                   CAST(epoch_ms(e.ts) AS DATE) AS day,
                   e.quantity * coalesce(e.price, i.price, 0) AS amount
            FROM events_raw e LEFT JOIN items i USING (item_id)
            """
        )

    @classmethod
    def open(
        cls, url: str, *, progress: ProgressFn | None = None, cache_dir: Path | None = None
    ) -> AnalyticalStore:
        """Snapshot the store at ``url`` (``sqlite:///path`` or ``postgresql://…``).

        With ``cache_dir``, a SQLite store's snapshot is kept there as Arrow IPC files and reused
        (memory-mapped, in milliseconds) while the database file and its WAL are unchanged (same
        size and modification time); any write to the store makes the next open read it afresh.
        """
        started = time.perf_counter()
        cached = _cache_path(url, cache_dir)
        if cached is not None and (cached / "events.arrow").is_file():
            tables = [_read_ipc(cached / f"{name}.arrow") for name in ("events", "items", "users")]
            store = cls(*tables, url=url)
            store.load_seconds = time.perf_counter() - started
            return store
        try:
            conn = _dbapi_connect(url)
        except StoreError:
            raise
        except Exception as exc:  # a driver's own error: the file or server is not there
            raise StoreError(
                f"cannot read the store at {shown_url(url)}: {str(exc).splitlines()[0]}"
            ) from None
        read_from = now_ms()
        try:
            if progress:
                progress("reading events")
            backend = sa.make_url(url).get_backend_name()
            consent = _has_table(conn, backend, "consent")
            events = _read(conn, _events_query(url, consent=consent), EVENT_SCHEMA)
            if progress:
                progress("reading items and users")
            items = _read(conn, f"SELECT {', '.join(ITEM_SCHEMA.names)} FROM items", ITEM_SCHEMA)
            users = _read(conn, f"SELECT {', '.join(USER_SCHEMA.names)} FROM users", USER_SCHEMA)
        except Exception as exc:
            message = str(exc).splitlines()[0]
            raise StoreError(
                f"cannot read the store at {shown_url(url)}: {message}",
                hint="ingest events first (`shelfwise ingest events …`)"
                if "no such table" in message or "does not exist" in message
                else None,
            ) from None
        finally:
            conn.close()  # (an open SQLite connection has a WAL file: the cache key waits for this)
        # Shoppers erased while this read ran are taken out before the snapshot is kept or used,
        # under the lock an erasure holds while it removes snapshots: the erasure's tombstone is
        # seen here, or the snapshot written here is there for the erasure to remove.
        with derived_lock(cache_dir) if cache_dir is not None else contextlib.nullcontext():
            erased = erased_since(url, read_from - CLOCK_SLACK_MS)
            if erased:
                events, users = _without(events, erased), _without(users, erased)
            if cached is not None and cached == _cache_path(url, cache_dir):  # unchanged while read
                _write_cache(cached, {"events": events, "items": items, "users": users})
        store = cls(events, items, users, url=url)
        store.load_seconds = time.perf_counter() - started
        return store

    @classmethod
    def latest_snapshot(cls, url: str, cache_dir: Path) -> AnalyticalStore | None:
        """The newest cached snapshot of the SQLite store at ``url`` (None if there is none), read
        from its Arrow files alone: no SQLite library is loaded. A server that writes to the store
        through Python's ``sqlite3`` must not also open the file through ADBC's own SQLite in the same
        process (two SQLite libraries in one process break each other's POSIX locks), so it asks a
        child process (``shelfwise analytics …``) to refresh the snapshot and reads it with this."""
        started = time.perf_counter()
        fresh = _cache_path(url, cache_dir)
        if fresh is None:
            return None
        snapshots = [p for p in cache_dir.glob("analytics-*") if (p / "events.arrow").is_file()]
        if not snapshots:
            return None
        newest = max(snapshots, key=lambda p: p.stat().st_mtime_ns)
        tables = [_read_ipc(newest / f"{name}.arrow") for name in ("events", "items", "users")]
        store = cls(*tables, url=url)
        store.load_seconds = time.perf_counter() - started
        store.current = newest == fresh
        return store

    def with_events(self, extra: pa.Table) -> AnalyticalStore:
        """A new snapshot with ``extra`` events (same columns as ``EVENT_SCHEMA``) appended; used to
        inject synthetic anomalies without touching the stored data."""
        extra = pa.Table.from_arrays(
            [extra.column(f.name).cast(f.type) for f in EVENT_SCHEMA], schema=EVENT_SCHEMA
        )
        return AnalyticalStore(
            pa.concat_tables([self.events_table, extra]).combine_chunks(),
            self.items_table,
            self.users_table,
            url=self.url,
        )

    def with_items(self, extra: pa.Table) -> AnalyticalStore:
        """A new snapshot with ``extra`` catalogue rows appended (those whose id is new)."""
        extra = pa.Table.from_arrays(
            [extra.column(f.name).cast(f.type) for f in ITEM_SCHEMA], schema=ITEM_SCHEMA
        )
        return AnalyticalStore(
            self.events_table,
            pa.concat_tables([self.items_table, extra]).combine_chunks(),
            self.users_table,
            url=self.url,
        )

    # --- plumbing ---------------------------------------------------------------------------------
    def _query(self, sql: str, params: list[Any] | None = None) -> pa.Table:
        return self._con.sql(sql, params=params or None).to_arrow_table()

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> AnalyticalStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- named queries ----------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """Events by type, plus users and items."""
        rows = self._query("SELECT type, count(*) FROM events_raw GROUP BY type").to_pylist()
        out = {str(r["type"]): int(r["count_star()"]) for r in rows}
        out["users"] = self.users_table.num_rows
        out["items"] = self.items_table.num_rows
        return out

    def time_range(self) -> tuple[int, int] | None:
        """First and last event time (ms), or None for an empty store."""
        row = self._query("SELECT min(ts) AS lo, max(ts) AS hi FROM events_raw").to_pylist()[0]
        if row["lo"] is None:
            return None
        return int(row["lo"]), int(row["hi"])

    def funnel_counts(
        self,
        *,
        by: FunnelDimension = "total",
        top: int | None = 50,
        exclude_bots: bool = True,
        closed: bool = True,
    ) -> pa.Table:
        """Distinct sessions (a user's events without a session count as one session per user and
        day) that viewed, carted and bought, per ``by`` (the top ``top`` groups by views + purchases;
        ``day`` groups are all kept, in date order). Category is the top level of the path.

        ``closed``: each step counts only sessions that also took the steps before it (carts =
        sessions that viewed and carted), so rates stay within 0–1; open counts each step alone."""
        key = _FUNNEL_KEY[by]
        bots = _NOT_BOTS if exclude_bots else ""
        limit = f"LIMIT {int(top)}" if top and by != "day" else ""
        order = "key" if by == "day" else "views + purchases DESC, key"
        return self._query(
            f"""
            WITH s AS (
                SELECT {key} AS key, type,
                       coalesce(session_id, user_id || ':' || CAST(day AS VARCHAR), event_id) AS sess
                FROM events
                WHERE type IN ('view', 'cart', 'purchase') {bots}
            )
            , f AS (
                SELECT key, sess, bool_or(type = 'view') AS v, bool_or(type = 'cart') AS c,
                       bool_or(type = 'purchase') AS p
                FROM s GROUP BY key, sess
            )
            SELECT key,
                   count(*) FILTER (WHERE v) AS views,
                   count(*) FILTER (WHERE {"v AND c" if closed else "c"}) AS carts,
                   count(*) FILTER (WHERE {"v AND c AND p" if closed else "p"}) AS purchases
            FROM f GROUP BY key ORDER BY {order} {limit}
            """
        )

    def funnel_sessions(
        self, *, by: FunnelDimension = "total", exclude_bots: bool = True, closed: bool = True
    ) -> pa.Table:
        """One row per (group, session) of ``funnel_counts``, with its ``owner`` (the shopper, or
        the session itself for a guest) and whether it viewed (``v``), carted (``c``) and bought
        (``p``): what a differentially private funnel bounds per shopper before counting."""
        key = _FUNNEL_KEY[by]
        bots = _NOT_BOTS if exclude_bots else ""
        return self._query(
            f"""
            WITH s AS (
                SELECT {key} AS key, type,
                       coalesce(session_id, user_id || ':' || CAST(day AS VARCHAR), event_id) AS sess,
                       coalesce(user_id, session_id, event_id) AS owner
                FROM events
                WHERE type IN ('view', 'cart', 'purchase') {bots}
            )
            SELECT key, any_value(owner) AS owner, sess,
                   bool_or(type = 'view') AS v,
                   {"bool_or(type = 'view') AND " if closed else ""}bool_or(type = 'cart') AS c,
                   {"bool_or(type = 'view') AND bool_or(type = 'cart') AND " if closed else ""}
                   bool_or(type = 'purchase') AS p
            FROM s GROUP BY key, sess
            """
        )

    def catalogue_keys(self, by: str) -> list[str]:
        """Every ``category`` (as ``user_item_events`` names it), ``funnel`` category or ``brand`` of
        the catalogue: the public domain a private release reports on, whatever the events hold."""
        key = {
            "category": _CATEGORY,
            "funnel_category": _FUNNEL_KEY["category"],
            "brand": _FUNNEL_KEY["brand"],
        }[by]
        rows = self._query(f"SELECT DISTINCT {key} AS key FROM items ORDER BY 1")
        return [str(k) for k in rows.column("key").to_pylist()]

    def user_item_events(self, *, types: list[str]) -> pa.Table:
        """``owner`` (the shopper, or the session/event for a guest), ``item_id``, ``ts`` and the
        item's top-level ``category`` of events of these types: the rows item-level differentially
        private counts bound per shopper."""
        return self._query(
            f"""
            SELECT coalesce(user_id, session_id, event_id) AS owner, item_id, ts,
                   {_CATEGORY} AS category
            FROM events WHERE item_id IS NOT NULL AND type IN (SELECT unnest(?))
            """,
            [types],
        )

    def order_lines(self, *, since: int | None = None, until: int | None = None) -> pa.Table:
        """Purchase and return lines of known customers (guests excluded), with item facts."""
        where = ["type IN ('purchase', 'return')", "user_id IS NOT NULL"]
        params = _time_window(where, since, until)
        return self._query(
            f"""
            SELECT user_id, coalesce(session_id, event_id) AS order_id, item_id, type, ts, event_time,
                   quantity, amount, title, category, brand
            FROM events WHERE {" AND ".join(where)} ORDER BY ts
            """,
            params,
        )

    def orders(self, *, since: int | None = None, until: int | None = None) -> pa.Table:
        """One row per purchase order (a session with purchases; an invoice in Online Retail) of a
        known customer: when, how many lines and units, and its value."""
        where = ["type = 'purchase'", "user_id IS NOT NULL"]
        params = _time_window(where, since, until)
        return self._query(
            f"""
            SELECT user_id, coalesce(session_id, event_id) AS order_id,
                   min(ts) AS ts, min(event_time) AS event_time, count(*) AS lines,
                   CAST(sum(quantity) AS BIGINT) AS units, CAST(sum(amount) AS DOUBLE) AS value
            FROM events WHERE {" AND ".join(where)}
            GROUP BY user_id, order_id ORDER BY ts
            """,
            params,
        )

    def customer_totals(self, *, until: int | None = None) -> pa.Table:
        """Per known customer (orders before ``until``): first and last order time, orders, gross
        purchase value and the value of their returns."""
        where = "user_id IS NOT NULL" + (" AND ts < ?" if until is not None else "")
        params = [until] if until is not None else None
        return self._query(
            f"""
            WITH o AS (
                SELECT user_id, coalesce(session_id, event_id) AS order_id,
                       min(ts) AS ts, sum(amount) AS value
                FROM events WHERE type = 'purchase' AND {where} GROUP BY 1, 2
            ), r AS (
                SELECT user_id, sum(amount) AS returned
                FROM events WHERE type = 'return' AND {where} GROUP BY 1
            )
            SELECT user_id, min(ts) AS first_ts, max(ts) AS last_ts, count(*) AS frequency,
                   CAST(sum(value) AS DOUBLE) AS gross,
                   CAST(coalesce(any_value(r.returned), 0) AS DOUBLE) AS returned
            FROM o LEFT JOIN r USING (user_id) GROUP BY user_id ORDER BY user_id
            """,
            params * 2 if params else None,
        )

    def demand_series(
        self, *, level: DemandLevel = "item", freq: Frequency = "day", keys: list[str] | None = None
    ) -> pa.Table:
        """Units bought per ``level`` key and period (``period`` is the day or the Monday of the
        week, UTC), guests included, returns not netted. For a catalogue without categories
        (Online Retail) the category is the title's last word: the product type (MUG, BAG…)."""
        key = {
            "item": "item_id",
            "category": _CATEGORY,
        }[level]
        period = "day" if freq == "day" else "CAST(date_trunc('week', day) AS DATE)"
        sql = f"""
            SELECT * FROM (
                SELECT {key} AS key, {period} AS period, CAST(sum(quantity) AS BIGINT) AS units
                FROM events WHERE type = 'purchase' GROUP BY 1, 2
            ) {"WHERE key IN (SELECT unnest(?))" if keys is not None else ""}
            ORDER BY key, period
        """
        return self._query(sql, [keys] if keys is not None else None)

    def sales_by(self, by: SalesDimension, *, top: int | None = None) -> pa.Table:
        """Purchases per month, country or category (guests included, returns not netted): revenue,
        orders (invoices: sessions with a purchase), order lines, units and known customers."""
        key = {
            "month": "strftime(day, '%Y-%m')",
            "country": "coalesce(country, '(unknown)')",
            "category": _CATEGORY,
        }[by]
        order = "key" if by == "month" else "revenue DESC, key"
        return self._query(
            f"""
            SELECT {key} AS key, CAST(sum(amount) AS DOUBLE) AS revenue,
                   count(DISTINCT coalesce(session_id, event_id)) AS orders, count(*) AS lines,
                   CAST(sum(quantity) AS BIGINT) AS units, count(DISTINCT user_id) AS customers
            FROM events WHERE type = 'purchase' GROUP BY 1 ORDER BY {order}
            {f"LIMIT {int(top)}" if top else ""}
            """
        )

    def top_keys(self, *, level: DemandLevel = "item", n: int = 100) -> list[str]:
        """The ``n`` best sellers: items (or categories) bought on the most order lines. Lines, not
        units: one cancelled bulk order of 80,000 units must not make an item a best seller."""
        key = {
            "item": "item_id",
            "category": _CATEGORY,
        }[level]
        rows = self._query(
            f"SELECT {key} AS key, count(*) AS n FROM events WHERE type = 'purchase' "
            f"GROUP BY 1 ORDER BY n DESC, key LIMIT {int(n)}"
        )
        return [str(k) for k in rows.column("key").to_pylist()]

    def user_activity(self) -> pa.Table:
        """One row per known user: how much, how fast and in what shape they act. An *action* is a
        distinct second with events (an invoice's 600 lines written at one instant are one action);
        ``max_per_minute`` is the most actions in one clock minute, and session shape is actions
        per session and their span."""
        return self._query(
            """
            WITH acts AS (
                SELECT DISTINCT user_id, session_id, ts // 1000 AS sec
                FROM events_raw WHERE user_id IS NOT NULL
            ), per_min AS (
                SELECT user_id, max(n) AS max_per_minute
                FROM (SELECT user_id, sec // 60 AS minute, count(*) AS n FROM acts GROUP BY 1, 2)
                GROUP BY 1
            ), per_session AS (
                SELECT user_id, avg(n) AS actions_per_session, avg(span) AS session_seconds,
                       sum(n) AS actions, count(*) AS sessions
                FROM (SELECT user_id, session_id, count(*) AS n, max(sec) - min(sec) AS span
                      FROM acts GROUP BY 1, 2)
                GROUP BY 1
            )
            SELECT e.user_id,
                   count(*) AS events,
                   count(DISTINCT e.item_id) AS items,
                   count(*) FILTER (WHERE type = 'view') AS views,
                   count(*) FILTER (WHERE type = 'cart') AS carts,
                   count(*) FILTER (WHERE type = 'purchase') AS purchases,
                   count(*) FILTER (WHERE type = 'return') AS returns,
                   min(ts) AS first_ts, max(ts) AS last_ts,
                   any_value(m.max_per_minute) AS max_per_minute,
                   any_value(s.actions) AS actions,
                   any_value(s.sessions) AS sessions,
                   any_value(s.actions_per_session) AS actions_per_session,
                   any_value(s.session_seconds) AS session_seconds
            FROM events_raw e JOIN per_min m USING (user_id) JOIN per_session s USING (user_id)
            WHERE e.user_id IS NOT NULL
            GROUP BY e.user_id
            """
        )

    def rating_events(self) -> pa.Table:
        """``rate`` events of known users with the rater's first event time and event count (how
        new and how active the account is), in time order."""
        return self._query(
            """
            SELECT e.user_id, e.item_id, e.ts, e.value, u.first_ts, u.n_events
            FROM events_raw e
            JOIN (SELECT user_id, min(ts) AS first_ts, count(*) AS n_events
                  FROM events_raw WHERE user_id IS NOT NULL GROUP BY 1) u USING (user_id)
            WHERE e.type = 'rate' AND e.item_id IS NOT NULL
            ORDER BY e.ts
            """
        )

    def session_events(self, *, types: list[str] | None = None) -> pa.Table:
        """Events that carry a session id (user, session, type, ts, item, device), in time order."""
        where = "session_id IS NOT NULL"
        params: list[Any] = []
        if types is not None:
            where += " AND type IN (SELECT unnest(?))"
            params.append(types)
        return self._query(
            "SELECT user_id, session_id, type, ts, item_id, device "
            f"FROM events_raw WHERE {where} ORDER BY ts",
            params,
        )

    def user_category_counts(self) -> pa.Table:
        """Per known user and top-level category: events, purchases (for category affinity)."""
        return self._query(
            f"""
            SELECT user_id,
                   {_CATEGORY} AS category,
                   count(*) AS events,
                   count(*) FILTER (WHERE type = 'purchase') AS purchases
            FROM events WHERE user_id IS NOT NULL AND item_id IS NOT NULL
            GROUP BY 1, 2
            """
        )


def _time_window(where: list[str], since: int | None, until: int | None) -> list[Any]:
    """Add ``[since, until)`` conditions on ``ts`` to ``where``; returns their parameters."""
    params: list[Any] = []
    if since is not None:
        where.append("ts >= ?")
        params.append(since)
    if until is not None:
        where.append("ts < ?")
        params.append(until)
    return params
