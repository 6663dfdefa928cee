"""Shared fixtures: small slices of real data, isolated settings, and stores on both backends.

PostgreSQL tests use the server on 127.0.0.1:5432 for real: one fresh database per test run,
created from the ``test`` database and dropped at the end.
"""

from __future__ import annotations

import gzip
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from shelfwise.core.settings import Settings
from shelfwise.store import Store, open_store
from shelfwise.store.tables import metadata

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
SHARED = Path(os.environ.get("SHELFWISE_SHARED_DATA", ROOT.parent / "shared" / "data"))
ONLINE_RETAIL = DATA / "online_retail" / "online_retail.csv.gz"
PG_ADMIN = os.environ.get("SHELFWISE_TEST_PG", "postgresql://127.0.0.1:5432/test")
# servers started by tests (in-process apps and `shelfwise serve` children alike) build keyword-only
# search indexes unless a test asks for another mode: a hybrid one loads the sentence model and
# embeds the catalogue on every first start, which only the hybrid tests need
os.environ.setdefault("SHELFWISE_SEARCH_MODE", "bm25")
TEST_KEY = "test-pseudonym-key-0123456789abcdef"


def head_lines(path: Path, n: int) -> list[bytes]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        return [line for _, line in zip(range(n), fh, strict=False)]


@pytest.fixture(scope="session")
def retail_slice(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 3,000 invoice lines of the real Online Retail file (plus its header)."""
    path = tmp_path_factory.mktemp("data") / "online_retail_head.csv"
    path.write_bytes(b"".join(head_lines(ONLINE_RETAIL, 3001)))
    return path


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(var_dir=tmp_path / "var", pseudonym_key=TEST_KEY)


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test run."""
    name = f"shelfwise_test_{uuid.uuid4().hex[:10]}"
    admin = sa.make_url(PG_ADMIN)
    conninfo = f"host={admin.host} port={admin.port or 5432} dbname={admin.database}"
    if admin.username:
        conninfo += f" user={admin.username}"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def fresh_pg_url(pg_url: str) -> Iterator[str]:
    """The run's PostgreSQL database, emptied before the test."""
    engine = sa.create_engine(sa.make_url(pg_url).set(drivername="postgresql+psycopg"))
    with engine.begin() as conn:
        names = [t.name for t in metadata.sorted_tables]
        existing = set(sa.inspect(conn).get_table_names())
        present = [n for n in names if n in existing]
        if present:
            conn.exec_driver_sql(f"TRUNCATE {', '.join(present)} RESTART IDENTITY")
    engine.dispose()
    yield pg_url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("fresh_pg_url")


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with open_store(store_url) as s:
        yield s
