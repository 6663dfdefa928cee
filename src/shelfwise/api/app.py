"""The FastAPI application factory.

    app = create_app(settings, "sqlite:///var/shelfwise.db")
    uvicorn.run(app, port=8000)

The app serves whatever the registry's active version is (it never trains: ``shelfwise serve``
does that on first start), the store's catalogue as a search index, and per-shopper state in
the process or in Redis. ``shelfwise.web`` can add pages: if it defines ``mount(app, services)``,
that is called with this app and its ``Services``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from shelfwise.api.group_commit import GroupCommitter
from shelfwise.api.metrics import Metrics
from shelfwise.api.openapi import invalid as invalid_body
from shelfwise.api.recommending import Recommending
from shelfwise.api.security import ClientAddress, Guard, Identify, TokenBucket
from shelfwise.api.state import ResultCache, SessionStore, make_state
from shelfwise.core.access import KeyRing, ShopperTokens, create_secret_file, fixed_roles
from shelfwise.core.clock import now_ms
from shelfwise.core.errors import ConfigError, ShelfwiseError, StoreError
from shelfwise.core.logging import get_logger
from shelfwise.core.settings import Settings
from shelfwise.data.privacy import Pseudonymizer
from shelfwise.data.quality import EventGate, GateConfig
from shelfwise.data.schemas import Item
from shelfwise.registry.serving import LiveModels
from shelfwise.registry.versions import CorruptArtifactError, GateRefusedError, ModelRegistry, RegistryError
from shelfwise.store import Store, open_store
from shelfwise.store.journal import EventJournal, store_unavailable

log = get_logger(__name__)


class LRUDict(OrderedDict[str, Any]):
    """A small bounded mapping (search affinities per shopper)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size
        self.lock = threading.Lock()

    def put(self, key: str, value: Any) -> None:
        with self.lock:
            self[key] = value
            self.move_to_end(key)
            while len(self) > self.size:
                self.popitem(last=False)


@dataclass
class Services:
    """Everything the routes use; one per app."""

    settings: Settings
    store: Store
    registry: ModelRegistry
    live: LiveModels
    sessions: SessionStore
    cache: ResultCache
    recommending: Recommending
    metrics: Metrics
    keys: KeyRing  # API keys with roles: var/keys.json and the fixed admin keys
    tokens: ShopperTokens  # tokens scoped to one shopper (POST /v1/tokens)
    pseudonymize: Pseudonymizer
    event_gate: EventGate
    event_writer: GroupCommitter
    search: Any = None  # shelfwise.search.engine.SearchEngine
    search_version: str = "none"
    search_lock: threading.RLock = field(default_factory=threading.RLock)
    affinities: LRUDict = field(default_factory=lambda: LRUDict(10_000))
    journal: EventJournal | None = None  # events taken while the store is down, replayed later
    catalogue_offset: int = 0  # how far this process has followed the registry's catalogue log
    own_catalogue_lines: set[int] = field(default_factory=set)  # lines it wrote (already applied)
    # pseudonyms of erased shoppers (the store's tombstones, reloaded when any worker erases someone):
    # their events are refused at the door, before they reach sessions and caches
    erased: set[str] = field(default_factory=set)

    def close(self) -> None:
        self.live.stop()
        if self.journal is not None:
            self.journal.stop()
        self.recommending.close()
        self.store.close()


def build_search(store: Store, settings: Settings | None = None) -> tuple[Any, str]:
    """The search index over the store's catalogue, in the mode the settings serve.

    ``bm25``: keyword only (no model to load). ``hybrid``: keyword + the sentence-embedding index +
    adaptive fusion, as ``search-eval --mode hybrid`` measures it; item vectors come from an
    on-disk cache keyed by each item's embedding text, so a restart embeds only new or changed items."""
    from shelfwise.search.engine import SearchConfig, SearchEngine

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


def _api_key_hashes(settings: Settings) -> list[str]:
    """Configured admin hashes, or the hash of the admin key created once in ``var_dir/api.key``
    (race-free: two processes starting at once end up with one key)."""
    if settings.api_key_hashes:
        return list(settings.api_key_hashes)
    import secrets

    from shelfwise.core.access import hash_key

    path = settings.var_dir / "api.key"
    existed = path.exists()
    key = create_secret_file(path, lambda: secrets.token_urlsafe(32))
    if not existed:
        log.warning("created an admin API key", path=str(path))
    return [hash_key(key)]


