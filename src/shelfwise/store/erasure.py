"""Erasure of one shopper from the store, and the proof of it.

``Store.delete_user`` removes their events and profile; quarantined records can still carry their
pseudonym (a rejected line keeps its fields, pseudonymised), so erasure also removes those, and
``user_footprint`` counts what is left in every table.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from shelfwise.store.base import Store
from shelfwise.store.tables import events, quarantine, users


def _engine(store: Store) -> Any:
    engine = getattr(store, "engine", None)
    if engine is None:  # pragma: no cover - every backend today is SQL
        raise NotImplementedError(f"{type(store).__name__} has no SQL engine")
    return engine


def _mentions(user_id: str) -> Any:
    # a pseudonym is 32 hex characters, so a substring match cannot hit a different shopper's id
    escaped = user_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return quarantine.c.record.like(f"%{escaped}%", escape="\\")


def erase_user(store: Store, user_id: str) -> dict[str, int]:
    """Remove a user's events, profile and quarantined records; rows removed per table."""
    removed = dict(store.delete_user(user_id))
    with _engine(store).begin() as conn:
        removed["quarantine"] = conn.execute(quarantine.delete().where(_mentions(user_id))).rowcount
    return removed


def user_footprint(store: Store, user_id: str) -> dict[str, int]:
    """Rows that still mention ``user_id``: events, users, quarantine."""
    with _engine(store).connect() as conn:

        def count(table: sa.Table, where: Any) -> int:
            return int(conn.execute(sa.select(sa.func.count()).select_from(table).where(where)).scalar_one())

        return {
            "events": count(events, events.c.user_id == user_id),
            "users": count(users, users.c.user_id == user_id),
            "quarantine": count(quarantine, _mentions(user_id)),
        }


def users_with_events(store: Store, user_ids: list[str], *, batch: int = 500) -> set[str]:
    """Which of ``user_ids`` still have events in the store (e.g. to drop, in another process,
    the in-memory sessions of shoppers who were erased)."""
    found: set[str] = set()
    with _engine(store).connect() as conn:
        for start in range(0, len(user_ids), batch):
            chunk = user_ids[start : start + batch]
            rows = conn.execute(sa.select(events.c.user_id).where(events.c.user_id.in_(chunk)).distinct())
            found.update(str(r[0]) for r in rows)
    return found
