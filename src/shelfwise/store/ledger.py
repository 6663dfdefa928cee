"""The store's differential-privacy ledger: one ε budget per store, and every release recorded.

Each release spends ε from the budget *before* its noisy answer is computed, in one transaction
that first writes the budget row (so two processes spending at once queue behind each other's row
lock on PostgreSQL, or the write lock on SQLite) and then sums what was spent. A release that would
pass the budget is refused with ``PrivacyBudgetExceeded`` and nothing is recorded. Sequential
composition: the ε of every recorded release add up (pure ε-DP, no δ).

    >>> ledger = PrivacyLedger(store)                       # doctest: +SKIP
    >>> ledger.spend("funnel:category", 0.5, mechanism="laplace", sensitivity=6, scale=12)  # doctest: +SKIP
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from shelfwise.core.clock import now_ms
from shelfwise.core.errors import ShelfwiseError
from shelfwise.store.base import Store
from shelfwise.store.tables import dp_budget, dp_ledger

DEFAULT_BUDGET = 10.0  # total ε of a store until an operator sets another (`shelfwise trust dp budget`)


class PrivacyBudgetExceeded(ShelfwiseError):
    """A differentially private release would spend more ε than the store's budget has left."""

    exit_code = 6


@dataclass(frozen=True)
class Release:
    """One recorded release."""

    id: int
    released_at: int
    query: str
    epsilon: float
    mechanism: str
    sensitivity: float
    scale: float
    detail: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "released_at": self.released_at,
            "query": self.query,
            "epsilon": self.epsilon,
            "mechanism": self.mechanism,
            "sensitivity": self.sensitivity,
            "scale": self.scale,
            "detail": self.detail,
        }


def _refusal(query: str, epsilon: float, budget: float, spent: float) -> tuple[str, str]:
    return (
        f"privacy budget exhausted: {query} asks for ε={epsilon:g} but only "
        f"{max(budget - spent, 0.0):g} of {budget:g} is left ({spent:g} spent)",
        "ask with a smaller --epsilon, or raise the budget with `shelfwise trust dp budget --set`",
    )


def _engine(store: Store) -> Any:
    engine = getattr(store, "engine", None)
    if engine is None:  # pragma: no cover - every backend today is SQL
        raise NotImplementedError(f"{type(store).__name__} has no SQL engine")
    return engine


class PrivacyLedger:
    """The ε budget and the releases of one store."""

    def __init__(self, store: Store, *, default_budget: float = DEFAULT_BUDGET) -> None:
        self.engine = _engine(store)
        self.default_budget = default_budget

    def budget(self) -> float:
        with self.engine.connect() as conn:
            value = conn.execute(sa.select(dp_budget.c.epsilon).where(dp_budget.c.id == 1)).scalar()
        return float(value) if value is not None else self.default_budget

    def set_budget(self, epsilon: float) -> float:
        """Set the store's total ε (it may not drop below what was already spent)."""
        if not epsilon > 0:
            raise ShelfwiseError(f"an ε budget must be positive, got {epsilon}")
        spent = self.spent()
        if epsilon < spent:
            raise ShelfwiseError(
                f"ε budget {epsilon:g} is below the {spent:g} already spent",
                hint="a budget cannot take back releases that were made",
            )
        with self.engine.begin() as conn:
            updated = conn.execute(
                dp_budget.update().where(dp_budget.c.id == 1).values(epsilon=epsilon, updated_at=now_ms())
            ).rowcount
            if not updated:
                conn.execute(dp_budget.insert().values(id=1, epsilon=epsilon, updated_at=now_ms()))
        return epsilon

    def spent(self) -> float:
        with self.engine.connect() as conn:
            return float(
                conn.execute(sa.select(sa.func.coalesce(sa.func.sum(dp_ledger.c.epsilon), 0.0))).scalar()
            )

    def remaining(self) -> float:
        return max(self.budget() - self.spent(), 0.0)

    def require(self, query: str, epsilon: float) -> None:
        """Refuse now (``PrivacyBudgetExceeded``) when ``epsilon`` is more than is left; records
        nothing (``spend`` checks again when the release is made)."""
        budget, spent = self.budget(), self.spent()
        if spent + epsilon > budget + 1e-12:
            message, hint = _refusal(query, epsilon, budget, spent)
            raise PrivacyBudgetExceeded(message, hint=hint)

    def spend(
        self,
        query: str,
        epsilon: float,
        *,
        mechanism: str,
        sensitivity: float,
        scale: float,
        detail: dict[str, Any] | None = None,
    ) -> Release:
        """Record a release of ``epsilon``; refuse it (nothing recorded) when the budget would pass."""
        if not epsilon > 0:
            raise ShelfwiseError(f"ε must be positive, got {epsilon}")
        at = now_ms()
        with self.engine.begin() as conn:
            # write first: the row lock (PostgreSQL) or write lock (SQLite) serialises spenders
            locked = conn.execute(
                dp_budget.update().where(dp_budget.c.id == 1).values(updated_at=at)
            ).rowcount
            if not locked:
                conn.execute(dp_budget.insert().values(id=1, epsilon=self.default_budget, updated_at=at))
            budget = float(
                conn.execute(sa.select(dp_budget.c.epsilon).where(dp_budget.c.id == 1)).scalar_one()
            )
            spent = float(
                conn.execute(sa.select(sa.func.coalesce(sa.func.sum(dp_ledger.c.epsilon), 0.0))).scalar_one()
            )
            if spent + epsilon > budget + 1e-12:
                message, hint = _refusal(query, epsilon, budget, spent)
                raise PrivacyBudgetExceeded(message, hint=hint)
            text = json.dumps(detail or {}, default=str, separators=(",", ":"))
            new_id = conn.execute(
                dp_ledger.insert()
                .values(
                    released_at=at,
                    query=query,
                    epsilon=epsilon,
                    mechanism=mechanism,
                    sensitivity=sensitivity,
                    scale=scale,
                    detail=text,
                )
                .returning(dp_ledger.c.id)
            ).scalar_one()
        return Release(int(new_id), at, query, epsilon, mechanism, sensitivity, scale, detail or {})

    def releases(self, *, limit: int = 1000) -> list[Release]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(dp_ledger).order_by(dp_ledger.c.id.desc()).limit(limit)).all()
        return [
            Release(
                int(r.id),
                int(r.released_at),
                r.query,
                float(r.epsilon),
                r.mechanism,
                float(r.sensitivity),
                float(r.scale),
                json.loads(r.detail or "{}"),
            )
            for r in rows
        ]

    def summary(self) -> dict[str, Any]:
        budget, spent = self.budget(), self.spent()
        return {
            "budget_epsilon": budget,
            "spent_epsilon": round(spent, 12),
            "remaining_epsilon": round(max(budget - spent, 0.0), 12),
            "releases": len(self.releases()),
        }
