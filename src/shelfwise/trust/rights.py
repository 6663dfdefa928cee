"""Data rights below HTTP: everything the shop holds about one shopper, as JSON, and the hooks
later features add their own sections through.

``export_user`` collects the store's rows (events of the shopper and of every alias and stitched
guest session, their profile, the quarantined records naming them, consent flags, identity links)
— exactly the rows ``user_footprint`` counts and erasure removes — plus their RFM segment (when
they allow analytics), the model versions whose artifacts hold them, and every registered extra
section (experiment arms and impressions, once the experiments feature records them).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shelfwise.registry.versions import ModelRegistry
from shelfwise.store.analytical import AnalyticalStore
from shelfwise.store.base import Store
from shelfwise.store.consent import get_consent
from shelfwise.store.erasure import user_rows

EXPORT_FORMAT = 1
# the store tables an export lists (the rows ``user_footprint`` counts)
STORE_SECTIONS = ("events", "users", "quarantine", "consent", "identity_links", "impressions", "attributions")


@dataclass(frozen=True)
class Subject:
    """Who an export section is about: the shopper's id, their alias ids and stitched sessions."""

    user_id: str
    user_ids: tuple[str, ...]
    sessions: tuple[str, ...]
    store: Store


ExportSection = Callable[[Subject], Any]
# name → section; a feature that keeps per-shopper data registers one (experiment arms,
# impressions…), so an export never misses what it holds
_SECTIONS: dict[str, ExportSection] = {}
# sections a shop can expect that no installed feature records yet
PENDING = {
    "experiment_arms": "no experiment assignment is recorded yet (issue 17 adds experiments)",
    "impressions": "no impression log is kept yet (issue 17 adds it)",
}


def register_export_section(name: str, section: ExportSection) -> None:
    """Add a section to every export (a later feature's per-shopper data)."""
    _SECTIONS[name] = section
    PENDING.pop(name, None)


def _segment(db: AnalyticalStore, user_ids: tuple[str, ...]) -> dict[str, Any] | None:
    import polars as pl

    from shelfwise.analytics.segments import rfm

    table = rfm(db)
    row = table.filter(pl.col("user_id").is_in(list(user_ids)))
    return row.to_dicts()[0] if row.height else None


def export_user(
    store: Store,
    user_id: str,
    *,
    registry: ModelRegistry | None = None,
    analytical: AnalyticalStore | None = None,
) -> dict[str, Any]:
    """Everything held about ``user_id`` (the store's pseudonym), as one JSON-ready dict."""
    started = time.perf_counter()
    rows = user_rows(store, user_id)
    shopper = rows["user_id"]
    ids = (shopper, *rows["aliases"])
    flags = get_consent(store, shopper)
    out: dict[str, Any] = {
        "format": EXPORT_FORMAT,
        "user_id": shopper,
        "asked_for": user_id,
        "aliases": rows["aliases"],
        "stitched_sessions": rows["sessions"],
        "store": {k: rows[k] for k in STORE_SECTIONS},
        "counts": {k: len(rows[k]) for k in STORE_SECTIONS},
    }
    if analytical is None:
        out["segment"] = {"available": False, "reason": "not computed (no analytics snapshot given)"}
    elif flags.no_analytics:
        out["segment"] = {"available": False, "reason": "the shopper turned analytics off"}
    else:
        out["segment"] = {"available": True, "rfm": _segment(analytical, ids)}
    if registry is not None:
        out["model_versions"] = sorted({v for uid in ids for v in registry.find_user(uid)})
    subject = Subject(shopper, ids, tuple(rows["sessions"]), store)
    out["sections"] = {name: section(subject) for name, section in sorted(_SECTIONS.items())}
    out["not_recorded"] = dict(PENDING)
    out["seconds"] = round(time.perf_counter() - started, 4)
    return out


# tables a later feature may add (issue 17: experiments, impressions) whose rows name a shopper in
# one of these columns; an export includes them when the store has them, whatever their name
SHOPPER_COLUMNS = ("user_id", "shopper_id")
_COVERED = {"events", "users", "quarantine", "consent", "identity_map", "erased_users"}


def _other_tables(store: Store, ids: tuple[str, ...]) -> dict[str, list[dict[str, Any]]]:
    """Rows naming the shopper in every other table of the store with a shopper column."""
    import sqlalchemy as sa

    engine = store.engine  # type: ignore[attr-defined]
    found: dict[str, list[dict[str, Any]]] = {}
    inspector = sa.inspect(engine)
    with engine.connect() as conn:
        for name in sorted(inspector.get_table_names()):
            if name in _COVERED or name.startswith("alembic"):
                continue
            columns = {c["name"] for c in inspector.get_columns(name)}
            who = [c for c in SHOPPER_COLUMNS if c in columns]
            if not who:
                continue
            table = sa.Table(name, sa.MetaData(), autoload_with=conn)
            query = sa.select(table).where(sa.or_(*(table.c[c].in_(list(ids)) for c in who)))
            found[name] = [dict(r._mapping) for r in conn.execute(query)]
    return found


def export_shopper(
    store: Store, registry_root: Any, user_id: str, *, segments: bool = True, cache_dir: Any = None
) -> dict[str, Any]:
    """What ``GET /v1/users/{id}/export`` returns: ``export_user`` with the model registry at
    ``registry_root`` and a fresh analytics snapshot for the segment, plus the rows naming the
    shopper in any other table the store has (experiment arms, impressions…, under ``tables``).
    ``user_id`` is the store's pseudonym (an alias or stitched session resolves to its shopper).

    ``cache_dir`` (a server's): a SQLite store's segment is read from the latest analytics snapshot
    cached there, never from a fresh read — that read loads a second SQLite library into the
    process, which breaks the server's own SQLite locks (its next write found the file "malformed").
    """
    from pathlib import Path

    snapshot = None
    if segments and cache_dir is not None and store.url.startswith("sqlite"):
        snapshot = AnalyticalStore.latest_snapshot(store.url, Path(cache_dir))
    elif segments:
        snapshot = AnalyticalStore.open(store.url)
    try:
        out = export_user(store, user_id, registry=ModelRegistry(Path(registry_root)), analytical=snapshot)
    finally:
        if snapshot is not None:
            snapshot.close()
    ids = (out["user_id"], *out["aliases"])
    tables = _other_tables(store, ids)
    out["tables"] = tables
    out["counts"].update({name: len(rows) for name, rows in tables.items()})
    for name in tables:
        for pending in [k for k in out["not_recorded"] if k.split("_")[0].rstrip("s") in name]:
            out["not_recorded"].pop(pending)
    return out
