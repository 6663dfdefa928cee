"""Items written through one worker reach every worker: applied here at once, logged in the
registry's catalogue log (``signals.CatalogueLog``) and followed by the others at their watcher's
next tick. The latest line of an item decides."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from shelfwise.core.logging import get_logger
from shelfwise.data.schemas import Item
from shelfwise.registry.versions import RegistryError
from shelfwise.search.engine import SearchEngine
from shelfwise.serving.deployment import LiveModels
from shelfwise.serving.metrics import Metrics
from shelfwise.serving.recommending import Recommending
from shelfwise.serving.signals import CatalogueLog
from shelfwise.store import Store

log = get_logger(__name__)

Apply = Callable[[Sequence[Item], Sequence[str]], None]


def apply_items(
    items: Sequence[Item],
    removed: Sequence[str] = (),
    *,
    search: SearchEngine | None,
    search_lock: threading.RLock,
    live: LiveModels,
    recommending: Recommending,
    building: Any = None,
) -> None:
    """Items as the store now holds them, into this process's search index and models (each
    searchable, and recommendable while available); ``removed`` ids are taken out of search.
    Cached answers are superseded. ``building``: a search index built in the background
    (``HybridBuild``), told the writes so it applies them before it serves."""
    gone = set(removed)
    with search_lock:
        if building is not None and building.running:
            building.note([it for it in items if it.item_id not in gone], list(gone))
        if search is not None:
            search.upsert([it for it in items if it.item_id not in gone])
            search.remove(gone)
    models = live.loaded_models()
    for available in (True, False):
        ids = [it.item_id for it in items if it.available is available]
        for model in models if ids else ():
            model.set_availability(ids, available)
    recommending.catalogue_changed()


class CatalogueFollower:
    """This process's place in the catalogue log, and the lines it wrote itself (already applied)."""

    def __init__(
        self, log_: CatalogueLog, *, store: Store, apply: Apply, metrics: Metrics, offset: int | None = None
    ) -> None:
        self.log = log_
        self.store = store
        self.apply = apply
        self.metrics = metrics
        self.offset = log_.offset() if offset is None else offset  # how far this process has followed it
        self.own_lines: set[int] = set()  # lines it wrote (already applied)

    def note(self, items: Sequence[Item], *, removed: Sequence[str] = ()) -> str | None:
        """Items written through this process: applied here, and logged for the other workers. The
        store already holds them, so a catalogue log that cannot be written is not an error of the
        request: it is logged, counted and returned as a warning (None when every worker was told)."""
        self.apply(items, removed)
        gone = set(removed)
        kept = [it.item_id for it in items if it.item_id not in gone]
        try:
            self.own_lines.update(self.log.note_items(kept))
            self.own_lines.update(self.log.note_items(list(gone), removed=True))
        except (OSError, RegistryError) as exc:
            self.metrics.catalogue_log_failures.inc()
            log.error(
                "catalogue log not written: other workers miss these items", items=len(items), error=repr(exc)
            )
            return (
                "stored, and applied by this worker; other workers were not told (the registry's catalogue "
                "log could not be written) and see the change when they restart"
            )
        return None

    def follow(self) -> None:
        """Apply items written through other workers (lines of the log that this process did not
        write); the latest line of an item decides."""
        changes, self.offset = self.log.changed_since(self.offset)
        latest: dict[str, bool] = {}
        for start, item_id, removed in changes:
            if start in self.own_lines:
                self.own_lines.discard(start)
            else:
                latest[item_id] = removed
        if latest:
            found = self.store.get_items(set(latest))
            self.apply(list(found.values()), [i for i, gone in latest.items() if gone])
