"""Every service of the request path, built in one place.

    services = build_services(settings, "sqlite:///var/shelfwise.db")
    services.recommending.recommend(services.live.current, request)
    services.close()

The container serves whatever the registry's active version is (it never trains: ``shelfwise serve``
does that on first start), the store's catalogue as a search index, and per-shopper state in the
process or in Redis. ``shelfwise.api`` builds one per app and hands it to its routes; the pages
(``shelfwise.web``) get the same one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from redis import Redis

from shelfwise.core.access import KeyRing, ShopperTokens
from shelfwise.core.clock import now_ms
from shelfwise.core.errors import ConfigError
from shelfwise.core.logging import get_logger
from shelfwise.core.settings import Settings
from shelfwise.data.privacy import Pseudonymizer
from shelfwise.data.quality import EventGate, GateConfig
from shelfwise.merchandising.service import Merchandising
from shelfwise.registry.guardrail import CanaryConfig
from shelfwise.registry.indexes import IndexInfo
from shelfwise.registry.versions import ModelRegistry, RegistryError
from shelfwise.search.engine import SearchEngine
from shelfwise.search.personal import UserAffinity
from shelfwise.serving.attribution import Feedback
from shelfwise.serving.canary_guard import CanaryWatch
from shelfwise.serving.catalogue import CatalogueFollower, apply_items
from shelfwise.serving.deployment import LiveModels, settle_heap
from shelfwise.serving.event_writer import GroupCommitter, open_journal
from shelfwise.serving.exploring import Explorer
from shelfwise.serving.fold_in import FreshEvents
from shelfwise.serving.keys import key_ring, shopper_tokens
from shelfwise.serving.lru import LRUDict
from shelfwise.serving.metrics import Metrics
from shelfwise.serving.recommending import Recommending
from shelfwise.serving.search_service import HybridBuild, SearchArms, build_search
from shelfwise.serving.signals import CatalogueLog
from shelfwise.serving.state import ResultCache, SessionStore, local_parts, make_state
from shelfwise.store import Store, open_store
from shelfwise.store.journal import EventJournal
from shelfwise.trust.consent_sync import ConsentView
from shelfwise.trust.identity_sync import IdentityView

log = get_logger(__name__)


@dataclass
class Services:
    """Everything the routes and pages use; one per app (``build_services``)."""

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
    search: SearchEngine | None
    search_version: str  # the search index version answering (registry/indexes.py)
    catalogue: CatalogueFollower
    merch: Merchandising  # placements, their rules and the shop's search settings (store-backed)
    consent: ConsentView  # shoppers' consent flags, current across workers (Redis, else the store's stamp)
    feedback: Feedback  # answer ids, impressions, attribution, experiment routing
    explorer: Explorer  # the exploration slot of placements that opt in
    search_arms: SearchArms  # search index versions experiment arms serve
    canary: CanaryWatch  # rolls a canary back when its conversion drops
    journal: EventJournal | None = None  # events taken while the store is down, replayed later
    search_mode: str = "bm25"  # the mode of that version: bm25, hybrid or ltr
    search_build: HybridBuild | None = None  # the hybrid version being built in the background
    search_lock: threading.RLock = field(default_factory=threading.RLock)
    affinities: LRUDict[UserAffinity] = field(default_factory=lambda: LRUDict(10_000))
    # pseudonyms of erased shoppers (the store's tombstones, reloaded when any worker erases someone):
    # their events are refused at the door, before they reach sessions and caches
    erased: set[str] = field(default_factory=set)
    # stitched identities: an alias id (a shopper's other device) answers as its shopper
    identities: IdentityView | None = None

    def close(self) -> None:
        if self.search_build is not None:
            self.search_build.stop()
        self.live.stop()
        self.canary.stop()
        self.event_writer.close()  # its last commits hand their events to the feedback writer
        self.feedback.close()
        if self.journal is not None:
            self.journal.stop()
        self.recommending.close()
        self.store.close()


def build_services(
    settings: Settings,
    store_url: str | None = None,
    *,
    registry_root: Path | None = None,
    sessions: SessionStore | None = None,
    cache: ResultCache | None = None,
    watch_interval: float | None = 0.5,
) -> Services:
    """The services over the store at ``store_url`` and the registry under ``registry_root``
    (the settings' when not given); ``watch_interval``: how often to follow the registry (None:
    never, for tests that call ``live.sync`` themselves)."""
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
    recommending = Recommending(
        sessions=sessions,
        cache=cache,
        metrics=metrics,
        timeout=settings.model_timeout_ms / 1000,
        fresh=(
            FreshEvents(store, ttl=settings.fold_in_ttl_seconds, items=settings.session_items)
            if settings.fold_in_ttl_seconds > 0
            else None
        ),
    )
    live.busy = lambda: recommending.in_flight > 0  # the precompute waits for requests
    catalogue_log = CatalogueLog(registry)
    offset = catalogue_log.offset()  # before the index is built: nothing written meanwhile is missed
    search, index, hybrid = build_search(store, settings)
    feedback = Feedback(store, live, metrics, settings)
    # a poll of the store waits no longer than a request waits for it: then the value last read answers
    polls_wait = settings.store_request_timeout
    merch = Merchandising(store, refresh_seconds=settings.merch_refresh_seconds, wait_at_most=polls_wait)
    event_writer = GroupCommitter(store)
    event_writer.on_commit = feedback.committed
    services = Services(
        settings=settings,
        store=store,
        registry=registry,
        live=live,
        sessions=sessions,
        cache=cache,
        recommending=recommending,
        metrics=metrics,
        keys=key_ring(settings),
        tokens=shopper_tokens(settings),
        pseudonymize=Pseudonymizer(key, cache_size=settings.pseudonym_cache_size),
        event_gate=gate,
        event_writer=event_writer,
        search=search,
        search_version=index.version,
        search_mode=index.mode,
        catalogue=CatalogueFollower(
            catalogue_log,
            store=store,
            apply=lambda items, removed: apply_items(
                items,
                removed,
                search=services.search,
                search_lock=services.search_lock,
                live=services.live,
                recommending=services.recommending,
                building=services.search_build,
            ),
            metrics=metrics,
            offset=offset,
        ),
        merch=merch,
        consent=ConsentView(
            store,
            redis=_redis_client(settings.redis_url),
            prefix=settings.redis_prefix,
            wait_at_most=polls_wait,
        ),
        feedback=feedback,
        explorer=Explorer(merch, store),
        search_arms=SearchArms(settings),
        canary=CanaryWatch(
            store,
            live,
            reports=settings.var_dir / "reports",
            window_seconds=settings.canary_window_seconds,
            placement=settings.canary_placement,
            config=CanaryConfig(min_sessions=settings.canary_min_sessions),
        ),
    )
    if hybrid is not None:
        services.search_build = hybrid
        hybrid.start(lambda engine, info, catch_up: _serve_index(services, engine, info, catch_up))
    services.erased = set(store.erased_since(0))
    services.identities = IdentityView(store, wait_at_most=polls_wait)
    live.on_erasure.append(lambda: _after_erasure_elsewhere(services))
    live.on_tick.append(services.catalogue.follow)
    services.journal = open_journal(settings.var_dir, store, metrics)
    _model_age_metric(services)
    services.canary.start()
    _warm_up(services)
    return services


def _warm_up(services: Services) -> None:
    """Before the worker takes requests: the active version's precomputed lists (at most
    ``warm_before_serving_seconds``), then the heap settled (``settle_heap``), so neither the list
    build nor a full collection of the models just loaded lands on the first shoppers' requests."""
    wait = services.settings.warm_before_serving_seconds
    if wait > 0 and not services.live.wait_warm(wait):
        log.warning("serving before the precomputed lists are built", waited_seconds=wait)
    settle_heap()