def key_ring(settings: Settings) -> KeyRing:
    """The API keys a server accepts: ``keys.json`` under the access directory (``shelfwise keys``)
    and the fixed admin keys (settings, or ``var_dir/api.key``)."""
    return KeyRing(settings.access_root / "keys.json", fixed=fixed_roles(_api_key_hashes(settings)))


def shopper_tokens(settings: Settings) -> ShopperTokens:
    return ShopperTokens.from_dir(settings.access_root, ttl_s=settings.shopper_token_ttl_seconds)


def build_services(
    settings: Settings,
    store_url: str | None = None,
    *,
    registry_root: Path | None = None,
    sessions: SessionStore | None = None,
    cache: ResultCache | None = None,
    watch_interval: float | None = 0.5,
) -> Services:
    store = open_store(
        store_url or settings.store_url,
        connect_timeout=settings.store_connect_timeout_seconds,
        statement_timeout_ms=settings.store_statement_timeout_ms,
    )
    registry = ModelRegistry(registry_root or settings.models_root)
    live = LiveModels(
        registry,
        precompute_users=settings.precompute_users,
        precompute_k=settings.precompute_k,
        store_id=store.store_id,  # a version trained on another store is refused, with the reason
    )
    try:
        live.sync(force=True)
    except RegistryError as exc:  # a corrupt active version: serve nothing rather than a broken model
        log.error("active model version not loaded", error=str(exc))
    if watch_interval:
        live.start_watching(watch_interval)
    if sessions is None or cache is None:
        try:
            made = make_state(
                redis_url=settings.redis_url,
                prefix=settings.redis_prefix,
                session_items=settings.session_items,
                session_ttl=settings.session_ttl_seconds,
                cache_size=settings.cache_size,
                cache_ttl=settings.cache_ttl_seconds,
            )
        except Exception as exc:
            raise ConfigError(f"cannot reach Redis at {settings.redis_url}: {exc}") from exc
        sessions = sessions or made[0]
        cache = cache or made[1]
    metrics = Metrics()
    key = settings.resolved_pseudonym_key()
    gate = EventGate(
        GateConfig(
            source="api",
            shop_start=settings.shop_start,
            now_ms=now_ms(),
            future_tolerance_ms=settings.future_tolerance_seconds * 1000,
            max_text=settings.max_text_length,
        ),
        Pseudonymizer(key, cache_size=settings.pseudonym_cache_size),
    )
    services = Services(
        settings=settings,
        store=store,
        registry=registry,
        live=live,
        sessions=sessions,
        cache=cache,
        recommending=Recommending(
            sessions=sessions, cache=cache, metrics=metrics, timeout=settings.model_timeout_ms / 1000
        ),
        metrics=metrics,
        keys=key_ring(settings),
        tokens=shopper_tokens(settings),
        pseudonymize=Pseudonymizer(key, cache_size=settings.pseudonym_cache_size),
        event_gate=gate,
        event_writer=GroupCommitter(store),
    )
    services.erased = set(store.erased_since(0))
    live.on_erasure.append(lambda: _after_erasure_elsewhere(services))
    services.catalogue_offset = registry.catalogue_offset()
    services.search, services.search_version = build_search(store, settings)
    live.on_tick.append(lambda: follow_catalogue(services))
    services.journal = _journal(settings, store, metrics)
    _model_age_metric(services)
    return services


def apply_items(svc: Services, items: Sequence[Item], *, removed: Sequence[str] = ()) -> None:
    """Items as the store now holds them, into this process's search index and models (each
    searchable, and recommendable while available); ``removed`` ids are taken out of search.
    Cached answers are superseded."""
    gone = set(removed)
    with svc.search_lock:
        if svc.search is not None:
            svc.search.upsert([it for it in items if it.item_id not in gone])
            svc.search.remove(gone)
    models = svc.live.loaded_models()
    for available in (True, False):
        ids = [it.item_id for it in items if it.available is available]
        for model in models if ids else ():
            model.set_availability(ids, available)
    svc.recommending.catalogue_changed()


