"""Served answers (impressions) and the attribution rows of events that cite them.

An impression is one list served to one shopper: recommendation or search, its placement, the
model or index version and experiment arm that produced it, and the item ids in order. Rows are
compact (items as one JSON list) and bounded: ``expire_impressions`` drops them by age and keeps
at most a given number. They name a shopper, so erasure removes them (``store.erasure``), and a
write racing an erasure is ordered against it like an event write (``lock_against_erasure``).

    >>> log_impressions(store, [Impression(answer_id(), "rec", "home", ["i1", "i2"], ts=now_ms(),
    ...                                    user_id="u1")])      # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from shelfwise.core.clock import now_ms
from shelfwise.core.errors import ShelfwiseError
from shelfwise.store.base import Store
from shelfwise.store.tables import attributions, impressions

KINDS = ("rec", "search")
DAY_MS = 86_400_000
CHUNK = 1_000
QUERY_CHARS = 500


def normal_query(text: str) -> str:
    """A query as the report groups it (as search management matches it: lower case, spaces
    collapsed), at most 500 characters."""
    return " ".join(text.lower().split())[:QUERY_CHARS]


@dataclass(frozen=True)
class Impression:
    """One served list. ``propensities`` (one per position) only when a slot explored."""

    answer_id: str
    kind: str
    placement: str
    items: Sequence[str]
    ts: int
    user_id: str | None = None
    session_id: str | None = None
    version: str | None = None
    experiment: str | None = None
    arm: str | None = None
    propensities: Sequence[float] | None = None
    query: str | None = None  # search answers: what was asked (``normal_query``)
    total: int | None = None  # search answers: how many items matched
    # interleaving experiments: each slot's credits {"team": [+1 A, -1 B, 0 shared], "ips": [...]}
    interleaving: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ShelfwiseError(
                f"impression {self.answer_id}: kind must be one of {KINDS}, got {self.kind!r}"
            )
        if self.propensities is not None and len(self.propensities) != len(self.items):
            raise ShelfwiseError(
                f"impression {self.answer_id}: {len(self.propensities)} propensities "
                f"for {len(self.items)} items"
            )

    def row(self) -> dict[str, Any]:
        return {
            "answer_id": self.answer_id,
            "kind": self.kind,
            "placement": self.placement,
            "version": self.version,
            "experiment": self.experiment,
            "arm": self.arm,
            "user_id": self.user_id,
            "session_id": self.session_id,
            "items": json.dumps(list(self.items), separators=(",", ":")),
            "propensities": (
                json.dumps([round(float(p), 6) for p in self.propensities], separators=(",", ":"))
                if self.propensities is not None
                else None
            ),
            "ts": int(self.ts),
            "query": normal_query(self.query) if self.query is not None else None,
            "total": int(self.total) if self.total is not None else None,
            "interleaving": (
                None if self.interleaving is None else json.dumps(self.interleaving, separators=(",", ":"))
            ),
        }

    @classmethod
    def of(cls, row: Any) -> Impression:
        m = row._mapping
        return cls(
            answer_id=m["answer_id"],
            kind=m["kind"],
            placement=m["placement"],
            items=tuple(json.loads(m["items"])),
            ts=int(m["ts"]),
            user_id=m["user_id"],
            session_id=m["session_id"],
            version=m["version"],
            experiment=m["experiment"],
            arm=m["arm"],
            propensities=tuple(json.loads(m["propensities"])) if m["propensities"] else None,
            query=m.get("query"),
            total=m.get("total"),
            interleaving=json.loads(m["interleaving"]) if m.get("interleaving") else None,
        )


@dataclass
class Attribution:
    """What an event citing an answer was credited to. ``status``: ``attributed``, ``unknown``
    (no such answer: never served, expired from the log, or malformed), ``foreign`` (another
    shopper's answer), ``late`` (outside the shop's window) or ``bad_position`` (not a position of
    the list, or the item there is not the event's item)."""

    event_id: str
    status: str
    type: str
    ts: int
    user_id: str | None = None
    session_id: str | None = None
    answer_id: str | None = None
    position: int | None = None
    item_id: str | None = None
    placement: str | None = None
    version: str | None = None
    experiment: str | None = None
    arm: str | None = None
    revenue: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "status": self.status,
            "answer_id": self.answer_id,
            "position": self.position,
            "item_id": self.item_id,
            "type": self.type,
            "user_id": self.user_id,
            "session_id": self.session_id,
            "placement": self.placement,
            "version": self.version,
            "experiment": self.experiment,
            "arm": self.arm,
            "revenue": float(self.revenue),
            "ts": int(self.ts),
        }


