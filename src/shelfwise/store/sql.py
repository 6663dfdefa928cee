"""``Store`` over SQLAlchemy Core: everything both backends share. Dialect specifics (bulk paths,
connection settings) live in ``sqlite.py`` and ``postgres.py``."""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from shelfwise.core.clock import now_ms
from shelfwise.core.errors import StoreError
from shelfwise.core.ids import content_id
from shelfwise.core.logging import get_logger
from shelfwise.data.schemas import Event, EventType, Item
from shelfwise.store.base import CatalogueColumns, Interactions, QuarantineRow, Store
from shelfwise.store.identities import has_links
from shelfwise.store.interaction_columns import InteractionColumns
from shelfwise.store.tables import (
    consent,
    erased_users,
    events,
    identity_map,
    ingest_runs,
    items,
    metadata,
    quarantine,
    store_meta,
    users,
)

MIGRATIONS = Path(__file__).parent / "migrations"
CHUNK = 5_000  # ids per IN (...) list
log = get_logger(__name__)


def mentions(user_id: str) -> Any:
    """Quarantined records that name ``user_id`` (a rejected record keeps its fields, the user id
    pseudonymised). A pseudonym is 32 hex characters, so a substring cannot hit another shopper's."""
    escaped = user_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return quarantine.c.record.like(f"%{escaped}%", escape="\\")


_MIGRATE_LOCK = threading.Lock()
_CONTEXT_JSON: dict[tuple[Any, ...], str] = {}


def context_json(context: dict[str, Any]) -> str:
    """JSON text of an event's context; most contexts repeat (a country, a page), so they are cached."""
    if not context:
        return "{}"
    try:
        key = tuple(context.items())
        text = _CONTEXT_JSON.get(key)
    except TypeError:  # an unhashable value: a list or a dict
        return json.dumps(context, separators=(",", ":"))
    if text is None:
        text = json.dumps(context, separators=(",", ":"))
        if len(_CONTEXT_JSON) < 100_000:
            _CONTEXT_JSON[key] = text
    return text


def event_row(event: Event) -> tuple[Any, ...]:
    return (
        event.event_id,
        event.user_id,
        event.session_id,
        event.item_id,
        event.type.value,
        event.ts,
        event.quantity,
        event.price,
        event.currency,
        event.value,
        context_json(event.context),
        event.source,
    )


def item_row(item: Item) -> dict[str, Any]:
    return {
        "item_id": item.item_id,
        "title": item.title,
        "description": item.description,
        "category": item.category,
        "brand": item.brand,
        "price": item.price,
        "currency": item.currency,
        "attributes": json.dumps(item.attributes, separators=(",", ":")) if item.attributes else None,
        "available": item.available,
        "updated_ts": item.updated_ts,
        "source": item.source,
    }


def _event(row: Any) -> Event:
    return Event(
        event_id=row.event_id,
        user_id=row.user_id,
        session_id=row.session_id,
        item_id=row.item_id,
        type=EventType(row.type),
        ts=row.ts,
        quantity=row.quantity,
        price=row.price,
        currency=row.currency,
        value=row.value,
        context=json.loads(row.context) if row.context and row.context != "{}" else {},
        source=row.source,
    )


def _item(row: Any) -> Item:
    return Item(
        item_id=row.item_id,
        title=row.title,
        description=row.description,
        category=row.category,
        brand=row.brand,
        price=row.price,
        currency=row.currency,
        attributes=json.loads(row.attributes) if row.attributes else {},
        available=bool(row.available),
        updated_ts=row.updated_ts,
        source=row.source,
    )


_INTERACTION_CHUNK = 100_000  # rows fetched (and held as row objects) at a time by ``interactions``


