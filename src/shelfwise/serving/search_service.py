"""The search index a serving process answers from: the active search index version of the store's
catalogue (``registry/indexes.py``), built now when there is none or the catalogue changed."""

from __future__ import annotations

import threading
import time

from shelfwise.core.logging import get_logger
from shelfwise.core.settings import Settings
from shelfwise.registry.indexes import IndexInfo, IndexRegistry, ensure_index
from shelfwise.search.engine import SearchEngine
from shelfwise.store import Store

log = get_logger(__name__)


def index_registry(settings: Settings) -> IndexRegistry:
    return IndexRegistry(settings.var_dir / "indexes")


def build_search(store: Store, settings: Settings) -> tuple[SearchEngine, IndexInfo]:
    """The engine of the active index version over the store's catalogue, and that version.

    The version is reused while it was built from this catalogue (in ``settings.search_mode``
    unless that is ``auto``); otherwise a new one is built, registered and activated: its item
    vectors come from an on-disk cache keyed by each item's embedding text, so only new or changed
    items are embedded. Several workers starting at once build one version (the registry's build
    lock), the others load it."""
    items = list(store.get_items(store.item_ids()).values())
    registry = index_registry(settings)
    with registry.building():
        engine, info, built = ensure_index(
            registry,
            items,
            mode=settings.search_mode,
            embeddings=settings.var_dir / "embeddings",
            store_id=store.store_id,
        )
    log.info(
        "search index",
        version=info.version,
        mode=info.mode,
        items=info.items,
        built=built,
        embedded=info.embedded if built else 0,
    )
    if items:
        # compile the scoring kernels (and trace the query encoder) now, not while a shopper waits
        engine.search("warm up", k=1, mode=info.mode)
    return engine, info


class SearchArms:
    """Search index versions that experiment arms serve, loaded in the background on first use
    (meanwhile the arm's shoppers get the usual answer, without an arm label). Each answers from
    the catalogue as it was when the version was built: item writes reach only the served index."""

    def __init__(self, settings: Settings, *, retry_s: float = 60.0) -> None:
        self.settings, self.retry_s = settings, retry_s
        self._engines: dict[str, tuple[SearchEngine, IndexInfo, threading.Lock]] = {}
        self._tried: dict[str, float] = {}
        self._lock = threading.Lock()

    def engine(self, version: str) -> tuple[SearchEngine, IndexInfo, threading.Lock] | None:
        """The loaded version (its engine, info and a lock to search under), or None while it loads
        (or after it failed to, retried every ``retry_s``)."""
        found = self._engines.get(version)
        if found is not None:
            return found
        with self._lock:
            since = self._tried.get(version)
            if since is not None and time.monotonic() - since < self.retry_s:
                return None
            self._tried[version] = time.monotonic()
        threading.Thread(target=self._load, args=(version,), name="shelfwise-index-arm", daemon=True).start()
        return None

    def _load(self, version: str) -> None:
        try:
            registry = index_registry(self.settings)
            engine, info = registry.load(version), registry.index_info(version)
        except Exception as exc:
            log.error("experiment arm's search index cannot load", version=version, error=repr(exc))
            return
        with self._lock:
            self._engines[version] = (engine, info, threading.Lock())
            self._tried.pop(version, None)
        log.info("experiment arm's search index loaded", version=version, mode=info.mode)

    def wait(self, version: str, timeout: float = 60.0) -> bool:
        """Tests: load ``version`` now (or wait for it); whether it is ready."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.engine(version) is not None:
                return True
            time.sleep(0.05)
        return False
