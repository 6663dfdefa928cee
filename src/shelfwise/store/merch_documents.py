"""Versioned merchandising documents (placements, search settings) kept in the store.

A document is JSON text under ``(shop, kind, name)``; every save adds version ``n + 1`` and keeps the
older ones, so a change can be read back, compared and rolled back. ``documents_stamp`` changes with
every save: a serving process compares it to reload rules within a second, without a restart.
Validation of the body belongs to the caller (``shelfwise.merchandising``); this module stores text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from shelfwise.core.clock import now_ms
from shelfwise.core.errors import StoreError
from shelfwise.store.base import Store
from shelfwise.store.tables import merch_documents as docs


@dataclass(frozen=True)
class Document:
    shop: str
    kind: str
    name: str
    version: int
    body: dict[str, Any]
    created_at: int
    author: str | None = None
    comment: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "shop": self.shop,
            "version": self.version,
            "saved_at": self.created_at,
            "author": self.author,
            "comment": self.comment,
            "body": self.body,
        }


def _engine(store: Store) -> Any:
    return store.engine  # type: ignore[attr-defined]


def _doc(row: Any) -> Document:
    return Document(
        shop=row.shop,
        kind=row.kind,
        name=row.name,
        version=int(row.version),
        body=json.loads(row.body),
        created_at=int(row.created_at),
        author=row.author,
        comment=row.comment,
    )


def save_document(
    store: Store,
    *,
    kind: str,
    name: str,
    body: dict[str, Any],
    shop: str = "default",
    author: str | None = None,
    comment: str | None = None,
) -> Document:
    """Store ``body`` as the next version of ``(shop, kind, name)``; returns what was stored."""
    text = json.dumps(body, separators=(",", ":"), sort_keys=True, default=str)
    for _attempt in range(3):  # two writers racing for one version number: the loser retries
        try:
            with _engine(store).begin() as conn:
                current = conn.execute(
                    sa.select(sa.func.max(docs.c.version)).where(
                        docs.c.shop == shop, docs.c.kind == kind, docs.c.name == name
                    )
                ).scalar()
                row = {
                    "shop": shop,
                    "kind": kind,
                    "name": name,
                    "version": int(current or 0) + 1,
                    "body": text,
                    "created_at": now_ms(),
                    "author": author,
                    "comment": comment,
                }
                conn.execute(sa.insert(docs), [row])
            return Document(**{**row, "body": json.loads(text)})
        except sa.exc.IntegrityError:
            continue
    raise StoreError(f"could not save {kind} {name!r}: other saves kept taking its version", hint="try again")


def get_document(
    store: Store, *, kind: str, name: str, shop: str = "default", version: int | None = None
) -> Document | None:
    """The latest version (or ``version``) of a document, None when there is none."""
    query = sa.select(docs).where(docs.c.shop == shop, docs.c.kind == kind, docs.c.name == name)
    query = (
        query.where(docs.c.version == version)
        if version is not None
        else query.order_by(docs.c.version.desc())
    )
    with _engine(store).connect() as conn:
        row = conn.execute(query.limit(1)).first()
    return None if row is None else _doc(row)


def list_documents(store: Store, *, kind: str, shop: str = "default") -> list[Document]:
    """The latest version of every document of ``kind``, by name."""
    latest = (
        sa.select(docs.c.name, sa.func.max(docs.c.version).label("version"))
        .where(docs.c.shop == shop, docs.c.kind == kind)
        .group_by(docs.c.name)
        .subquery()
    )
    query = (
        sa.select(docs)
        .join(latest, sa.and_(docs.c.name == latest.c.name, docs.c.version == latest.c.version))
        .where(docs.c.shop == shop, docs.c.kind == kind)
        .order_by(docs.c.name)
    )
    with _engine(store).connect() as conn:
        return [_doc(r) for r in conn.execute(query)]


def document_history(store: Store, *, kind: str, name: str, shop: str = "default") -> list[Document]:
    """Every version of a document, newest first."""
    query = (
        sa.select(docs)
        .where(docs.c.shop == shop, docs.c.kind == kind, docs.c.name == name)
        .order_by(docs.c.version.desc())
    )
    with _engine(store).connect() as conn:
        return [_doc(r) for r in conn.execute(query)]


def documents_stamp(store: Store, *, shop: str = "default") -> tuple[int, int]:
    """``(rows, latest save time)`` of a shop's documents: any save changes it (cheap to poll)."""
    with _engine(store).connect() as conn:
        count, latest = conn.execute(
            sa.select(sa.func.count(), sa.func.max(docs.c.created_at)).where(docs.c.shop == shop)
        ).one()
    return int(count or 0), int(latest or 0)
