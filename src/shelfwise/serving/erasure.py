"""Deleting a shopper everywhere, and the report that proves it.

Places, in the order they are cleaned: the store (a tombstone first, then events, the users table and
quarantined records, in one transaction), the event journal, the live session, cached results,
search personal signals (affinities), models in memory, model artifacts on disk (every registered
version, and the registry's erasure counter that tells other workers), derived copies (analytics
snapshots, the dashboard, ``var/reports``: quality examples, the marketing CSV) and exports (any
other file under ``var_dir``, backups included). Each place is cleaned on its own: one that fails is
named with its error and the others are still cleaned, so the caller can retry (erasure is idempotent).

``deletion_report`` checks each place afresh. A place it cannot reach from where it runs (a
server's memory, seen from the CLI) or cannot read (Redis down) is reported ``checked=False``:
never counted as clean.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shelfwise.registry.versions import ModelRegistry
from shelfwise.serving.deployment import LiveModels
from shelfwise.serving.signals import ErasureCounter
from shelfwise.serving.state import ResultCache, SessionStore
from shelfwise.store.base import Store
from shelfwise.store.erasure import derived_lock, erase_user, erased_in, files_under, user_footprint
from shelfwise.store.journal import EventJournal

UNREACHABLE = "in-process state of a running server: check it with --api URL"


@dataclass(frozen=True)
class Place:
    place: str
    found: bool
    detail: str = ""
    checked: bool = True  # False: the place could not be checked from here (never "clean")

    def to_dict(self) -> dict[str, Any]:
        return {"place": self.place, "found": self.found, "detail": self.detail, "checked": self.checked}


def not_checked(place: str, why: str) -> Place:
    return Place(place, False, f"not checked: {why}", checked=False)


def _error(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:300]


def erase_everywhere(
    user_id: str,
    *,
    store: Store,
    registry: ModelRegistry,
    sessions: SessionStore | None = None,
    cache: ResultCache | None = None,
    live: LiveModels | None = None,
    affinities: MutableMapping[str, Any] | None = None,
    journal: EventJournal | None = None,
    derived_dirs: Sequence[Path] = (),
    export_dirs: Sequence[Path] = (),
    fold_in: MutableMapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Remove ``user_id`` (the store's pseudonym) from every place; what was removed, per place, and
    in ``failed`` the places that could not be cleaned (place → error). ``derived_dirs`` hold
    rebuildable copies (analytics snapshots, reports): every entry there that mentions the user is
    deleted, to be rebuilt from the cleaned store. ``export_dirs``: backups under them are rewritten
    without the user (``shelfwise.store.backup.erase_from_backup``)."""
    started = time.perf_counter()
    removed: dict[str, Any] = {}
    failed: dict[str, str] = {}

    def clean(place: str, step: Callable[[], Any]) -> None:
        try:
            out = step()
        except Exception as exc:  # each place on its own: the rest is still cleaned
            failed[place] = _error(exc)
        else:
            if isinstance(out, dict):
                removed.update(out)
            else:
                removed[place] = out

    clean("store", lambda: erase_user(store, user_id))  # the tombstone first: nothing comes back
    if journal is not None:
        clean("event_journal", lambda: journal.forget(user_id))
    if sessions is not None:
        clean("session_entries", lambda: sessions.forget(user_id))
    if cache is not None:
        clean("cached_results", lambda: cache.invalidate(user_id))
    if affinities is not None:
        clean("search_affinity", lambda: int(affinities.pop(user_id, None) is not None))
    if fold_in is not None:
        clean("fold_in_events", lambda: int(fold_in.pop(user_id, None) is not None))
    if live is not None:
        clean("models_in_memory", lambda: live.forget_user(user_id))
    redis = redis_handle(sessions)
    if redis is not None:  # anything else under the prefix that names them (sessions, carts, results)
        clean("redis_keys", lambda: _redis_forget(*redis, user_id))
    clean("model_versions_on_disk", lambda: registry.erase_user(user_id))
    clean("erasure_counter", lambda: _note_erasure(registry))
    clean("derived_copies", lambda: _erase_derived(user_id, derived_dirs))
    clean("exports", lambda: _erase_exports(user_id, export_dirs))
    removed["failed"] = failed
    removed["seconds"] = round(time.perf_counter() - started, 4)
    return removed