def note_items(svc: Services, items: Sequence[Item], *, removed: Sequence[str] = ()) -> str | None:
    """Items written through this process: applied here, and logged for the other workers. The
    store already holds them, so a catalogue log that cannot be written is not an error of the
    request: it is logged, counted and returned as a warning (None when every worker was told)."""
    apply_items(svc, items, removed=removed)
    gone = set(removed)
    kept = [it.item_id for it in items if it.item_id not in gone]
    try:
        svc.own_catalogue_lines.update(svc.registry.note_items(kept))
        svc.own_catalogue_lines.update(svc.registry.note_items(list(gone), removed=True))
    except (OSError, RegistryError) as exc:
        svc.metrics.catalogue_log_failures.inc()
        log.error(
            "catalogue log not written: other workers miss these items", items=len(items), error=repr(exc)
        )
        return (
            "stored, and applied by this worker; other workers were not told (the registry's catalogue "
            "log could not be written) and see the change when they restart"
        )
    return None


def follow_catalogue(svc: Services) -> None:
    """Apply items written through other workers (lines of the registry's catalogue log that this
    process did not write); the latest line of an item decides."""
    changes, svc.catalogue_offset = svc.registry.items_changed(svc.catalogue_offset)
    latest: dict[str, bool] = {}
    for start, item_id, removed in changes:
        if start in svc.own_catalogue_lines:
            svc.own_catalogue_lines.discard(start)
        else:
            latest[item_id] = removed
    if latest:
        found = svc.store.get_items(set(latest))
        apply_items(svc, list(found.values()), removed=[i for i, gone in latest.items() if gone])


def _after_erasure_elsewhere(svc: Services) -> None:
    """Someone was erased, perhaps by another worker: this process cannot tell who, so it drops
    what it holds that is cheap to rebuild (search affinities, results cached in memory) and the
    in-memory sessions of shoppers who no longer have events in the store."""
    from shelfwise.api.state import local_parts
    from shelfwise.store.erasure import users_with_events

    svc.erased = set(svc.store.erased_since(0))
    with svc.affinities.lock:
        svc.affinities.clear()
    sessions, cache = local_parts(svc.sessions, svc.cache)
    if cache is not None:
        cache.clear()
    if sessions is not None:
        held = sessions.users()
        present = users_with_events(svc.store, held)
        for user in held:
            if user not in present:
                sessions.forget(user)


def _journal(settings: Settings, store: Store, metrics: Metrics) -> EventJournal:
    """The event journal under ``var_dir/journal`` (one per replica: give each its own var_dir),
    replayed in the background, its backlog exported as ``shelfwise_event_journal_backlog``."""
    from prometheus_client import Counter, Gauge

    journal = EventJournal(settings.var_dir / "journal")
    failures = Counter(
        "shelfwise_event_journal_replay_failures",
        "journal replays that failed (the store still down, or a bug: see the log)",
        registry=metrics.registry,
    )
    Gauge(
        "shelfwise_event_journal_backlog",
        "acknowledged events in the local journal, not yet in the store",
        registry=metrics.registry,
    ).set_function(lambda: journal.backlog)
    Gauge(
        "shelfwise_event_journal_replayed",
        "events replayed from the journal into the store since start",
        registry=metrics.registry,
    ).set_function(lambda: journal.replayed_total)
    journal.start_replaying(store, on_error=lambda _exc: failures.inc())
    return journal