def _engine(store: Store) -> Any:
    return store.engine  # type: ignore[attr-defined]


def log_impressions(store: Store, rows: Sequence[Impression]) -> int:
    """Store served lists in one transaction; answers of erased shoppers are dropped, ids already
    stored are skipped. Returns how many were stored."""
    return _insert_new(store, impressions, "answer_id", rows)


def get_impressions(store: Store, answer_ids: Iterable[str]) -> dict[str, Impression]:
    ids = sorted({a for a in answer_ids if a})
    out: dict[str, Impression] = {}
    with _engine(store).connect() as conn:
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            for row in conn.execute(sa.select(impressions).where(impressions.c.answer_id.in_(chunk))):
                out[row.answer_id] = Impression.of(row)
    return out


def iter_impressions(
    store: Store,
    *,
    placement: str | None = None,
    experiment: str | None = None,
    since: int | None = None,
    until: int | None = None,
    explored_only: bool = False,
) -> list[Impression]:
    """Impressions in time order, filtered."""
    q = sa.select(impressions).order_by(impressions.c.ts, impressions.c.answer_id)
    if placement is not None:
        q = q.where(impressions.c.placement == placement)
    if experiment is not None:
        q = q.where(impressions.c.experiment == experiment)
    if since is not None:
        q = q.where(impressions.c.ts >= since)
    if until is not None:
        q = q.where(impressions.c.ts < until)
    if explored_only:
        q = q.where(impressions.c.propensities.is_not(None))
    with _engine(store).connect() as conn:
        return [Impression.of(r) for r in conn.execute(q)]


def save_attributions(store: Store, rows: Sequence[Attribution]) -> int:
    """Store attribution rows (an event attributed once: a replayed event keeps its first row)."""
    return _insert_new(store, attributions, "event_id", rows)


def _insert_new(store: Store, table: sa.Table, key: str, rows: Sequence[Any]) -> int:
    """Insert ``rows`` (each with ``user_id`` and ``row()``) in one transaction, leaving out erased
    shoppers' rows and keys already stored; returns how many were new."""
    if not rows:
        return 0
    with _engine(store).begin() as conn:
        store.lock_against_erasure(conn)  # type: ignore[attr-defined]
        named = {r.user_id for r in rows if r.user_id}
        erased = store._erased_among(conn, named) if named else set()  # type: ignore[attr-defined]
        keep = [r.row() for r in rows if r.user_id not in erased]
        if not keep:
            return 0
        stmt = store.dialect_insert(table).on_conflict_do_nothing(index_elements=[key])  # type: ignore[attr-defined]
        # RETURNING counts what was new on both backends (executemany's rowcount is -1 on psycopg)
        return len(conn.execute(stmt.returning(table.c[key]), keep).all())


def last_clicks(
    store: Store, keys: Iterable[tuple[str | None, str | None, str]], *, since: int
) -> dict[tuple[str | None, str | None, str], Attribution]:
    """The newest attributed click at or after ``since`` for each (user, session, item): what an
    uncited cart or purchase of that item is carried over to. A key with a user matches that
    user's clicks; a guest key (no user) matches its session's."""
    wanted = set(keys)
    users_ = sorted({u for u, _, _ in wanted if u})
    sessions = sorted({s for u, s, _ in wanted if not u and s})
    if not users_ and not sessions:
        return {}
    out: dict[tuple[str | None, str | None, str], Attribution] = {}
    base = sa.select(attributions).where(
        attributions.c.status == "attributed", attributions.c.type == "click", attributions.c.ts >= since
    )
    with _engine(store).connect() as conn:
        for column, ids in ((attributions.c.user_id, users_), (attributions.c.session_id, sessions)):
            for start in range(0, len(ids), CHUNK):
                q = base.where(column.in_(ids[start : start + CHUNK])).order_by(attributions.c.ts)
                for r in conn.execute(q):
                    m = dict(r._mapping)
                    key = (
                        (m["user_id"], None, m["item_id"])
                        if column is attributions.c.user_id
                        else (None, m["session_id"], m["item_id"])
                    )
                    if column is attributions.c.session_id and m["user_id"]:
                        continue
                    out[key] = Attribution(**{k: v for k, v in m.items()})
    return out


