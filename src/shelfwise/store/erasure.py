"""Erasure of one shopper from the store, and the proof of it.

A shopper is their user id plus every alias and stitched guest session (``identities``).
``Store.delete_user`` leaves a tombstone for each of their pseudonyms and removes their events and
profile; erasure also removes the quarantined records that mention any of their ids, their consent
flags, their identity links, the answers served to them (impressions) and their attribution rows.
``user_footprint`` counts what is left in every table, and
``user_rows`` returns those very rows (the data-rights export).

Derived copies (analytics snapshots, reports) are written outside the store, often by a build that
read it before an erasure: ``publish_checked`` is how such a build puts its output in place, so a
build already running when a shopper is erased cannot bring them back.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from filelock import FileLock

from shelfwise.core.errors import ShelfwiseError
from shelfwise.core.logging import get_logger
from shelfwise.store.base import Store
from shelfwise.store.identities import Identity, identity
from shelfwise.store.sql import mentions
from shelfwise.store.tables import attributions, consent, events, identity_map, impressions, quarantine, users

log = get_logger(__name__)
LOCK_NAME = ".erasure.lock"  # in each directory of derived copies
# an erasure this much older than a build's start is already out of what the build read (clocks of
# the hosts writing tombstones and building may differ a little)
CLOCK_SLACK_MS = 60_000


def _engine(store: Store) -> Any:
    engine = getattr(store, "engine", None)
    if engine is None:  # pragma: no cover - every backend today is SQL
        raise NotImplementedError(f"{type(store).__name__} has no SQL engine")
    return engine


def _their_events(who: Identity) -> Any:
    cond: Any = events.c.user_id.in_(who.user_ids)
    if who.sessions:
        # a stitched guest session: its events without a user id (a signed-in user's own events
        # in the same session are theirs anyway)
        cond = sa.or_(cond, sa.and_(events.c.user_id.is_(None), events.c.session_id.in_(who.sessions)))
    return cond


def _their_served(table: sa.Table, who: Identity) -> Any:
    """Impressions served to the shopper, or attribution rows of their events (a guest session
    stitched to them counts, as for events)."""
    cond: Any = table.c.user_id.in_(who.user_ids)
    if who.sessions:
        cond = sa.or_(cond, sa.and_(table.c.user_id.is_(None), table.c.session_id.in_(who.sessions)))
    return cond


def _their_quarantine(who: Identity) -> Any:
    return sa.or_(*[mentions(u) for u in who.user_ids])


def _their_links(who: Identity) -> Any:
    return sa.or_(identity_map.c.user_id == who.user_id, identity_map.c.alias_id.in_(who.user_ids))


def erase_user(store: Store, user_id: str) -> dict[str, int]:
    """Tombstone a shopper and remove them (every alias and stitched session) from the store; rows
    removed per table."""
    who = identity(store, user_id)
    removed = {"events": 0, "users": 0}
    for uid in who.user_ids:
        for table, n in store.delete_user(uid).items():
            removed[table] = removed.get(table, 0) + n
    with _engine(store).begin() as conn:
        removed["events"] += conn.execute(events.delete().where(_their_events(who))).rowcount
        removed["quarantine"] = (
            removed.get("quarantine", 0)
            + conn.execute(quarantine.delete().where(_their_quarantine(who))).rowcount
        )
        removed["consent"] = conn.execute(
            consent.delete().where(consent.c.user_id.in_(who.user_ids))
        ).rowcount
        removed["identity_links"] = conn.execute(identity_map.delete().where(_their_links(who))).rowcount
        for served in (impressions, attributions):
            removed[served.name] = conn.execute(served.delete().where(_their_served(served, who))).rowcount
    return removed


def user_footprint(store: Store, user_id: str) -> dict[str, int]:
    """Rows that still hold the shopper: events, users, quarantine, consent, identity links,
    impressions served to them and attribution rows of their events."""
    who = identity(store, user_id)
    with _engine(store).connect() as conn:

        def count(table: sa.Table, where: Any) -> int:
            return int(conn.execute(sa.select(sa.func.count()).select_from(table).where(where)).scalar_one())

        return {
            "events": count(events, _their_events(who)),
            "users": count(users, users.c.user_id.in_(who.user_ids)),
            "quarantine": count(quarantine, _their_quarantine(who)),
            "consent": count(consent, consent.c.user_id.in_(who.user_ids)),
            "identity_links": count(identity_map, _their_links(who)),
            "impressions": count(impressions, _their_served(impressions, who)),
            "attributions": count(attributions, _their_served(attributions, who)),
        }


def user_rows(store: Store, user_id: str) -> dict[str, Any]:
    """Every row of the store that holds the shopper, per table (the rows ``user_footprint``
    counts), as JSON-ready dicts; events in time order."""
    who = identity(store, user_id)

    def rows(conn: sa.Connection, table: sa.Table, where: Any, order: Any) -> list[dict[str, Any]]:
        return [dict(r._mapping) for r in conn.execute(sa.select(table).where(where).order_by(*order))]

    with _engine(store).connect() as conn:
        out = {
            "events": rows(conn, events, _their_events(who), [events.c.ts, events.c.event_id]),
            "users": rows(conn, users, users.c.user_id.in_(who.user_ids), [users.c.user_id]),
            "quarantine": rows(conn, quarantine, _their_quarantine(who), [quarantine.c.id]),
            "consent": rows(conn, consent, consent.c.user_id.in_(who.user_ids), [consent.c.user_id]),
            "identity_links": rows(conn, identity_map, _their_links(who), [identity_map.c.alias_id]),
            "impressions": rows(
                conn,
                impressions,
                _their_served(impressions, who),
                [impressions.c.ts, impressions.c.answer_id],
            ),
            "attributions": rows(
                conn,
                attributions,
                _their_served(attributions, who),
                [attributions.c.ts, attributions.c.event_id],
            ),
        }
    for event in out["events"]:
        text = event.get("context")
        event["context"] = json.loads(text) if text and text != "{}" else {}
    for row in out["users"]:
        row["suspected_bot"] = bool(row["suspected_bot"])
    for row in out["consent"]:
        row["no_personalisation"] = bool(row["no_personalisation"])
        row["no_analytics"] = bool(row["no_analytics"])
    return {"user_id": who.user_id, "aliases": list(who.user_ids[1:]), "sessions": list(who.sessions), **out}


def users_with_events(store: Store, user_ids: list[str], *, batch: int = 500) -> set[str]:
    """Which of ``user_ids`` still have events in the store (e.g. to drop, in another process,
    the in-memory sessions of shoppers who were erased)."""
    found: set[str] = set()
    with _engine(store).connect() as conn:
        for start in range(0, len(user_ids), batch):
            chunk = user_ids[start : start + batch]
            rows = conn.execute(sa.select(events.c.user_id).where(events.c.user_id.in_(chunk)).distinct())
            found.update(str(r[0]) for r in rows)
    return found


# --- derived copies ---------------------------------------------------------------------------------


@contextlib.contextmanager
def derived_lock(directory: Path, *, timeout: float = 120) -> Iterator[None]:
    """Held by an erasure while it removes copies under ``directory``, and by a build while it checks
    and publishes its output there: the two never interleave, across processes."""
    directory.mkdir(parents=True, exist_ok=True)
    with FileLock(str(directory / LOCK_NAME), timeout=timeout):
        yield


def files_under(path: Path) -> list[Path]:
    """Every file under ``path`` (or ``path`` itself), lock files left out."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        return []
    return [p for p in sorted(path.rglob("*")) if p.is_file() and p.name != LOCK_NAME]