def _model_age_metric(services: Services) -> None:
    """``shelfwise_model_trained_timestamp_seconds``: when the active version was made (for the
    model-staleness alert in deploy/prometheus/alerts.yml)."""
    from datetime import datetime

    from prometheus_client import Gauge

    def created() -> float:
        dep = services.live.current
        try:
            return datetime.fromisoformat(dep.active.info.created_at).timestamp() if dep else 0.0
        except (TypeError, ValueError):
            return 0.0

    Gauge(
        "shelfwise_model_trained_timestamp_seconds",
        "when the active model version was registered (unix seconds)",
        registry=services.metrics.registry,
    ).set_function(created)


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors():
            loc = [str(p) for p in err.get("loc", ())]
            problems.append(
                {"field": ".".join(loc), "message": err.get("msg", ""), "type": err.get("type", "")}
            )
        return JSONResponse(status_code=422, content={"error": "invalid_request", "detail": problems})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.detail == "There was an error parsing the body":
            # a body that is not JSON at all (FastAPI's 400): a 422 naming the body, as documented
            return JSONResponse(
                status_code=422, content=invalid_body("body", "the body is not valid JSON", "json_invalid")
            )
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:  # every method of the path, not only those of the first route
            headers["Allow"] = ", ".join(_methods_of(request))
        content = (
            exc.detail if isinstance(exc.detail, dict) else {"error": "http_error", "detail": exc.detail}
        )
        return JSONResponse(status_code=exc.status_code, content=content, headers=headers or None)

    @app.exception_handler(SQLAlchemyError)
    async def store_error(_request: Request, exc: SQLAlchemyError) -> JSONResponse:
        if not store_unavailable(exc):
            raise exc  # a bug, not an outage: a 500 with the traceback in the log
        return store_unavailable_answer()

    @app.exception_handler(ShelfwiseError)
    async def shelfwise_error(_request: Request, exc: ShelfwiseError) -> JSONResponse:
        if isinstance(exc, StoreError):
            return store_unavailable_answer()
        status = 400
        if isinstance(exc, GateRefusedError | CorruptArtifactError):
            status = 409
        elif isinstance(exc, RegistryError) and "unknown model version" in exc.message:
            status = 404
        elif isinstance(exc, RegistryError):
            status = 409
        return JSONResponse(
            status_code=status, content={"error": type(exc).__name__, "detail": exc.message, "hint": exc.hint}
        )


def _methods_of(request: Request) -> list[str]:
    """The methods the OpenAPI document lists for the request's path (HEAD, which Starlette adds to
    every GET, is not documented, so not listed)."""
    path = request.url.path
    methods: set[str] = set()
    todo = list(request.app.router.routes)
    while todo:
        route = todo.pop()
        inner = getattr(route, "original_router", None)  # a router included with include_router
        if inner is not None:
            todo.extend(inner.routes)
        elif getattr(route, "methods", None) and route.path_regex.match(path):
            methods.update(route.methods)
    return sorted(methods - {"HEAD"})


RETRY_AFTER_S = 5


def store_unavailable_answer() -> JSONResponse:
    """503 for a request that needs the store while it does not answer (down, hung, timed out)."""
    return JSONResponse(
        status_code=503,
        content={
            "error": "store_unavailable",
            "detail": "the store did not answer in time",
            "hint": f"retry in {RETRY_AFTER_S} seconds",
        },
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def create_app(
    settings: Settings,
    store_url: str | None = None,
    *,
    registry_root: Path | None = None,
    sessions: SessionStore | None = None,
    cache: ResultCache | None = None,
    watch_interval: float | None = 0.5,
    extensions: Sequence[Callable[[FastAPI, Services], None]] = (),
) -> FastAPI:
    """The service over the store at ``store_url`` and the registry under ``registry_root``."""
    from shelfwise.api import openapi, routes, routes_access, routes_popular

    services = build_services(
        settings,
        store_url,
        registry_root=registry_root,
        sessions=sessions,
        cache=cache,
        watch_interval=watch_interval,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> Iterator[None]:  # type: ignore[misc]
        yield
        for close in getattr(_app.state, "closers", []):  # the pages' dashboard builder, …
            close()
        services.close()

    app = FastAPI(
        title="shelfwise",
        version="1",
        summary="Search, recommendations and events for an online shop.",
        lifespan=lifespan,
    )
    app.state.services = services
    _error_handlers(app)
    openapi.install(app)
    app.include_router(routes.router)
    app.include_router(routes_access.router)
    app.include_router(routes_popular.router)
    from shelfwise import web

    mount = getattr(web, "mount", None)
    for extend in [*([mount] if mount else []), *extensions]:
        extend(app, services)
    app.add_middleware(
        Guard,
        limiter=TokenBucket(settings.rate_limit_per_second, settings.rate_limit_burst),
        max_bytes=settings.max_request_bytes,
        identify=Identify(services.keys, services.tokens),
        address=ClientAddress(settings.trusted_proxies),
        observe=services.metrics.observe_request,
    )
    return app


def app_from_env() -> FastAPI:
    """For ``uvicorn --factory shelfwise.api.app:app_from_env`` (several workers): settings from the
    environment (``SHELFWISE_DB_URL``, ``SHELFWISE_VAR_DIR``…)."""
    from shelfwise.core.settings import get_settings

    settings = get_settings()
    return create_app(settings, settings.store_url)