def attribution_counts(store: Store, *, since: int | None = None) -> dict[str, int]:
    """Events that cited an answer, by status (``attributed``, ``unknown``, ``foreign``, …)."""
    q = sa.select(attributions.c.status, sa.func.count()).group_by(attributions.c.status)
    if since is not None:
        q = q.where(attributions.c.ts >= since)
    with _engine(store).connect() as conn:
        return {str(s): int(n) for s, n in conn.execute(q)}


def expire_impressions(
    store: Store, *, older_than_days: float | None = None, max_rows: int | None = None, now: int | None = None
) -> dict[str, int]:
    """Bound the impression log: drop rows older than ``older_than_days`` and then the oldest
    beyond ``max_rows``. Attribution rows stay (they carry what metrics need); an event citing an
    expired answer is then ``unknown``. Returns rows removed by each rule."""
    now = now_ms() if now is None else now
    removed = {"by_age": 0, "by_count": 0}
    with _engine(store).begin() as conn:
        if older_than_days is not None:
            if not older_than_days > 0:
                raise ShelfwiseError(f"older_than_days must be positive, got {older_than_days}")
            cutoff = now - int(older_than_days * DAY_MS)
            removed["by_age"] = conn.execute(impressions.delete().where(impressions.c.ts < cutoff)).rowcount
        if max_rows is not None:
            if max_rows < 0:
                raise ShelfwiseError(f"max_rows must be >= 0, got {max_rows}")
            total = int(conn.execute(sa.select(sa.func.count()).select_from(impressions)).scalar_one())
            if total > max_rows:
                # the newest kept row's (ts, id): everything strictly older goes
                edge = conn.execute(
                    sa.select(impressions.c.ts, impressions.c.answer_id)
                    .order_by(impressions.c.ts.desc(), impressions.c.answer_id.desc())
                    .offset(max_rows)
                    .limit(1)
                ).one()
                older = sa.or_(
                    impressions.c.ts < edge.ts,
                    sa.and_(impressions.c.ts == edge.ts, impressions.c.answer_id <= edge.answer_id),
                )
                removed["by_count"] = conn.execute(impressions.delete().where(older)).rowcount
    return removed


def clicked_positions(store: Store, answer_ids: Iterable[str]) -> dict[str, set[int]]:
    """Per answer, the positions (1-based) with an attributed click: rewards for off-policy evaluation."""
    ids = sorted(set(answer_ids))
    out: dict[str, set[int]] = {}
    with _engine(store).connect() as conn:
        for start in range(0, len(ids), CHUNK):
            q = sa.select(attributions.c.answer_id, attributions.c.position).where(
                attributions.c.answer_id.in_(ids[start : start + CHUNK]),
                attributions.c.status == "attributed",
                attributions.c.type == "click",
            )
            for answer, position in conn.execute(q):
                if position is not None:
                    out.setdefault(str(answer), set()).add(int(position))
    return out


def search_query_stats(
    store: Store, *, since: int | None = None, until: int | None = None
) -> list[dict[str, Any]]:
    """Per normalised query of the search answers served in [since, until): ``searches``,
    ``zero_results`` (answers that matched nothing), ``clicked`` (answers with at least one
    attributed click), ``clicks`` (attributed clicks) and ``last_ts``. Answers logged before queries
    were kept (no ``query``) are left out."""
    clicks = (
        sa.select(attributions.c.answer_id, sa.func.count().label("n"))
        .where(attributions.c.status == "attributed", attributions.c.type == "click")
        .group_by(attributions.c.answer_id)
        .subquery()
    )
    i = impressions
    zero = sa.case((i.c.total == 0, 1), else_=0)
    q = (
        sa.select(
            i.c.query,
            sa.func.count().label("searches"),
            sa.func.sum(zero).label("zero_results"),
            sa.func.count(clicks.c.answer_id).label("clicked"),
            sa.func.coalesce(sa.func.sum(clicks.c.n), 0).label("clicks"),
            sa.func.max(i.c.ts).label("last_ts"),
        )
        .select_from(i.outerjoin(clicks, clicks.c.answer_id == i.c.answer_id))
        .where(i.c.kind == "search", i.c.query.is_not(None))
        .group_by(i.c.query)
    )
    if since is not None:
        q = q.where(i.c.ts >= since)
    if until is not None:
        q = q.where(i.c.ts < until)
    with _engine(store).connect() as conn:
        return [
            {
                "query": str(r.query),
                "searches": int(r.searches),
                "zero_results": int(r.zero_results or 0),
                "clicked": int(r.clicked),
                "clicks": int(r.clicks or 0),
                "last_ts": int(r.last_ts),
            }
            for r in conn.execute(q)
        ]