def _note_erasure(registry: ModelRegistry) -> int:
    """Move the registry's erasure counter (other serving processes follow); its new value."""
    counter = ErasureCounter(registry)
    counter.note()
    return counter.count()


def deletion_report(
    user_id: str,
    *,
    store: Store | None,
    registry: ModelRegistry,
    sessions: SessionStore | None = None,
    cache: ResultCache | None = None,
    live: LiveModels | None = None,
    affinities: MutableMapping[str, Any] | None = None,
    journal: EventJournal | None = None,
    unreachable: str = UNREACHABLE,
    derived_dirs: Sequence[Path] = (),
    export_dirs: Sequence[Path] = (),
    skip: Sequence[Path] = (),
    fold_in: MutableMapping[str, Any] | None = None,
) -> list[Place]:
    """Every place a shopper's data can be, checked now. A place that cannot be reached from here
    (``sessions`` etc. None) or fails to answer is ``checked=False`` and says why. ``export_dirs``
    are scanned whole but for ``skip`` (what other places check: ``checked_elsewhere``)."""
    places: list[Place] = []

    def check(place: str, probe: Callable[[], Place | list[Place]]) -> None:
        try:
            out = probe()
        except Exception as exc:
            places.append(not_checked(place, _error(exc)))
        else:
            places.extend(out if isinstance(out, list) else [out])

    def store_places() -> list[Place]:
        if store is None:
            raise ConnectionError("the store could not be opened")
        foot = user_footprint(store, user_id)
        return [
            Place("store_events", foot["events"] > 0, f"{foot['events']} events"),
            Place("users_table", foot["users"] > 0, f"{foot['users']} rows"),
            Place(
                "quarantine", foot["quarantine"] > 0, f"{foot['quarantine']} quarantined records name them"
            ),
        ]

    check("store", store_places)
    if journal is not None:
        check("event_journal", lambda: _count_place("event_journal", journal.mentions(user_id), "events"))
    else:
        places.append(not_checked("event_journal", "no journal directory given"))
    for place, state in (("session_store", sessions), ("result_cache", cache)):
        if state is None:
            places.append(not_checked(place, unreachable))
        else:
            check(place, lambda s=state, p=place: Place(p, bool(s.holds(user_id)), f"backend {s.backend}"))
    redis = redis_handle(sessions)
    if redis is not None:
        check(
            "redis_keys",
            lambda: _count_place("redis_keys", len(_redis_keys(*redis, user_id)), "keys name them"),
        )
    if affinities is None:
        places.append(not_checked("search_personal_signals", f"affinity cache: {unreachable}"))
    else:
        held = user_id in affinities
        places.append(
            Place("search_personal_signals", held, "affinity cache (the rest is read from the store)")
        )
    if fold_in is not None:  # a serving process's fold-in cache (a CLI check sees its sessions unreachable)
        held = user_id in fold_in
        places.append(Place("fold_in_events", held, "events since training, cached for fold-in"))
    if live is None:
        places.append(not_checked("models_in_memory", unreachable))
    else:
        check("models_in_memory", lambda: _versions_place("models_in_memory", live.knows_user(user_id), live))
    check("model_artifacts", lambda: _artifacts_place(registry, user_id))
    check("derived_copies", lambda: _files_place("derived_copies", user_id, derived_dirs, ()))
    check("exports", lambda: _files_place("exports", user_id, export_dirs, skip))
    return places


def redis_handle(sessions: Any) -> tuple[Any, str] | None:
    """The Redis client and key prefix behind a session store, if it is (or falls back from) Redis."""
    for state in (sessions, getattr(sessions, "primary", None)):
        client, prefix = getattr(state, "r", None), getattr(state, "prefix", None)
        if client is not None and isinstance(prefix, str):
            return client, prefix
    return None


