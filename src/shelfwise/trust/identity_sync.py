"""Stitched identities at request time: an alias id answers as its shopper on every worker.

``shelfwise privacy stitch`` (or ``store.identities.link``) records that a device-scoped id is one
shopper's other id. The models learn from events read through that map, so they know the shopper
under their main id only; a request made with the alias must be answered as the shopper. Each
serving worker keeps an ``IdentityView``: the ``kind="user"`` links it read, and the store's stamp
of them (rows and newest link), read at most every ``poll_seconds`` — a new link, or one an erasure
removed, is followed within that time on every worker.

While the table holds at most ``snapshot_limit`` user links the view reads them whole, once per
stamp, and answers every id from memory (most requests, for ids that are no alias, cost a dict
look-up). A bigger table is read one id at a time, remembered until the stamp moves. A store that
does not answer leaves the view as it was (the links it last read still hold).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from shelfwise.core.polled import Polled
from shelfwise.store.base import Store
from shelfwise.store.identities import canonical
from shelfwise.store.journal import store_unavailable
from shelfwise.store.tables import identity_map


def _engine(store: Store) -> Any:
    return store.engine  # type: ignore[attr-defined]


def identity_stamp(store: Store) -> tuple[int, int]:
    """Rows and newest change of the user links: moves whenever a link is added, replaced or removed."""
    with _engine(store).connect() as conn:
        row = conn.execute(
            sa.select(sa.func.count(), sa.func.max(identity_map.c.created_at)).where(
                identity_map.c.kind == "user"
            )
        ).one()
    return int(row[0] or 0), int(row[1] or 0)


def user_links(store: Store, *, limit: int) -> dict[str, str]:
    """Alias id → shopper id for at most ``limit`` user links."""
    with _engine(store).connect() as conn:
        rows = conn.execute(
            sa.select(identity_map.c.alias_id, identity_map.c.user_id)
            .where(identity_map.c.kind == "user")
            .limit(limit)
        ).all()
    return {str(a): str(u) for a, u in rows}


@dataclass
class _Links:
    """The links read under one stamp. A moved stamp brings a new one: an id read one at a time
    that lands in an old one is never answered again."""

    stamp: tuple[int, int]
    table: dict[str, str] | None  # every link, while the table is small
    one: dict[str, str] = field(default_factory=dict)  # ids read one at a time (a big table)


class IdentityView:
    """One worker's view of the user links, current within ``poll_seconds``. Thread-safe."""

    def __init__(
        self,
        store: Store,
        *,
        poll_seconds: float = 0.5,
        snapshot_limit: int = 200_000,
        wait_at_most: float | None = None,
    ) -> None:
        self.store = store
        self.poll_seconds = poll_seconds
        self.snapshot_limit = snapshot_limit
        self._lock = threading.Lock()
        # read outside the lock by one caller per poll: while it waits on a slow store, the others
        # answer from the links last read; the store down: they still hold
        self._links: Polled[_Links] = Polled(
            self._read,
            every=poll_seconds,
            keep_last_on=store_unavailable,
            wait_at_most=wait_at_most,
            name="identity links",
        )
        self.reloads = 0  # how often the links were read again (for tests and metrics)

    def _read(self, last: _Links | None) -> _Links:
        stamp = identity_stamp(self.store)
        if last is not None and stamp == last.stamp:
            return last
        links = (
            user_links(self.store, limit=self.snapshot_limit + 1) if stamp[0] <= self.snapshot_limit else None
        )
        with self._lock:
            self.reloads += 1
        return _Links(stamp, links if links is not None and len(links) <= self.snapshot_limit else None)

    def shopper_of(self, user_id: str) -> str:
        """The shopper ``user_id`` belongs to (itself when it is no alias)."""
        links = self._links.get()
        if links is not None and links.table is not None:
            return links.table.get(user_id, user_id)
        with self._lock:
            found = None if links is None else links.one.get(user_id)
        if found is not None:
            return found
        try:
            found = canonical(self.store, user_id)
        except Exception as exc:
            if not store_unavailable(exc):
                raise
            return user_id  # answered as itself: never as somebody else
        if links is not None:  # none read yet (the first poll waits, or the store is down): not kept
            with self._lock:
                if len(links.one) >= self.snapshot_limit:
                    links.one.clear()
                links.one[user_id] = found
        return found
