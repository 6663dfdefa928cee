"""Deleting a shopper everywhere, and the report that proves it.

Places, in the order they are cleaned: store events, the users table (profile), quarantined records,
the live session, cached results, search personal signals (affinities), models in memory, and model
artifacts on disk (every registered version). ``deletion_report`` checks each place afresh.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shelfwise.api.state import ResultCache, SessionStore
from shelfwise.registry.serving import LiveModels
from shelfwise.registry.versions import ModelRegistry
from shelfwise.store.base import Store
from shelfwise.store.erasure import erase_user, user_footprint


@dataclass(frozen=True)
class Place:
    place: str
    found: bool
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"place": self.place, "found": self.found, "detail": self.detail}


def erase_everywhere(
    user_id: str,
    *,
    store: Store,
    registry: ModelRegistry,
    sessions: SessionStore | None = None,
    cache: ResultCache | None = None,
    live: LiveModels | None = None,
    affinities: MutableMapping[str, Any] | None = None,
    derived_dirs: Sequence[Path] = (),
) -> dict[str, Any]:
    """Remove ``user_id`` (the store's pseudonym) from every place; what was removed, per place.
    ``derived_dirs`` hold rebuildable copies (analytics snapshots, dashboard reports): every entry
    there that mentions the user is deleted, to be rebuilt from the cleaned store."""
    started = time.perf_counter()
    removed: dict[str, Any] = dict(erase_user(store, user_id))
    if sessions is not None:
        removed["session_entries"] = sessions.forget(user_id)
    if cache is not None:
        removed["cached_results"] = cache.invalidate(user_id)
    if affinities is not None:
        removed["search_affinity"] = int(affinities.pop(user_id, None) is not None)
    if live is not None:
        removed["models_in_memory"] = live.forget_user(user_id)
    removed["model_versions_on_disk"] = registry.erase_user(user_id)
    registry.note_erasure()  # other serving processes follow (LiveModels.sync)
    removed["derived_copies"] = _erase_derived(user_id, derived_dirs)
    removed["seconds"] = round(time.perf_counter() - started, 4)
    return removed


def deletion_report(
    user_id: str,
    *,
    store: Store,
    registry: ModelRegistry,
    sessions: SessionStore | None = None,
    cache: ResultCache | None = None,
    live: LiveModels | None = None,
    affinities: MutableMapping[str, Any] | None = None,
    unreachable: str = "in-process state of a running server: check it with --api URL",
    derived_dirs: Sequence[Path] = (),
) -> list[Place]:
    """Every place a shopper's data can be, checked now. Places that cannot be reached from here
    (a server's memory, seen from the CLI) are listed with ``found=False`` and say so."""
    foot = user_footprint(store, user_id)
    places = [
        Place("store_events", foot["events"] > 0, f"{foot['events']} events"),
        Place("users_table", foot["users"] > 0, f"{foot['users']} rows"),
        Place(
            "quarantine", foot["quarantine"] > 0, f"{foot['quarantine']} quarantined records mention the id"
        ),
    ]
    if sessions is not None:
        places.append(Place("session_store", sessions.holds(user_id), f"backend {sessions.backend}"))
    else:
        places.append(Place("session_store", False, f"not checked: {unreachable}"))
    if cache is not None:
        places.append(Place("result_cache", cache.holds(user_id), f"backend {cache.backend}"))
    else:
        places.append(Place("result_cache", False, f"not checked: {unreachable}"))
    held = affinities is not None and user_id in affinities
    signal_detail = "derived from store events at query time"
    if affinities is None:
        signal_detail += f"; affinity cache not checked: {unreachable}"
    places.append(Place("search_personal_signals", held or foot["events"] > 0, signal_detail))
    if live is not None:
        in_memory = live.knows_user(user_id)
        places.append(
            Place(
                "models_in_memory",
                bool(in_memory),
                ", ".join(in_memory) or f"{len(live.loaded_versions)} loaded",
            )
        )
    else:
        places.append(Place("models_in_memory", False, f"not checked: {unreachable}"))
    on_disk = registry.find_user(user_id)
    places.append(
        Place(
            "model_artifacts",
            bool(on_disk),
            ", ".join(on_disk)
            or f"{len(registry.versions())} versions checked (user_ids.npy of each component)",
        )
    )
    mentions = _derived_mentions(user_id, derived_dirs)
    places.append(
        Place(
            "derived_copies",
            bool(mentions),
            ", ".join(str(p) for p in mentions[:5])
            or f"{sum(1 for _ in _derived_files(derived_dirs))} files checked (analytics snapshots, reports)",
        )
    )
    return places


def _derived_files(dirs: Sequence[Path]) -> list[Path]:
    return [p for d in dirs if d.is_dir() for p in sorted(d.rglob("*")) if p.is_file()]


def _mentions(path: Path, needle: bytes) -> bool:
    """Whether the file holds ``needle`` (read in chunks, overlapping by the needle's length)."""
    tail = b""
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            if needle in tail + chunk:
                return True
            tail = chunk[-len(needle) :]
    return False


def _derived_mentions(user_id: str, dirs: Sequence[Path]) -> list[Path]:
    needle = user_id.encode()
    return [p for p in _derived_files(dirs) if _mentions(p, needle)]


def _erase_derived(user_id: str, dirs: Sequence[Path]) -> int:
    """Delete each snapshot or report (the top-level entry under a derived dir) that mentions the user."""
    gone = 0
    for path in _derived_mentions(user_id, dirs):
        for d in dirs:
            if d in path.parents:
                top = d / path.relative_to(d).parts[0]
                if top.is_dir():
                    shutil.rmtree(top, ignore_errors=True)
                elif top.exists():
                    top.unlink()
                gone += 1
                break
    return gone


def derived_dirs(var_dir: Path) -> list[Path]:
    """Where rebuildable copies of shopper data live under ``var_dir``."""
    return [var_dir / "cache", var_dir / "dashboard"]
