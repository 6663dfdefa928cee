"""Rows of the ``experiments`` table: an experiment's spec (JSON), status and persisted state.
The rules (overlap, statistics) live in ``shelfwise.evaluation.experiment_service``."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from shelfwise.core.clock import now_ms
from shelfwise.store.base import Store
from shelfwise.store.tables import events, experiments


@dataclass(frozen=True)
class ExperimentRow:
    name: str
    placement: str
    spec: dict[str, Any]
    status: str  # running | stopped
    start_ts: int
    end_ts: int | None
    created_at: int
    stopped_at: int | None
    state: dict[str, Any]

    @classmethod
    def of(cls, r: Any) -> ExperimentRow:
        return cls(
            name=r.name,
            placement=r.placement,
            spec=json.loads(r.spec),
            status=r.status,
            start_ts=int(r.start_ts),
            end_ts=None if r.end_ts is None else int(r.end_ts),
            created_at=int(r.created_at),
            stopped_at=None if r.stopped_at is None else int(r.stopped_at),
            state=json.loads(r.state or "{}"),
        )


def _engine(store: Store) -> Any:
    return store.engine  # type: ignore[attr-defined]


def _dump(value: dict[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def insert_experiment(
    store: Store,
    *,
    name: str,
    placement: str,
    spec: dict[str, Any],
    start_ts: int,
    end_ts: int | None,
    check: Callable[[list[ExperimentRow]], None],
) -> ExperimentRow:
    """Insert a running experiment. ``check`` sees the placement's running experiments inside the
    same transaction (after a write that serialises concurrent creators on the placement) and
    raises to refuse."""
    at = now_ms()
    with _engine(store).begin() as conn:
        # the write comes first: SQLite takes its write lock, PostgreSQL a row lock on the
        # placement's running rows, so two creators on one placement check one after the other
        conn.execute(
            experiments.update()
            .where(experiments.c.placement == placement, experiments.c.status == "running")
            .values(status="running")
        )
        running = [
            ExperimentRow.of(r)
            for r in conn.execute(
                sa.select(experiments).where(
                    experiments.c.placement == placement, experiments.c.status == "running"
                )
            )
        ]
        check(running)
        conn.execute(
            experiments.insert().values(
                name=name,
                placement=placement,
                spec=_dump(spec),
                status="running",
                start_ts=start_ts,
                end_ts=end_ts,
                created_at=at,
                stopped_at=None,
                state="{}",
            )
        )
    got = get_experiment(store, name)
    assert got is not None
    return got


def get_experiment(store: Store, name: str) -> ExperimentRow | None:
    with _engine(store).connect() as conn:
        r = conn.execute(sa.select(experiments).where(experiments.c.name == name)).first()
    return None if r is None else ExperimentRow.of(r)


def list_experiments(
    store: Store, *, placement: str | None = None, status: str | None = None
) -> list[ExperimentRow]:
    q = sa.select(experiments).order_by(experiments.c.created_at, experiments.c.name)
    if placement is not None:
        q = q.where(experiments.c.placement == placement)
    if status is not None:
        q = q.where(experiments.c.status == status)
    with _engine(store).connect() as conn:
        return [ExperimentRow.of(r) for r in conn.execute(q)]


def update_experiment(
    store: Store,
    name: str,
    *,
    status: str | None = None,
    stopped_at: int | None = None,
    state: dict[str, Any] | None = None,
) -> None:
    values: dict[str, Any] = {}
    if status is not None:
        values["status"] = status
    if stopped_at is not None:
        values["stopped_at"] = stopped_at
    if state is not None:
        values["state"] = _dump(state)
    if values:
        with _engine(store).begin() as conn:
            conn.execute(experiments.update().where(experiments.c.name == name).values(**values))


def pre_period_totals(
    store: Store, user_ids: list[str], *, event_type: str, since: int, until: int, revenue: bool = False
) -> dict[str, float]:
    """Per shopper, their ``event_type`` events (or, with ``revenue``, units × price) within
    ``[since, until)``: the pre-period covariate CUPED adjusts by. Shoppers with none are absent."""
    value = (
        sa.func.sum(events.c.quantity * sa.func.coalesce(events.c.price, 0.0)) if revenue else sa.func.count()
    )
    out: dict[str, float] = {}
    with _engine(store).connect() as conn:
        for start in range(0, len(user_ids), 1_000):
            chunk = user_ids[start : start + 1_000]
            q = (
                sa.select(events.c.user_id, value)
                .where(
                    events.c.user_id.in_(chunk),
                    events.c.type == event_type,
                    events.c.ts >= since,
                    events.c.ts < until,
                )
                .group_by(events.c.user_id)
            )
            out.update({str(u): float(v or 0.0) for u, v in conn.execute(q)})
    return out
