"""A shopper's consent flags, kept in the store.

- ``no_personalisation``: the shopper's history is not used for them: their events leave the
  training data (``Store.interactions``), and serving answers them as it answers a stranger.
- ``no_analytics``: their events leave every analytics snapshot (funnels, segments, churn, reports
  and differentially private releases).

Flags take effect in this store at once; a serving process learns of a change through
``consent_stamp`` (phase 2 of issue 18 wires it across workers).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from shelfwise.core.clock import now_ms
from shelfwise.store.base import Store
from shelfwise.store.tables import consent

FLAGS = ("no_personalisation", "no_analytics")


@dataclass(frozen=True)
class Consent:
    user_id: str
    no_personalisation: bool = False
    no_analytics: bool = False
    updated_at: int | None = None

    @property
    def personalise(self) -> bool:
        return not self.no_personalisation

    def to_dict(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "no_personalisation": self.no_personalisation,
            "no_analytics": self.no_analytics,
            "updated_at": self.updated_at,
        }


def _engine(store: Store) -> Any:
    return store.engine  # type: ignore[attr-defined]


def get_consent(store: Store, user_id: str) -> Consent:
    """The shopper's flags (both off when never set)."""
    with _engine(store).connect() as conn:
        row = conn.execute(sa.select(consent).where(consent.c.user_id == user_id)).first()
    if row is None:
        return Consent(user_id)
    return Consent(user_id, bool(row.no_personalisation), bool(row.no_analytics), int(row.updated_at))


def all_consent(store: Store, *, limit: int | None = None) -> list[Consent]:
    """Every shopper with a flag on (at most ``limit`` of them): the rows a serving worker keeps."""
    query = sa.select(consent)
    if limit is not None:
        query = query.limit(limit)
    with _engine(store).connect() as conn:
        return [
            Consent(str(r.user_id), bool(r.no_personalisation), bool(r.no_analytics), int(r.updated_at))
            for r in conn.execute(query)
        ]


def set_consent(
    store: Store,
    user_id: str,
    *,
    no_personalisation: bool | None = None,
    no_analytics: bool | None = None,
) -> Consent:
    """Change the flags given (None keeps a flag as it is); returns the flags now in force."""
    old = get_consent(store, user_id)
    new = Consent(
        user_id,
        old.no_personalisation if no_personalisation is None else bool(no_personalisation),
        old.no_analytics if no_analytics is None else bool(no_analytics),
        now_ms(),
    )
    with _engine(store).begin() as conn:
        conn.execute(consent.delete().where(consent.c.user_id == user_id))
        if new.no_personalisation or new.no_analytics:  # both off is the default: no row to keep
            conn.execute(
                consent.insert().values(
                    user_id=user_id,
                    no_personalisation=new.no_personalisation,
                    no_analytics=new.no_analytics,
                    updated_at=new.updated_at,
                )
            )
    return new


def opted_out(store: Store, flag: str, user_ids: Iterable[str] | None = None) -> set[str]:
    """Shoppers with ``flag`` set (of ``user_ids`` when given)."""
    if flag not in FLAGS:
        raise ValueError(f"unknown consent flag {flag!r}; one of {FLAGS}")
    query = sa.select(consent.c.user_id).where(consent.c[flag].is_(True))
    if user_ids is not None:
        query = query.where(consent.c.user_id.in_(list(user_ids)))
    with _engine(store).connect() as conn:
        return {str(u) for u in conn.execute(query).scalars()}


def consent_stamp(store: Store) -> tuple[int, int]:
    """(rows, newest change) of the consent table: cheap to poll for changes from another process."""
    with _engine(store).connect() as conn:
        n, last = conn.execute(sa.select(sa.func.count(), sa.func.max(consent.c.updated_at))).one()
    return int(n), int(last or 0)