def _serve_index(
    svc: Services, engine: SearchEngine, info: IndexInfo, catch_up: Callable[[SearchEngine], None]
) -> None:
    """The search index version built in the background takes over (item writes made meanwhile
    applied first), and cached answers are superseded."""
    with svc.search_lock:
        catch_up(engine)
        svc.search, svc.search_version, svc.search_mode = engine, info.version, info.mode
    svc.recommending.catalogue_changed()


def _after_erasure_elsewhere(svc: Services) -> None:
    """Someone was erased, perhaps by another worker: this process cannot tell who, so it drops
    what it holds that is cheap to rebuild (search affinities, results cached in memory) and the
    in-memory sessions of shoppers who no longer have events in the store."""
    from shelfwise.store.erasure import users_with_events

    svc.erased = set(svc.store.erased_since(0))
    with svc.affinities.lock:
        svc.affinities.clear()
    if svc.recommending.fresh is not None:
        svc.recommending.fresh.clear()
    sessions, cache = local_parts(svc.sessions, svc.cache)
    if cache is not None:
        cache.clear()
    if sessions is not None:
        held = sessions.users()
        present = users_with_events(svc.store, held)
        for user in held:
            if user not in present:
                sessions.forget(user)


def _model_age_metric(services: Services) -> None:
    """``shelfwise_model_trained_timestamp_seconds``: when the active version was made (for the
    model-staleness alert in deploy/prometheus/alerts.yml)."""
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


def _redis_client(url: str | None) -> Redis | None:
    """A client for the consent view's version counter (None: in-process only)."""
    from shelfwise.serving.state import redis_from_url

    return redis_from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0) if url else None
