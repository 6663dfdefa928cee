"""The search index a serving process answers from: built over the store's catalogue."""

from __future__ import annotations

from shelfwise.core.clock import now_ms
from shelfwise.core.logging import get_logger
from shelfwise.core.settings import Settings
from shelfwise.search.engine import SearchConfig, SearchEngine
from shelfwise.store import Store

log = get_logger(__name__)


def build_search(store: Store, settings: Settings | None = None) -> tuple[SearchEngine, str]:
    """The search index over the store's catalogue, in the mode the settings serve, and its version.

    ``bm25``: keyword only (no model to load). ``hybrid``: keyword + the sentence-embedding index +
    adaptive fusion, as ``search-eval --mode hybrid`` measures it; item vectors come from an
    on-disk cache keyed by each item's embedding text, so a restart embeds only new or changed items."""
    mode = settings.search_mode if settings is not None else "bm25"
    items = list(store.get_items(store.item_ids()).values())
    if mode == "hybrid" and settings is not None:
        from shelfwise.search.dense import DIM, Encoder
        from shelfwise.search.documents import embedding_text
        from shelfwise.search.embedding_cache import EmbeddingCache

        encoder = Encoder()
        cache = EmbeddingCache(settings.var_dir / "embeddings", f"all-MiniLM-L6-v2/{DIM}")
        vectors = cache.vectors([embedding_text(it) for it in items], encoder.encode) if items else None
        log.info("search embeddings", items=len(items), embedded=cache.misses, cached=cache.hits)
        engine = SearchEngine.build(items, SearchConfig(), encoder=encoder, vectors=vectors)
    else:
        engine = SearchEngine.build(items, SearchConfig(dense=False))
    if items:
        # compile the scoring kernels (and trace the query encoder) now, not while a shopper waits
        engine.search("warm up", k=1, mode=mode)
    return engine, f"search-{mode}-{now_ms()}-{len(items)}"
