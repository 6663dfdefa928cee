"""Layer 3: the ``Store`` interface and its backends, chosen by URL.

>>> from shelfwise.store import open_store
>>> store = open_store("sqlite:///var/shelfwise.db")      # doctest: +SKIP
>>> store = open_store("postgresql://127.0.0.1:5432/shop")  # doctest: +SKIP
"""

from __future__ import annotations

from shelfwise.core.errors import StoreError
from shelfwise.store.base import CatalogueColumns, Interactions, QuarantineRow, Store


def open_store(url: str, *, connect_timeout: float = 5.0, statement_timeout_ms: int = 0) -> Store:
    """Open (and migrate) the store at ``url``: ``sqlite:///path`` or ``postgresql://host:port/db``.

    PostgreSQL: connecting gives up after ``connect_timeout`` seconds; ``statement_timeout_ms``
    (0: none) cancels a statement that runs, or waits on a lock, longer (serving sets it; batch
    commands, whose scans may take minutes, do not)."""
    scheme = url.split(":", 1)[0].split("+", 1)[0].lower()
    if scheme == "sqlite":
        from shelfwise.store.sqlite import SqliteStore

        return SqliteStore(url)
    if scheme in ("postgresql", "postgres"):
        from shelfwise.store.postgres import PostgresStore

        return PostgresStore(url, connect_timeout=connect_timeout, statement_timeout_ms=statement_timeout_ms)
    raise StoreError(f"unsupported store URL {url!r}", hint="use sqlite:///PATH or postgresql://HOST:PORT/DB")


__all__ = ["CatalogueColumns", "Interactions", "QuarantineRow", "Store", "open_store"]