def file_mentions(path: Path, needle: bytes) -> bool:
    """Whether the file holds ``needle`` (read in chunks, overlapping by the needle's length). A
    Parquet file is compressed, so its text columns are searched instead of its bytes."""
    if path.suffix == ".parquet":
        return _parquet_mentions(path, needle.decode())
    tail = b""
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            if needle in tail + chunk:
                return True
            tail = chunk[-len(needle) :]
    return False


def _parquet_mentions(path: Path, text: str) -> bool:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    columns = [
        f.name for f in pf.schema_arrow if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
    ]
    for batch in pf.iter_batches(columns=columns) if columns else ():
        for column in batch.columns:
            if pc.any(pc.match_substring(column, text)).as_py():
                return True
    return False


def erased_in(path: Path, user_ids: Sequence[str]) -> list[str]:
    """Which of ``user_ids`` a file or directory of files mentions."""
    needles = [(u, u.encode()) for u in user_ids]
    found: list[str] = []
    for file in files_under(path):
        for user, needle in needles:
            if user not in found and file_mentions(file, needle):
                found.append(user)
    return found


class ErasedDuringBuild(ShelfwiseError):
    """A shopper was erased while a build read their data: its output was discarded."""


def publish_checked(
    built: Path,
    final: Path,
    *,
    erased_since: Callable[[int], Sequence[str]],
    started_ms: int,
    lock_dir: Path | None = None,
    merge: bool = False,
) -> None:
    """Move a finished build ``built`` (a file or directory) to ``final``, unless it mentions a
    shopper erased since the build started (``started_ms``; ``erased_since`` is the store's
    ``Store.erased_since``): then ``built`` is deleted and ``ErasedDuringBuild`` raised (build
    again). Done under ``derived_lock(lock_dir)``, the lock an erasure holds while it removes
    derived copies there, so an erasure lands before the check (and
    its tombstone is seen) or after the move (and it removes what was published). A directory
    replaces ``final`` whole, or with ``merge`` file by file (other files in ``final`` stay: a
    report written into a directory the user chose)."""
    with derived_lock(lock_dir or final.parent):
        recent = list(erased_since(started_ms - CLOCK_SLACK_MS))
        hit = erased_in(built, recent) if recent and built.exists() else []
        if hit or not built.exists():
            if built.is_dir():
                shutil.rmtree(built, ignore_errors=True)
            else:
                built.unlink(missing_ok=True)
            log.warning("discarded a build that read erased shoppers", shoppers=len(hit), path=str(final))
            raise ErasedDuringBuild(
                f"{len(hit)} shopper(s) erased while {final.name} was built: the build was discarded"
                if hit
                else f"{built} was removed while it was built (an erasure cleared it)",
                hint="build it again",
            )
        if merge and built.is_dir():
            _merge(built, final)
        else:
            _replace(built, final)


def _merge(new: Path, old: Path) -> None:
    for path in files_under(new):
        target = old / path.relative_to(new)
        target.parent.mkdir(parents=True, exist_ok=True)
        path.replace(target)
    shutil.rmtree(new, ignore_errors=True)


def building_path(final: Path) -> Path:
    """Where a build of ``final`` is written before ``publish_checked`` (beside it, hidden)."""
    return final.with_name(f".{final.name}.building")


def _replace(new: Path, old: Path) -> None:
    """Swap ``new`` in for ``old`` (a reader sees one or the other, never a half-written copy)."""
    if new.is_file():
        new.replace(old)
        return
    trash = old.with_name(old.name + ".old")
    if trash.exists():
        shutil.rmtree(trash)
    if old.exists():
        old.rename(trash)
    new.rename(old)
    if trash.exists():
        shutil.rmtree(trash)
