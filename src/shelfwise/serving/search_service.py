"""The search index a serving process answers from: the active search index version of the store's
catalogue (``registry/indexes.py``), built now when there is none or the catalogue changed; a
hybrid one that would embed many items is built in the background while keyword search answers."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence

from shelfwise.core.logging import get_logger
from shelfwise.core.settings import Settings
from shelfwise.data.schemas import Item
from shelfwise.registry.indexes import IndexInfo, IndexRegistry, current_index, ensure_index, wanted_mode
from shelfwise.registry.versions import CorruptArtifactError
from shelfwise.search.engine import SearchConfig, SearchEngine
from shelfwise.store import Store

log = get_logger(__name__)


def index_registry(settings: Settings) -> IndexRegistry:
    return IndexRegistry(settings.var_dir / "indexes", shard_engine=settings.shard_engine)


DENSE_BYTES_PER_ITEM = 384 * 4 * 4  # the cache's table, its saved copy, the engine's matrix, a build copy


def build_search(store: Store, settings: Settings) -> tuple[SearchEngine, IndexInfo, HybridBuild | None]:
    """The engine of the active index version over the store's catalogue, that version, and the
    background build of the hybrid version when one is under way (None otherwise).

    The version is reused while it was built from this catalogue (in ``settings.search_mode``
    unless that is ``auto``); otherwise a new one is built, registered and activated: its item
    vectors come from an on-disk cache keyed by each item's embedding text, so only new or changed
    items are embedded. Several workers starting at once build one version (the registry's build
    lock), the others load it.

    A start never waits for embeddings: when a hybrid version would embed more than
    ``settings.search_embed_on_start`` items, a keyword version of the same catalogue answers now
    (registered, not activated) and ``HybridBuild`` embeds the rest in a background thread, then
    activates the hybrid version and swaps it in. When the vectors would not fit in memory the
    keyword version is activated and kept (the log says why)."""
    registry = index_registry(settings)
    total = store.item_count()
    if total > settings.search_index_on_start:
        engine, info = _first_items(store, settings, registry, total)
        mode = wanted_mode(registry, settings.search_mode)
        pending: HybridBuild | None = HybridBuild(
            settings,
            registry,
            store.all_items,  # read in the background thread: 1M items take minutes
            store_id=store.store_id,
            keyword=True,
            activate_keyword=mode == "bm25",
            hybrid=mode in ("hybrid", "ltr"),
            total=total,
        )
        built = True
    else:
        engine, info, built, pending = _whole_catalogue(store, settings, registry)
    log.info(
        "search index",
        version=info.version,
        mode=info.mode,
        items=info.items,
        built=built,
        embedded=info.embedded if built else 0,
        hybrid_in_background=pending is not None,
    )
    if total:
        # compile the scoring kernels (and trace the query encoder) now, not while a shopper waits
        engine.search("warm up", k=1, mode=info.mode)
    return engine, info, pending


def _first_items(
    store: Store, settings: Settings, registry: IndexRegistry, total: int
) -> tuple[SearchEngine, IndexInfo]:
    """A big catalogue (more than ``search_index_on_start`` items): its first available items
    answer now; the whole catalogue is read, and its registered version loaded or a new one built,
    in the background (``HybridBuild``), so a start never waits for a 1M-item read."""
    first = store.first_items(settings.search_index_on_start)
    engine = SearchEngine.build(first, SearchConfig(dense=False))
    info = IndexInfo(
        version=f"starting-{len(first)}-of-{total}",
        mode="bm25",
        items=len(first),
        catalogue="",
        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        metrics={},
        gate={},
        embedded=0,
        files={},
        store_id=store.store_id,
        path=registry.root,
    )
    return engine, info


def _whole_catalogue(
    store: Store, settings: Settings, registry: IndexRegistry
) -> tuple[SearchEngine, IndexInfo, bool, HybridBuild | None]:
    items = list(store.get_items(store.item_ids()).values())
    pending: HybridBuild | None = None
    with registry.building():
        mode = wanted_mode(registry, settings.search_mode)
        stand_in = None
        if mode in ("hybrid", "ltr") and items and current_index(registry, items, mode) is None:
            stand_in = _keyword_first(items, settings)
        if stand_in is None:
            engine, info, built = ensure_index(
                registry,
                items,
                mode=settings.search_mode,
                embeddings=settings.var_dir / "embeddings",
                store_id=store.store_id,
            )
        else:
            activate = stand_in == "memory"
            engine, info, built = ensure_index(
                registry, items, mode="bm25", store_id=store.store_id, activate=activate
            )
            if not activate:
                pending = HybridBuild(settings, registry, items, store_id=store.store_id)
    return engine, info, built, pending


def _keyword_first(items: list[Item], settings: Settings) -> str | None:
    """Why a keyword version answers first instead of building the hybrid one now: ``memory`` (the
    vectors would not fit: keyword search is kept), ``background`` (too many items to embed before
    listening) or None (build the hybrid version now)."""
    from shelfwise.core.memory import format_bytes, memory_budget
    from shelfwise.search.dense import DIM
    from shelfwise.search.documents import embedding_text
    from shelfwise.search.embedding_cache import EmbeddingCache

    need = len(items) * DENSE_BYTES_PER_ITEM
    budget = memory_budget()
    if need > budget:
        log.warning(
            "search stays keyword-only: the item vectors would not fit in memory",
            items=len(items),
            need=format_bytes(need),
            budget=format_bytes(budget),
            hint="raise SHELFWISE_MEMORY_LIMIT, or build one with `shelfwise index build --mode hybrid`",
        )
        return "memory"
    cache = EmbeddingCache(settings.var_dir / "embeddings", f"all-MiniLM-L6-v2/{DIM}")
    missing = cache.missing([embedding_text(it) for it in items])
    return "background" if missing > settings.search_embed_on_start else None


class HybridBuild:
    """Embeds the catalogue in a background thread (at a lower CPU priority than the requests),
    then builds and activates the hybrid version and hands it to ``swap``. Meanwhile the keyword
    version answers, and each search answer says the hybrid one is on its way (``status``).
    Items written meanwhile are noted (``note``) and applied to the new engine before it serves."""

    def __init__(
        self,
        settings: Settings,
        registry: IndexRegistry,
        items: list[Item] | Callable[[], list[Item]],
        *,
        store_id: str,
        keyword: bool = False,
        activate_keyword: bool = False,
        hybrid: bool = True,
        total: int | None = None,
    ) -> None:
        # ``items`` may be a loader (a big catalogue's, read in the thread): then the thread also
        # loads the version registered for that catalogue instead of building one, and decides
        # whether a hybrid version is wanted (``_resolve``)
        self.load = items if callable(items) else None
        self.items: list[Item] = [] if callable(items) else items
        self.settings, self.registry, self.store_id = settings, registry, store_id
        # keyword: first the whole catalogue's keyword version (activated when it is the one
        # wanted), served as soon as it is built; hybrid: then the hybrid version
        self.keyword, self.activate_keyword, self.hybrid = keyword, activate_keyword, hybrid
        self.total, self.embedded = (len(self.items) if total is None else total), 0
        self.state = "waiting"  # waiting, indexing, embedding, building, done, failed, stopped
        self.error: str | None = None
        self._changed: dict[str, Item] = {}
        self._removed: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.swap: Callable[[SearchEngine, IndexInfo, Callable[[SearchEngine], None]], None] | None = None

    def start(self, swap: Callable[[SearchEngine, IndexInfo, Callable[[SearchEngine], None]], None]) -> None:
        """Run in the background; ``swap(engine, info, catch_up)`` serves the built version (under
        the search lock it calls ``catch_up(engine)`` first, which applies the noted item writes)."""
        self.swap = swap
        self._thread = threading.Thread(target=self._run, name="shelfwise-hybrid-index", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> bool:
        if self._thread is not None:
            self._thread.join(timeout)
        return self.state in ("done", "failed", "stopped")

    @property
    def running(self) -> bool:
        return self.state in ("waiting", "indexing", "embedding", "building")

    def status(self) -> str:
        """One sentence for a search answer served meanwhile."""
        if self.state in ("waiting", "indexing") and self.keyword:
            return (
                f"searching part of the catalogue for now: the full index of {self.total:,} items "
                "is being built"
            )
        if self.state == "embedding":
            return (
                f"keyword search only for now: the meaning index is being built "
                f"({self.embedded:,} of {self.total:,} items embedded)"
            )
        return "keyword search only for now: the meaning index is being built"

    def note(self, items: Sequence[Item], removed: Sequence[str] = ()) -> None:
        """Item writes applied to the served (keyword) engine while this one is built."""
        with self._lock:
            for it in items:
                self._changed[it.item_id] = it
                self._removed.discard(it.item_id)
            for item_id in removed:
                self._changed.pop(item_id, None)
                self._removed.add(item_id)

    def _catch_up(self, engine: SearchEngine) -> None:
        with self._lock:  # kept: every engine this build serves gets them
            changed, removed = list(self._changed.values()), set(self._removed)
        if changed:
            engine.upsert(changed)
        if removed:
            engine.remove(removed)

    def _run(self) -> None:
        import contextlib
        import os

        with contextlib.suppress(OSError, AttributeError):  # Linux: a thread's own nice value
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        started = time.monotonic()
        try:
            from shelfwise.search.dense import DIM, Encoder
            from shelfwise.search.documents import embedding_text
            from shelfwise.search.embedding_cache import EmbeddingCache

            if self.load is not None and self._resolve():
                return
            if self.keyword:
                self.state = "indexing"
                with self.registry.building():
                    engine, info, _ = ensure_index(
                        self.registry,
                        self.items,
                        mode="bm25",
                        store_id=self.store_id,
                        activate=self.activate_keyword,
                    )
                engine.search("warm up", k=1, mode=info.mode)
                assert self.swap is not None
                self.swap(engine, info, self._catch_up)
                log.info("full keyword index serving", version=info.version, items=info.items)
                if not self.hybrid or self._stop.is_set():
                    self.items = []
                    self.state = "done" if not self._stop.is_set() else "stopped"
                    return
            encoder = Encoder()
            cache = EmbeddingCache(self.settings.var_dir / "embeddings", f"all-MiniLM-L6-v2/{DIM}")
            self.state = "embedding"

            def done(n: int, _total: int) -> None:
                self.embedded = self.total - missing + n

            texts = [embedding_text(it) for it in self.items]
            missing = cache.missing(texts)
            self.embedded = self.total - missing
            cache.fill(
                texts,
                encoder.encode,
                progress=done,
                stop=self._stop.is_set,
            )
            if self._stop.is_set():
                self.state = "stopped"
                return
            self.state = "building"
            with self.registry.building():
                engine, info, _ = ensure_index(
                    self.registry,
                    self.items,
                    mode="hybrid",
                    embeddings=self.settings.var_dir / "embeddings",
                    encoder=encoder,
                    store_id=self.store_id,
                )
            if self._stop.is_set():
                self.state = "stopped"
                return
            engine.search("warm up", k=1, mode=info.mode)
            assert self.swap is not None
            self.swap(engine, info, self._catch_up)
            self.items = []
            self.state = "done"
            log.info(
                "hybrid search index serving",
                version=info.version,
                items=info.items,
                seconds=round(time.monotonic() - started, 1),
            )
        except Exception as exc:  # keyword search keeps answering; the next start tries again
            self.state, self.error = "failed", repr(exc)
            log.error("hybrid search index not built; keyword search goes on", error=repr(exc))

    def _resolve(self) -> bool:
        """Read the catalogue; serve its active version when it was built from this catalogue in the
        wanted mode (True: nothing left to build), else settle what to build as ``build_search``
        would have (a damaged version is rebuilt, never served)."""
        assert self.load is not None
        self.state = "indexing"
        self.items = self.load()
        self.total = len(self.items)
        mode = wanted_mode(self.registry, self.settings.search_mode)
        info = current_index(self.registry, self.items, mode)
        engine = None
        if info is not None and info.version == self.registry.active:
            with contextlib.suppress(CorruptArtifactError):
                engine = self.registry.load(info.version)
        if info is not None and engine is not None:
            engine.search("warm up", k=1, mode=info.mode)
            assert self.swap is not None
            self.swap(engine, info, self._catch_up)
            self.items, self.state = [], "done"
            log.info("registered search index serving", version=info.version, items=info.items)
            return True
        if mode in ("hybrid", "ltr"):
            stand_in = _keyword_first(self.items, self.settings)
            self.activate_keyword = stand_in == "memory"
            self.hybrid = stand_in != "memory"
        return False


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
