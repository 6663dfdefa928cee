"""Retention: raw events older than N days are expired, their aggregates kept.

Before a day's raw events are deleted, they are added to ``event_rollups`` (per UTC day, item and
event type: events, units, revenue and distinct shoppers), in the same transaction, so a crash
leaves either both or neither. Quarantined records older than the cut-off go too (they hold raw
fields), and the profiles (``users``) of the shoppers touched are recomputed from what is left —
a shopper with no event left loses their profile row. Consent flags and identity links stay:
they are the shopper's instructions, not behaviour.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from shelfwise.core.clock import now_ms
from shelfwise.core.errors import ShelfwiseError
from shelfwise.store.base import Store
from shelfwise.store.tables import event_rollups, events, quarantine, users

DAY_MS = 86_400_000


def _engine(store: Store) -> Any:
    return store.engine  # type: ignore[attr-defined]


def expire_events(
    store: Store,
    *,
    older_than_days: float,
    now: int | None = None,
    dry_run: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Expire raw events with ``ts`` before ``now − older_than_days`` (whole UTC days before the
    cut-off day stay whole in the rollups); returns what was rolled up and removed."""
    if not older_than_days > 0:
        raise ShelfwiseError(f"--older-than-days must be positive, got {older_than_days}")
    started = time.perf_counter()
    now = now_ms() if now is None else now
    cutoff = now - int(older_than_days * DAY_MS)
    engine = _engine(store)
    day = sa.cast(events.c.ts // DAY_MS, sa.Integer)
    old = events.c.ts < cutoff
    with engine.connect() as conn:
        days = [int(d) for d in conn.execute(sa.select(day).where(old).distinct().order_by(day)).scalars()]
        n_old = int(conn.execute(sa.select(sa.func.count()).select_from(events).where(old)).scalar_one())
        n_quarantine = int(
            conn.execute(
                sa.select(sa.func.count()).select_from(quarantine).where(quarantine.c.created_at < cutoff)
            ).scalar_one()
        )
    report: dict[str, Any] = {
        "cutoff_ms": cutoff,
        "older_than_days": older_than_days,
        "days": len(days),
        "events": n_old,
        "quarantine": n_quarantine,
        "dry_run": dry_run,
    }
    if dry_run or (not n_old and not n_quarantine):
        report.update(rollup_rows=0, profiles_refreshed=0, profiles_removed=0)
        report["seconds"] = round(time.perf_counter() - started, 3)
        return report
    touched: set[str] = set()
    rollup_rows = 0
    # a day at a time: one transaction each, so memory and lock time stay small on a large store
    for i, d in enumerate(days):
        lo, hi = d * DAY_MS, min((d + 1) * DAY_MS, cutoff)
        window = sa.and_(events.c.ts >= lo, events.c.ts < hi)
        with engine.begin() as conn:
            touched.update(
                str(u)
                for u in conn.execute(
                    sa.select(events.c.user_id).where(window, events.c.user_id.is_not(None)).distinct()
                ).scalars()
            )
            item_key = sa.func.coalesce(events.c.item_id, sa.literal_column("''"))
            rows = conn.execute(
                sa.select(
                    item_key.label("item_id"),
                    events.c.type,
                    sa.func.count().label("n"),
                    sa.func.coalesce(sa.func.sum(events.c.quantity), 0).label("units"),
                    sa.func.coalesce(sa.func.sum(events.c.quantity * events.c.price), 0.0).label("revenue"),
                    sa.func.count(sa.distinct(events.c.user_id)).label("shoppers"),
                )
                .where(window)
                .group_by(item_key, events.c.type)
            ).all()
            _add_rollups(conn, store, d, rows)
            rollup_rows += len(rows)
            conn.execute(events.delete().where(window))
        if progress:
            progress(i + 1, len(days))
    with engine.begin() as conn:
        conn.execute(quarantine.delete().where(quarantine.c.created_at < cutoff))
    left = _users_with_events(engine, sorted(touched))
    gone = sorted(touched - left)
    with engine.begin() as conn:
        for start in range(0, len(gone), 500):
            conn.execute(users.delete().where(users.c.user_id.in_(gone[start : start + 500])))
    store.refresh_users(left)
    report.update(rollup_rows=rollup_rows, profiles_refreshed=len(left), profiles_removed=len(gone))
    report["seconds"] = round(time.perf_counter() - started, 3)
    return report


def _add_rollups(conn: sa.Connection, store: Store, day: int, rows: list[Any]) -> None:
    """Add to the day's rollups (a day split by an earlier, shorter retention run adds up)."""
    if not rows:
        return
    stmt = store.dialect_insert(event_rollups)  # type: ignore[attr-defined]
    upsert = stmt.on_conflict_do_update(
        index_elements=["day", "item_id", "type"],
        set_={
            "events": event_rollups.c.events + stmt.excluded.events,
            "units": event_rollups.c.units + stmt.excluded.units,
            "revenue": event_rollups.c.revenue + stmt.excluded.revenue,
            "users": event_rollups.c.users + stmt.excluded.users,
        },
    )
    conn.execute(
        upsert,
        [
            {
                "day": day,
                "item_id": r.item_id,
                "type": r.type,
                "events": int(r.n),
                "units": int(r.units),
                "revenue": float(r.revenue or 0.0),
                "users": int(r.shoppers),
            }
            for r in rows
        ],
    )


def _users_with_events(engine: Any, user_ids: list[str]) -> set[str]:
    found: set[str] = set()
    with engine.connect() as conn:
        for start in range(0, len(user_ids), 500):
            chunk = user_ids[start : start + 500]
            found.update(
                str(u)
                for u in conn.execute(
                    sa.select(events.c.user_id).where(events.c.user_id.in_(chunk)).distinct()
                ).scalars()
            )
    return found


def rollup_totals(store: Store) -> dict[str, Any]:
    """Events, units and revenue kept in the rollups, per event type."""
    with _engine(store).connect() as conn:
        rows = conn.execute(
            sa.select(
                event_rollups.c.type,
                sa.func.sum(event_rollups.c.events),
                sa.func.sum(event_rollups.c.units),
                sa.func.sum(event_rollups.c.revenue),
            ).group_by(event_rollups.c.type)
        ).all()
    return {t: {"events": int(e), "units": int(u), "revenue": round(float(r), 2)} for t, e, u, r in rows}


def latest_event_ts(store: Store) -> int | None:
    """The newest stored event's time (ms), or None for an empty store."""
    with _engine(store).connect() as conn:
        value = conn.execute(sa.select(sa.func.max(events.c.ts))).scalar()
    return None if value is None else int(value)
