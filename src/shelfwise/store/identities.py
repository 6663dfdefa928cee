"""Stitched identities: which user ids and sessions are one shopper.

A row maps an alias — another user id (``kind="user"``: a device-scoped id that later signed in)
or a session id (``kind="session"``: a guest session resolved by its login or its device) — to the
shopper's user id. ``Store.interactions`` reads events through the map, so the engines see one
profile; export and deletion (``shelfwise.store.erasure``) reach every alias.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from shelfwise.core.clock import now_ms
from shelfwise.store.base import Store
from shelfwise.store.tables import identity_map

KINDS = ("user", "session")


@dataclass(frozen=True)
class Link:
    kind: str
    alias_id: str
    user_id: str
    via: str

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "alias_id": self.alias_id, "user_id": self.user_id, "via": self.via}


@dataclass(frozen=True)
class Identity:
    """Everything that is one shopper: their id, their alias ids and their stitched sessions."""

    user_id: str
    user_ids: tuple[str, ...]  # the shopper's own id first, then aliases
    sessions: tuple[str, ...]


def _engine(store: Store) -> Any:
    return store.engine  # type: ignore[attr-defined]


def link(store: Store, links: Iterable[Link]) -> int:
    """Add or replace links (an alias belongs to one shopper: the newest link wins). A chain
    (a → b, b → c) is resolved to its end, so every alias points at a shopper directly."""
    rows = {(lk.kind, lk.alias_id): lk for lk in links if lk.alias_id != lk.user_id}
    for lk in rows.values():
        if lk.kind not in KINDS:
            raise ValueError(f"unknown identity link kind {lk.kind!r}; one of {KINDS}")
    if not rows:
        return 0
    with _engine(store).begin() as conn:
        existing = {
            r.alias_id: r.user_id
            for r in conn.execute(sa.select(identity_map).where(identity_map.c.kind == "user"))
        }
        users = {**existing, **{a: lk.user_id for (k, a), lk in rows.items() if k == "user"}}

        def resolve(u: str) -> str:
            seen = set()
            while u in users and u not in seen:
                seen.add(u)
                u = users[u]
            return u

        at = now_ms()
        keys = list(rows)
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            for kind in KINDS:
                aliases = [a for k, a in chunk if k == kind]
                if aliases:
                    conn.execute(
                        identity_map.delete().where(
                            identity_map.c.kind == kind, identity_map.c.alias_id.in_(aliases)
                        )
                    )
        conn.execute(
            identity_map.insert(),
            [
                {
                    "kind": lk.kind,
                    "alias_id": lk.alias_id,
                    "user_id": resolve(lk.user_id),
                    "via": lk.via,
                    "created_at": at,
                }
                for lk in rows.values()
            ],
        )
        # earlier links that pointed at what is now an alias follow it to the shopper
        # (a link b → c makes b an alias: the rows that named b as the shopper now name c)
        for alias in users:
            shopper = resolve(alias)
            if shopper != alias:
                conn.execute(
                    identity_map.update().where(identity_map.c.user_id == alias).values(user_id=shopper)
                )
    return len(rows)


def canonical(store: Store, user_id: str) -> str:
    """The shopper an id belongs to (itself when it is no alias)."""
    with _engine(store).connect() as conn:
        found = conn.execute(
            sa.select(identity_map.c.user_id).where(
                identity_map.c.kind == "user", identity_map.c.alias_id == user_id
            )
        ).scalar()
    return str(found) if found is not None else user_id


def identity(store: Store, user_id: str) -> Identity:
    """The shopper ``user_id`` belongs to, with every alias and stitched session."""
    shopper = canonical(store, user_id)
    with _engine(store).connect() as conn:
        rows = conn.execute(
            sa.select(identity_map.c.kind, identity_map.c.alias_id).where(identity_map.c.user_id == shopper)
        ).all()
    aliases = sorted(a for k, a in rows if k == "user")
    sessions = sorted(a for k, a in rows if k == "session")
    return Identity(shopper, (shopper, *aliases), tuple(sessions))


def links_of(store: Store, user_id: str) -> list[Link]:
    shopper = canonical(store, user_id)
    with _engine(store).connect() as conn:
        rows = conn.execute(
            sa.select(identity_map).where(identity_map.c.user_id == shopper).order_by(identity_map.c.alias_id)
        ).all()
    return [Link(r.kind, r.alias_id, r.user_id, r.via) for r in rows]


def has_links(conn: sa.Connection) -> bool:
    return conn.execute(sa.select(identity_map.c.alias_id).limit(1)).first() is not None
