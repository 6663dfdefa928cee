"""The search index a serving process answers from: the active search index version of the store's
catalogue (``registry/indexes.py``), built now when there is none or the catalogue changed."""

from __future__ import annotations

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
