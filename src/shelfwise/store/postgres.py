"""PostgreSQL backend: the same tables, bulk writes through COPY into a staging table.

Faults are bounded: connecting (and waiting for a pooled connection) gives up after
``connect_timeout`` seconds, and with ``statement_timeout_ms`` (serving sets it) a statement that
runs or waits on a lock longer is cancelled by the server, so a hung store costs a request that
long, not a thread for ever.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from shelfwise.store.sql import SqlStore
from shelfwise.store.tables import events

_COLUMNS = ", ".join(c.name for c in events.columns)
# the advisory lock that orders event writes (shared) against erasures (exclusive)
ERASURE_LOCK = 0x73686C66_65727365  # "shlferse"


class PostgresStore(SqlStore):
    def __init__(self, url: str, *, connect_timeout: float = 5.0, statement_timeout_ms: int = 0) -> None:
        parsed = sa.make_url(url)
        if parsed.drivername in ("postgresql", "postgres"):
            parsed = parsed.set(drivername="postgresql+psycopg")
        # libpq takes whole seconds, at least 2
        connect_args: dict[str, Any] = {"connect_timeout": max(2, round(connect_timeout))}
        if statement_timeout_ms > 0:
            given = parsed.query.get("options")
            options = f"-c statement_timeout={int(statement_timeout_ms)}"
            connect_args["options"] = f"{given} {options}" if isinstance(given, str) else options
        engine = sa.create_engine(
            parsed, pool_pre_ping=True, pool_timeout=connect_timeout, connect_args=connect_args
        )
        super().__init__(url, engine)

    def before_migrate(self, conn: sa.Connection) -> None:
        conn.exec_driver_sql("SET LOCAL statement_timeout = 0")  # a migration may rewrite big tables

    def lock_against_erasure(self, conn: sa.Connection, *, exclusive: bool = False) -> None:
        kind = "" if exclusive else "_shared"
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock{kind}({ERASURE_LOCK})")

    def dialect_insert(self, table: sa.Table) -> Any:
        return postgresql.insert(table)

    def bulk_insert_events(self, conn: sa.Connection, rows: list[tuple[Any, ...]]) -> int:
        raw = conn.connection.driver_connection
        with raw.cursor() as cur:  # type: ignore[union-attr]
            cur.execute("CREATE TEMP TABLE IF NOT EXISTS _events_stage (LIKE events) ON COMMIT DELETE ROWS")
            with cur.copy(f"COPY _events_stage ({_COLUMNS}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            cur.execute(
                f"INSERT INTO events ({_COLUMNS}) SELECT {_COLUMNS} FROM _events_stage "
                "ON CONFLICT (event_id) DO NOTHING"
            )
            inserted = cur.rowcount
            cur.execute("TRUNCATE _events_stage")
        return int(inserted)

    def after_load(self, conn: sa.Connection) -> None:
        for table, column in (("quarantine", "id"), ("ingest_runs", "run_id"), ("dp_ledger", "id")):
            conn.exec_driver_sql(
                f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), "
                f"COALESCE((SELECT MAX({column}) FROM {table}), 0) + 1, false)"
            )