def _chunks(values: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


class SqlStore(Store):
    """Shared implementation. Subclasses set ``dialect_insert`` and the bulk paths."""

    EVENT_COLUMNS = tuple(c.name for c in events.columns)

    def __init__(self, url: str, engine: sa.Engine) -> None:
        self.url = url
        self.engine = engine
        self.erased_refused = 0  # records refused because they named an erased shopper (since start)
        self.migrate()

    # --- dialect hooks --------------------------------------------------------------------------
    def dialect_insert(self, table: sa.Table) -> Any:
        raise NotImplementedError

    def bulk_insert_events(self, conn: sa.Connection, rows: list[tuple[Any, ...]]) -> int:
        """Insert rows, skipping ids already stored; returns rows inserted."""
        raise NotImplementedError

    def bulk_load(self, conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
        """Plain insert of many rows into an empty table (restore)."""
        if rows:
            conn.execute(table.insert(), rows)

    def after_load(self, conn: sa.Connection) -> None:
        """Called after a restore wrote explicit ids (PostgreSQL resets its sequences here)."""

    def before_migrate(self, conn: sa.Connection) -> None:
        """Session settings for the migration's transaction (PostgreSQL lifts the statement timeout)."""

    def lock_against_erasure(self, conn: sa.Connection, *, exclusive: bool = False) -> None:
        """Order this transaction against erasures: a write takes it shared before it checks the
        tombstones, an erasure exclusively before it writes one, so no write can check, miss a
        tombstone being written, and commit its rows after the erasure removed the shopper's."""
        raise NotImplementedError

    # --- schema --------------------------------------------------------------------------------
    def migrate(self) -> None:
        """Bring the schema to the newest migration (Alembic, run in-process)."""
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        try:
            # Alembic's ``context`` is one module-wide proxy: two stores migrating at once in one
            # process (a background worker opening its own store) would swap it under each other
            with _MIGRATE_LOCK, self.engine.begin() as conn:
                self.before_migrate(conn)
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
        except sa.exc.OperationalError as exc:
            raise StoreError(f"cannot open the store at {self.safe_url}: {exc.orig}".splitlines()[0]) from exc

    @property
    def safe_url(self) -> str:
        return sa.make_url(self.url).render_as_string(hide_password=True)

    # --- events --------------------------------------------------------------------------------
    def append_events(
        self,
        events_: Sequence[Event],
        *,
        items: Sequence[Item] = (),
        quarantine: Sequence[QuarantineRow] = (),
    ) -> int:
        with self.engine.begin() as conn:
            self.lock_against_erasure(conn)
            erased = self._erased_in(conn, [events_], quarantine)
            if erased:
                events_, quarantine = self._drop_erased(erased, events_, quarantine)
            if items:
                self._upsert_items(conn, items, replace=False)
            inserted = self.bulk_insert_events(conn, [event_row(e) for e in events_]) if events_ else 0
            if quarantine:
                self._add_quarantine(conn, quarantine)
        return inserted

    def append_event_rows(
        self,
        rows: Sequence[tuple[Any, ...]],
        *,
        items: Sequence[Item] = (),
        quarantine: Sequence[QuarantineRow] = (),
    ) -> int:
        with self.engine.begin() as conn:
            self.lock_against_erasure(conn)
            # the common case, nobody ever erased, is one probe (no set of the batch's shoppers)
            if conn.execute(sa.select(erased_users.c.user_id).limit(1)).first() is not None:
                named = {r[1] for r in rows if r[1] is not None}
                named.update(r.user_id for r in quarantine if r.user_id is not None)
                erased = self._erased_among(conn, named)
                if erased:
                    kept = [r for r in rows if r[1] not in erased]
                    kept_q = [r for r in quarantine if r.user_id not in erased]
                    self.erased_refused += len(rows) - len(kept) + len(quarantine) - len(kept_q)
                    log.warning("refused records of erased shoppers", shoppers=len(erased))
                    rows, quarantine = kept, kept_q
            if items:
                self._upsert_items(conn, items, replace=False)
            inserted = self.bulk_insert_events(conn, list(rows)) if rows else 0
            if quarantine:
                self._add_quarantine(conn, quarantine)
        return inserted

    def append_event_groups(self, groups: Sequence[Sequence[Event]]) -> list[int]:
        with self.engine.begin() as conn:  # one transaction, one commit for every group
            self.lock_against_erasure(conn)
            erased = self._erased_in(conn, groups, ())
            if erased:
                groups = [self._drop_erased(erased, g, ())[0] for g in groups]
            return [self.bulk_insert_events(conn, [event_row(e) for e in g]) if g else 0 for g in groups]

    # --- erasure -------------------------------------------------------------------------------
    def _erased_in(
        self, conn: sa.Connection, groups: Iterable[Sequence[Event]], rows: Sequence[QuarantineRow]
    ) -> set[str]:
        """The tombstoned pseudonyms among those these events and quarantined records name."""
        named = {e.user_id for g in groups for e in g if e.user_id is not None}
        named.update(r.user_id for r in rows if r.user_id is not None)
        if not named or conn.execute(sa.select(erased_users.c.user_id).limit(1)).first() is None:
            return set()  # the common case: nobody was ever erased
        return self._erased_among(conn, named)

    @staticmethod
    def _erased_among(conn: sa.Connection, user_ids: Iterable[str]) -> set[str]:
        ids = list(dict.fromkeys(user_ids))
        found: set[str] = set()
        for chunk in _chunks(ids):
            query = sa.select(erased_users.c.user_id).where(erased_users.c.user_id.in_(chunk))
            found.update(conn.execute(query).scalars())
        return found

    def _drop_erased(
        self, erased: set[str], events_: Sequence[Event], rows: Sequence[QuarantineRow]
    ) -> tuple[list[Event], list[QuarantineRow]]:
        kept = [e for e in events_ if e.user_id not in erased]
        kept_rows = [r for r in rows if r.user_id not in erased]
        dropped = len(events_) - len(kept) + len(rows) - len(kept_rows)
        if dropped:
            self.erased_refused += dropped
            # names nobody: how many, not whose
            log.warning("refused records of erased shoppers", records=dropped, shoppers=len(erased))
        return kept, kept_rows

    def erased_among(self, user_ids: Iterable[str]) -> set[str]:
        with self.engine.connect() as conn:
            return self._erased_among(conn, user_ids)

    def erased_since(self, since_ms: int) -> list[str]:
        query = sa.select(erased_users.c.user_id).where(erased_users.c.erased_at >= since_ms)
        with self.engine.connect() as conn:
            return list(conn.execute(query).scalars())

    @property
    def store_id(self) -> str:
        cached: str | None = getattr(self, "_store_id", None)
        if cached is not None:
            return cached
        query = sa.select(store_meta.c.value).where(store_meta.c.key == "store_id")
        with self.engine.begin() as conn:
            found = conn.execute(query).scalar()
            if found is None:  # made once; two processes racing here agree on the first one stored
                stmt = self.dialect_insert(store_meta).on_conflict_do_nothing(index_elements=["key"])
                conn.execute(stmt, {"key": "store_id", "value": secrets.token_hex(16)})
                found = conn.execute(query).scalar_one()
        self._store_id = str(found)
        return self._store_id

    def events_for_user(
        self,
        user_id: str,
        *,
        since: int | None = None,
        until: int | None = None,
        types: Iterable[EventType] | None = None,
        limit: int | None = None,
    ) -> list[Event]:
        query = self._event_query(since, until, types).where(events.c.user_id == user_id)
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [_event(row) for row in conn.execute(query)]

    def users_with_events_since(
        self, since: int, *, types: Iterable[EventType] | None = None, limit: int
    ) -> set[str] | None:
        query = sa.select(events.c.user_id).where(events.c.ts >= since, events.c.user_id.is_not(None))
        if types is not None:
            query = query.where(events.c.type.in_([str(t) for t in types]))
        query = query.distinct().limit(limit + 1)
        with self.engine.connect() as conn:
            found = {str(u) for u in conn.execute(query).scalars()}
        return None if len(found) > limit else found

    def iter_events(
        self,
        *,
        since: int | None = None,
        until: int | None = None,
        types: Iterable[EventType] | None = None,
        batch: int = 50_000,
    ) -> Iterator[Event]:
        query = self._event_query(since, until, types)
        with self.engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=batch).execute(query)
            for row in result:
                yield _event(row)

    @staticmethod
    def _event_query(
        since: int | None, until: int | None, types: Iterable[EventType] | None
    ) -> sa.Select[Any]:
        query = sa.select(events).order_by(events.c.ts, events.c.event_id)
        if since is not None:
            query = query.where(events.c.ts >= since)
        if until is not None:
            query = query.where(events.c.ts < until)
        if types is not None:
            query = query.where(events.c.type.in_([str(t) for t in types]))
        return query

    def interactions(
        self,
        *,
        types: Iterable[EventType] | None = None,
        since: int | None = None,
        until: int | None = None,
        exclude_bots: bool = True,
    ) -> Interactions:
        with self.engine.connect() as conn:
            stitched = has_links(conn)
        who: Any = events.c.user_id
        source: Any = events
        if stitched:  # read events as the shopper they were stitched to (aliases, guest sessions)
            mu, ms = identity_map.alias("mu"), identity_map.alias("ms")
            source = events.outerjoin(
                mu, sa.and_(mu.c.kind == "user", mu.c.alias_id == events.c.user_id)
            ).outerjoin(ms, sa.and_(ms.c.kind == "session", ms.c.alias_id == events.c.session_id))
            who = sa.func.coalesce(mu.c.user_id, ms.c.user_id, events.c.user_id)
        query = (
            sa.select(who.label("user_id"), events.c.item_id, events.c.type, events.c.ts, events.c.quantity)
            .select_from(source)
            .where(who.is_not(None), events.c.item_id.is_not(None))
            .order_by(events.c.ts, events.c.event_id)
        )
        # a shopper who turned personalisation off is not profiled: their events train nothing
        query = query.where(
            who.not_in(sa.select(consent.c.user_id).where(consent.c.no_personalisation.is_(True)))
        )
        if types is not None:
            query = query.where(events.c.type.in_([str(t) for t in types]))
        if since is not None:
            query = query.where(events.c.ts >= since)
        if until is not None:
            query = query.where(events.c.ts < until)
        if exclude_bots:
            bots = sa.select(users.c.user_id).where(users.c.suspected_bot.is_(True))
            query = query.where(who.not_in(bots))
        type_names = tuple(t.value for t in EventType)
        columns = InteractionColumns(type_names)
        with self.engine.connect() as conn:
            # a chunk of rows at a time: 10M events never exist as 10M row objects at once
            result = conn.execution_options(stream_results=True, yield_per=_INTERACTION_CHUNK).execute(query)
            for part in result.partitions():
                columns.add(part)
        return columns.finish()

    # --- catalogue and users -------------------------------------------------------------------
    def upsert_items(self, items_: Sequence[Item], *, replace: bool = True) -> int:
        with self.engine.begin() as conn:
            return self._upsert_items(conn, items_, replace=replace)

    def _upsert_items(self, conn: sa.Connection, items_: Sequence[Item], *, replace: bool) -> int:
        if not items_:
            return 0
        rows = {item.item_id: item_row(item) for item in items_}  # last one wins within a batch
        stmt = self.dialect_insert(items)
        new, old = stmt.excluded, items.c
        keep = sa.func.coalesce
        set_ = {
            c.name: (keep(new[c.name], c) if replace else keep(c, new[c.name]))
            for c in old
            if c.name not in ("item_id", "available", "source")
        }
        if replace:
            set_["available"] = new.available
            set_["source"] = new.source
        conn.execute(stmt.on_conflict_do_update(index_elements=[old.item_id], set_=set_), list(rows.values()))
        return len(rows)

    def get_items(self, item_ids: Iterable[str]) -> dict[str, Item]:
        ids = list(dict.fromkeys(item_ids))
        out: dict[str, Item] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(ids):
                for row in conn.execute(sa.select(items).where(items.c.item_id.in_(chunk))):
                    out[row.item_id] = _item(row)
        return out

    def item_count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(items)).scalar_one())

    def first_items(self, n: int) -> list[Item]:
        query = sa.select(items).where(items.c.available.is_(True)).order_by(items.c.item_id).limit(n)
        with self.engine.connect() as conn:
            return [_item(row) for row in conn.execute(query)]

    def all_items(self) -> list[Item]:
        """One streamed scan (``get_items(item_ids())`` sends 1M ids back in ``IN`` lists)."""
        out: list[Item] = []
        with self.engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=50_000).execute(
                sa.select(items).order_by(items.c.item_id)
            )
            for part in result.partitions():
                out.extend(_item(row) for row in part)
        return out

    def catalogue_columns(self) -> CatalogueColumns:
        """One ordered scan of the items table into columns: no ``Item`` objects, no ``IN`` lists
        (1M items: seconds, where ``get_items(item_ids())`` took minutes)."""
        cols = (items.c.item_id, items.c.title, items.c.description, items.c.category, items.c.brand)
        query = sa.select(*cols, items.c.price, items.c.available).order_by(items.c.item_id)
        out: list[list[Any]] = [[] for _ in range(7)]
        with self.engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=50_000).execute(query)
            for part in result.partitions():
                for column, values in zip(out, zip(*part, strict=True), strict=True):
                    column.extend(values)
        ids, title, description, category, brand, price, available = out
        return CatalogueColumns(
            item_ids=ids,
            title=[v or None for v in title],
            description=[v or None for v in description],
            category=[v or None for v in category],
            brand=[v or None for v in brand],
            price=np.array([np.nan if p is None else p for p in price], np.float64),
            available=np.array(available, bool),
        )

    def item_ids(self) -> set[str]:
        with self.engine.connect() as conn:
            return set(conn.execute(sa.select(items.c.item_id)).scalars())

    def refresh_users(self, user_ids: Iterable[str], *, flags: dict[str, str] | None = None) -> int:
        ids = sorted(set(user_ids))
        stmt = self.dialect_insert(users)
        upsert = stmt.on_conflict_do_update(
            index_elements=[users.c.user_id],
            set_={
                "first_seen": stmt.excluded.first_seen,
                "last_seen": stmt.excluded.last_seen,
                "n_events": stmt.excluded.n_events,
            },
        )
        done = 0
        with self.engine.begin() as conn:
            for chunk in _chunks(ids):
                stats = conn.execute(
                    sa.select(
                        events.c.user_id, sa.func.min(events.c.ts), sa.func.max(events.c.ts), sa.func.count()
                    )
                    .where(events.c.user_id.in_(chunk))
                    .group_by(events.c.user_id)
                ).all()
                rows = [
                    {
                        "user_id": u,
                        "first_seen": a,
                        "last_seen": b,
                        "n_events": n,
                        "suspected_bot": False,
                        "bot_reason": None,
                    }
                    for u, a, b, n in stats
                ]
                if rows:
                    conn.execute(upsert, rows)
                done += len(rows)
            for user_id, reason in (flags or {}).items():
                conn.execute(
                    users.update()
                    .where(users.c.user_id == user_id)
                    .values(suspected_bot=True, bot_reason=reason)
                )
        return done

    def get_user(self, user_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(users).where(users.c.user_id == user_id)).first()
        return None if row is None else dict(row._mapping)

    def suspected_bots(self) -> int:
        query = sa.select(sa.func.count()).select_from(users).where(users.c.suspected_bot.is_(True))
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def delete_user(self, user_id: str) -> dict[str, int]:
        with self.engine.begin() as conn:
            self.lock_against_erasure(conn, exclusive=True)
            stmt = self.dialect_insert(erased_users)
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=[erased_users.c.user_id], set_={"erased_at": stmt.excluded.erased_at}
                ),
                {"user_id": user_id, "erased_at": now_ms()},
            )
            removed = {
                "events": conn.execute(events.delete().where(events.c.user_id == user_id)).rowcount,
                "users": conn.execute(users.delete().where(users.c.user_id == user_id)).rowcount,
                "quarantine": conn.execute(quarantine.delete().where(mentions(user_id))).rowcount,
            }
        return removed

    # --- quality -------------------------------------------------------------------------------
    def add_quarantine(self, rows: Sequence[QuarantineRow]) -> None:
        with self.engine.begin() as conn:
            self.lock_against_erasure(conn)
            erased = self._erased_in(conn, (), rows)
            if erased:
                rows = self._drop_erased(erased, (), rows)[1]
            self._add_quarantine(conn, rows)

    def _add_quarantine(self, conn: sa.Connection, rows: Sequence[QuarantineRow]) -> None:
        """Quarantine is idempotent too: the same bad record from the same source is kept once."""
        if rows:
            created = now_ms()
            stmt = self.dialect_insert(quarantine).on_conflict_do_nothing(index_elements=["record_key"])
            conn.execute(
                stmt,
                [
                    {
                        "record_key": content_id(r.source, r.kind, r.line_no, r.reason, r.field, r.record),
                        "run_id": r.run_id,
                        "source": r.source,
                        "kind": r.kind,
                        "line_no": r.line_no,
                        "field": r.field,
                        "reason": r.reason,
                        "detail": r.detail[:2000],
                        "record": r.record,
                        "created_at": created,
                    }
                    for r in rows
                ],
            )

    def quarantine_summary(self) -> dict[str, Any]:
        q = quarantine.c
        with self.engine.connect() as conn:

            def grouped(*cols: Any) -> Sequence[Any]:
                return conn.execute(sa.select(*cols, sa.func.count()).group_by(*cols).order_by(*cols)).all()

            return {
                "total": conn.execute(sa.select(sa.func.count()).select_from(quarantine)).scalar_one(),
                "by_reason": {r: n for r, n in grouped(q.reason)},
                "by_field": {(f or "(record)"): n for f, n in grouped(q.field)},
                "by_source_reason": [
                    {"source": s, "reason": r, "count": n} for s, r, n in grouped(q.source, q.reason)
                ],
            }

    def quarantined(self, *, reason: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        query = sa.select(quarantine).order_by(quarantine.c.id).limit(limit)
        if reason is not None:
            query = query.where(quarantine.c.reason == reason)
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def start_run(self, *, source: str, kind: str, path: str) -> int:
        with self.engine.begin() as conn:
            result = conn.execute(
                ingest_runs.insert()
                .values(source=source, kind=kind, path=path, started_at=now_ms())
                .returning(ingest_runs.c.run_id)
            )
            return int(result.scalar_one())

    def finish_run(self, run_id: int, report: dict[str, Any]) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                ingest_runs.update()
                .where(ingest_runs.c.run_id == run_id)
                .values(finished_at=now_ms(), report=json.dumps(report))
            )

    def runs(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(ingest_runs).order_by(ingest_runs.c.run_id)).all()
        out = []
        for row in rows:
            record = dict(row._mapping)
            record["report"] = json.loads(record["report"]) if record["report"] else None
            out.append(record)
        return out

    # --- housekeeping --------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return {
                table.name: conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
                for table in metadata.sorted_tables
            }

    def event_count(self, *, at_most: int | None = None) -> int:
        rows: Any = events
        if at_most is not None:
            rows = sa.select(events.c.event_id).limit(at_most).subquery()
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(rows)).scalar_one())

    def close(self) -> None:
        self.engine.dispose()