def _redis_keys(client: Any, prefix: str, user_id: str) -> list[Any]:
    escaped = "".join(f"\\{c}" if c in "*?[]\\" else c for c in prefix)
    return list(client.scan_iter(match=f"{escaped}*{user_id}*", count=1000))


def _redis_forget(client: Any, prefix: str, user_id: str) -> int:
    keys = _redis_keys(client, prefix, user_id)
    return int(client.delete(*keys)) if keys else 0


def _count_place(place: str, n: int, what: str) -> Place:
    return Place(place, n > 0, f"{n} {what}")


def _versions_place(place: str, versions: list[str], live: LiveModels) -> Place:
    return Place(place, bool(versions), ", ".join(versions) or f"{len(live.loaded_versions)} loaded")


def _artifacts_place(registry: ModelRegistry, user_id: str) -> Place:
    on_disk = registry.find_user(user_id)
    detail = ", ".join(on_disk) or f"{len(registry.versions())} versions (user_ids.npy of each component)"
    return Place("model_artifacts", bool(on_disk), detail)


def _files_place(place: str, user_id: str, dirs: Sequence[Path], skip: Sequence[Path]) -> Place:
    files = _files(dirs, skip)
    mentions = [p for p in files if erased_in(p, [user_id])]
    detail = (
        ", ".join(str(p) for p in mentions[:5]) or f"{len(files)} files under {', '.join(map(str, dirs))}"
    )
    return Place(place, bool(mentions), detail)


def _files(dirs: Sequence[Path], skip: Sequence[Path]) -> list[Path]:
    skipped = [s.resolve() for s in skip]
    out = []
    for d in dirs:
        for p in files_under(d):
            resolved = p.resolve()
            if not any(resolved == s or s in resolved.parents for s in skipped):
                out.append(p)
    return out


def _erase_derived(user_id: str, dirs: Sequence[Path]) -> int:
    """Delete each snapshot or report (the top-level entry under a derived dir) that mentions the
    user, under the lock a build holds while it publishes there (``publish_checked``)."""
    gone = 0
    for d in dirs:
        if not d.is_dir():
            continue
        with derived_lock(d):
            for top in sorted(d.iterdir()):
                if top.name.startswith(".erasure") or not erased_in(top, [user_id]):
                    continue
                if top.is_dir():
                    shutil.rmtree(top, ignore_errors=True)
                else:
                    top.unlink(missing_ok=True)
                gone += 1
    return gone


def _erase_exports(user_id: str, dirs: Sequence[Path]) -> int:
    """Rewrite every backup under ``dirs`` that holds the user (rows removed, manifest updated); a
    file there that is not part of a backup and names them is reported by ``deletion_report``."""
    from shelfwise.store.backup import backup_mentions, backups_under, erase_from_backup

    removed = 0
    for backup_dir in backups_under(dirs):
        if backup_mentions(backup_dir, user_id):
            removed += erase_from_backup(backup_dir, user_id)
    return removed


def derived_dirs(var_dir: Path) -> list[Path]:
    """Where rebuildable copies of shopper data live under ``var_dir``: analytics snapshots, the
    dashboard's report, and ``var/reports`` (quality examples, analytics reports, marketing lists)."""
    return [var_dir / "cache", var_dir / "dashboard", var_dir / "reports"]


def checked_elsewhere(var_dir: Path, *, store_url: str, models_root: Path) -> list[Path]:
    """Files under ``var_dir`` another place checks (the store's own files, the registry, the journal,
    derived copies, keys): the ``exports`` scan leaves them out."""
    from shelfwise.store.analytical import sqlite_path

    skip = [var_dir / n for n in ("journal", "pseudonym.key", "api.key", "models")]
    skip += [models_root, *derived_dirs(var_dir)]
    db = sqlite_path(store_url)
    if db is not None:
        skip += [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")]
    return skip
