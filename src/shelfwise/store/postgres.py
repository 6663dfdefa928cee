"""PostgreSQL backend: the same tables, bulk writes through COPY into a staging table."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from shelfwise.store.sql import SqlStore
from shelfwise.store.tables import events

_COLUMNS = ", ".join(c.name for c in events.columns)


class PostgresStore(SqlStore):
    def __init__(self, url: str) -> None:
        parsed = sa.make_url(url)
        if parsed.drivername in ("postgresql", "postgres"):
            parsed = parsed.set(drivername="postgresql+psycopg")
        engine = sa.create_engine(parsed, pool_pre_ping=True)
        super().__init__(url, engine)

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
        for table, column in (("quarantine", "id"), ("ingest_runs", "run_id")):
            conn.exec_driver_sql(
                f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), "
                f"COALESCE((SELECT MAX({column}) FROM {table}), 0) + 1, false)"
            )
