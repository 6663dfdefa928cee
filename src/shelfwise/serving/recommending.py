"""Recommendations with a fallback chain: personalised → session → popular in category → popular.

Each model call runs with a deadline (``timeout``) in a small thread pool. A model that raises or is
late is counted (``shelfwise_model_errors``, ``shelfwise_recommend_fallbacks``) and the next stage
answers; the last two stages read plain arrays copied from the version at load time, so they
answer even when the model code is broken. Nothing here knows about HTTP.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from shelfwise.core.logging import get_logger
from shelfwise.features.dataset import NO_CODE
from shelfwise.recommend.base import Filters, Recommendation, Recommender
from shelfwise.registry.versions import LoadedVersion
from shelfwise.serving.deployment import Deployment, top_overlap
from shelfwise.serving.fold_in import FreshEvents
from shelfwise.serving.metrics import Metrics
from shelfwise.serving.state import ResultCache, SessionStore

T = TypeVar("T")
log = get_logger(__name__)
SCENARIOS = ("home", "product", "cart", "category", "store", "promotion")


class ModelTimeoutError(Exception):
    pass


@dataclass(frozen=True)
class Answer:
    """What a recommendation request gets: items with reasons, and how they were produced."""

    items: list[str]
    scores: list[float]
    reasons: list[str]
    source: str  # personalised | session | bought_together | similar | popular_category | popular
    model_version: str
    role: str = "active"
    skipped: list[dict[str, str]] = field(default_factory=list)
    placement: str | None = None  # whose merchandising rules shaped it (``serving.merchandised``)
    fallback: bool = False  # the rules would have emptied the list: shown without them
    notes: list[str] = field(default_factory=list)  # what the rules could not do, and why

    def to_dict(self) -> dict[str, Any]:
        return {
            "items": self.items,
            "scores": self.scores,
            "reasons": self.reasons,
            "source": self.source,
            "model_version": self.model_version,
            "role": self.role,
            "skipped": self.skipped,
            "placement": self.placement,
            "fallback": self.fallback,
            "notes": self.notes,
        }


class PopularIndex:
    """Popularity and item facts copied out of a version: the fallback that needs no model code."""

    def __init__(self, model: Recommender) -> None:
        st = model.state
        self.item_ids = st.item_map.external.copy()
        self.index = dict(st.item_map.index)
        self.popularity = np.asarray(st.popularity, np.float32).copy()
        a = st.attributes
        self.category, self.category_names = a.category.copy(), a.category_names.copy()
        self.brand, self.brand_names = a.brand.copy(), a.brand_names.copy()
        self.price = a.price.copy()
        self.available = a.available  # shared on purpose: item writes update availability in place
        top = float(self.popularity.max(initial=0.0))
        self.norm = self.popularity / top if top > 0 else self.popularity
        # the popularity order, sorted once: an answer walks it through the request's mask instead of
        # sorting every item per request (at 1M items that sort was a third of a similar-items answer)
        self.order = np.argsort(-self.norm, kind="stable")

    def category_of(self, item_id: str) -> str | None:
        i = self.index.get(item_id)
        if i is None or self.category[i] == NO_CODE:
            return None
        return str(self.category_names[self.category[i]])

    def mask(self, filters: Filters | None, exclude: Sequence[str] = ()) -> np.ndarray:
        m = self.available.copy()
        if filters is not None:
            if filters.categories is not None:
                codes = [
                    i for i, n in enumerate(self.category_names.tolist()) if n in set(filters.categories)
                ]
                m &= np.isin(self.category, codes) & (self.category != NO_CODE)
            if filters.brands is not None:
                codes = [i for i, n in enumerate(self.brand_names.tolist()) if n in set(filters.brands)]
                m &= np.isin(self.brand, codes) & (self.brand != NO_CODE)
            if filters.price_min is not None:
                m &= self.price >= filters.price_min
            if filters.price_max is not None:
                m &= self.price <= filters.price_max
            for item in filters.exclude_items or ():
                i = self.index.get(item)
                if i is not None:
                    m[i] = False
        for item in exclude:
            i = self.index.get(item)
            if i is not None:
                m[i] = False
        return m

    def top(
        self,
        k: int,
        *,
        filters: Filters | None = None,
        exclude: Sequence[str] = (),
        reason: str = "popular overall",
    ) -> Recommendation:
        keep = self.mask(filters, exclude) & (self.popularity > 0)
        order = self.order[keep[self.order]][:k]  # = a stable sort of the kept items by popularity
        return Recommendation(
            user="popular",
            items=self.item_ids[order].tolist(),
            scores=[float(s) for s in self.norm[order]],
            reasons=[reason] * len(order),
        )


@dataclass
class Request:
    user_id: str | None  # the store's pseudonym
    k: int = 10
    scenario: str = "home"
    filters: Filters | None = None
    context_items: list[str] = field(default_factory=list)  # product page item, cart items

    def cache_key(self, version: str) -> str:
        f = self.filters.model_dump_json() if self.filters else ""
        return f"{version}|{self.scenario}|{self.k}|{f}|{','.join(self.context_items)}"


FOLD_IN_SHARE = 0.6  # of the model's deadline, the most the fold-in's store read may take
FOLD_IN_BACKOFF = 5.0  # seconds without fold-in reads after one failed or was late


class Recommending:
    """The chain, shared by every recommendation route."""

    def __init__(
        self,
        *,
        sessions: SessionStore,
        cache: ResultCache,
        metrics: Metrics,
        timeout: float = 0.25,
        workers: int = 4,
        fresh: FreshEvents | None = None,
    ) -> None:
        self.sessions, self.cache, self.metrics, self.timeout = sessions, cache, metrics, timeout
        self.fresh = fresh  # the shopper's events since the version's training window (fold-in)
        self._pool = cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="shelfwise-model")
        self._shadow_pool = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="shelfwise-shadow")
        self._shadow_pending = 0
        # the fold-in's store read runs apart from the model's deadline: it gets a share of it, and
        # a store that did not answer is not asked again for ``FOLD_IN_BACKOFF`` seconds (the
        # answer then folds in the live session only, as the model's own answer stays personal)
        self._fold_pool = cf.ThreadPoolExecutor(max_workers=2, thread_name_prefix="shelfwise-fold-in")
        self._fold_failed_at = -float("inf")
        self._popular: dict[str, PopularIndex] = {}
        self._lock = threading.Lock()
        # part of every cache key: bumped when an item's availability changes, so no cached answer
        # shows an item taken off sale (``catalogue_changed``)
        self.catalogue_generation = 0
        # labelled counters looked up once (``labels()`` costs more than the increment)
        self._cache_hits = metrics.cache.labels("hit")
        self._cache_misses = metrics.cache.labels("miss")
        self._served: dict[tuple[str, str], Any] = {}
        # requests inside the chain now (background work such as the precompute yields to them)
        self.in_flight = 0

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._shadow_pool.shutdown(wait=False, cancel_futures=True)
        self._fold_pool.shutdown(wait=False, cancel_futures=True)

    def catalogue_changed(self) -> None:
        self.catalogue_generation += 1

    def popular(self, loaded: LoadedVersion) -> PopularIndex:
        index = self._popular.get(loaded.version)
        if index is None:
            with self._lock:
                index = self._popular.get(loaded.version) or PopularIndex(loaded.recommender)
                self._popular = {**{k: v for k, v in list(self._popular.items())[-3:]}, loaded.version: index}
        return index

    def call(self, stage: str, fn: Callable[[], T]) -> T | None:
        """Run a model call with the deadline; None (counted) when it raises or is late."""
        future = self._pool.submit(fn)
        try:
            return future.result(timeout=self.timeout)
        except cf.TimeoutError:
            future.cancel()
            self.metrics.model_errors.labels("timeout").inc()
            self.metrics.fallbacks.labels(stage, "timeout").inc()
            log.warning("model call timed out", stage=stage, timeout=self.timeout)
        except Exception as exc:
            self.metrics.model_errors.labels("error").inc()
            self.metrics.fallbacks.labels(stage, "error").inc()
            log.warning("model call failed", stage=stage, error=repr(exc))
        return None

    def call_inline(self, stage: str, fn: Callable[[], T], running: list[str] | None = None) -> T | None:
        """A model call in this thread (already a model-pool thread, whose caller keeps the deadline):
        None (counted) when it raises. ``running`` is told the stage, so a deadline can name it."""
        if running is not None:
            running[0] = stage
        try:
            return fn()
        except Exception as exc:
            self.metrics.model_errors.labels("error").inc()
            self.metrics.fallbacks.labels(stage, "error").inc()
            log.warning("model call failed", stage=stage, error=repr(exc))
        return None

    # --- the chain ------------------------------------------------------------------------------
    def recommend(self, deployment: Deployment, req: Request) -> tuple[Answer, bool]:
        """(answer, served from cache)."""
        self.in_flight += 1
        try:
            loaded, role, key, quick = self._quick(deployment, req)
            if quick is not None:
                return quick
            answer = self._chain(loaded, role, req)
            self._done(deployment, req, key, answer, role)
            return answer, False
        finally:
            self.in_flight -= 1

    def _quick(
        self, deployment: Deployment, req: Request
    ) -> tuple[LoadedVersion, str, str, tuple[Answer, bool] | None]:
        """The version and role routed to, the cache key, and the answer when it needs no model
        call: from the result cache, or a slice of the precomputed list (then cached and counted)."""
        loaded, role = deployment.route(req.user_id)
        key = req.cache_key(f"{loaded.version}#{self.catalogue_generation}")
        if req.user_id is not None:
            hit = self.cache.get(req.user_id, key)
            if hit is not None:
                self._cache_hits.inc()
                return loaded, role, key, (Answer(**hit), True)
            self._cache_misses.inc()
        pre = self._precomputed(loaded, role, req)
        if pre is not None:
            self._done(deployment, req, key, pre, role)
            return loaded, role, key, (pre, False)
        return loaded, role, key, None

    def _precomputed(self, loaded: LoadedVersion, role: str, req: Request) -> Answer | None:
        """The personalised stage from the version's precomputed list, when the request asks for
        nothing it could not know: a known user with no live session, no context items and no
        filters. Items that became unavailable since are skipped; too few left means None (the
        model answers)."""
        if req.user_id is None or req.filters is not None or req.context_items or req.scenario == "cart":
            return None
        pre = loaded.precomputed.get(req.user_id)
        k = req.k
        if pre is None or k > len(pre.rows) or self.sessions.recent(req.user_id):
            return None
        if self.fresh is not None:
            newer = self.fresh.peek(loaded, req.user_id)
            if newer is None or newer:  # not known here (read in the model pool), or events to fold in
                return None
        rec = pre.rec
        keep = np.flatnonzero(self.popular(loaded).available[pre.rows])[:k]
        if len(keep) < k:
            return None
        if keep[-1] == k - 1:  # nothing skipped: the head of the list
            items, scores, reasons = rec.items[:k], rec.scores[:k], rec.reasons[:k]
        else:
            items = [rec.items[n] for n in keep]
            scores = [rec.scores[n] for n in keep]
            reasons = [rec.reasons[n] for n in keep]
        return Answer(items, scores, reasons, "personalised", loaded.version, role)

    @property
    def in_process(self) -> bool:
        """Whether sessions and cache live in this process (no network call to read them)."""
        return self.sessions.backend == "memory" and self.cache.backend == "memory"

    async def recommend_async(self, deployment: Deployment, req: Request) -> tuple[Answer, bool]:
        """``recommend`` for an async route, with in-process state (``in_process``): a cache hit or a
        precomputed list answers on the event loop with no thread hop; otherwise the whole chain runs
        once in the model pool under one deadline (a hop per request, not one per stage), and a late
        chain is answered from the popularity arrays."""
        loaded, role, key, quick = self._quick(deployment, req)
        if quick is not None:  # no model call, no thread hop
            return quick
        self.in_flight += 1  # on the event loop: no other thread changes it here
        try:
            return await self._chain_async(deployment, req, loaded, role, key)
        finally:
            self.in_flight -= 1

    async def _chain_async(
        self, deployment: Deployment, req: Request, loaded: LoadedVersion, role: str, key: str
    ) -> tuple[Answer, bool]:
        running = ["personalised"]

        def chain() -> Answer:
            return self._chain(loaded, role, req, call=lambda stage, fn: self.call_inline(stage, fn, running))

        future = self._pool.submit(chain)
        try:
            answer = await asyncio.wait_for(asyncio.wrap_future(future), self.timeout)
        except TimeoutError:
            future.cancel()
            stage = running[0]
            self.metrics.model_errors.labels("timeout").inc()
            self.metrics.fallbacks.labels(stage, "timeout").inc()
            log.warning("model call timed out", stage=stage, timeout=self.timeout)
            session = self.sessions.recent(req.user_id) if req.user_id else []
            context = req.context_items if req.scenario != "cart" else []
            skipped = [{"stage": stage, "cause": "model error or timeout"}]
            answer = self._popular_tail(loaded, role, req, [*session, *context], skipped)
        self._done(deployment, req, key, answer, role)
        return answer, False

    def _done(self, deployment: Deployment, req: Request, key: str, answer: Answer, role: str) -> None:
        if req.user_id is not None:
            self.cache.put(req.user_id, key, answer.to_dict())
        served = self._served.get((answer.source, role))
        if served is None:
            served = self._served[(answer.source, role)] = self.metrics.served.labels(answer.source, role)
        served.inc()
        shadow = deployment.shadow
        if shadow is not None and role == "active":
            self._shadow(shadow, req, answer)

    def _chain(
        self,
        loaded: LoadedVersion,
        role: str,
        req: Request,
        *,
        call: Callable[[str, Callable[[], Any]], Any] | None = None,
    ) -> Answer:
        call = call or self.call
        model = loaded.recommender
        skipped: list[dict[str, str]] = []
        session = self._live(loaded, req.user_id)
        k, filters = req.k, req.filters

        def answer(rec: Recommendation | None, source: str) -> Answer | None:
            if rec is None:
                skipped.append({"stage": source, "cause": "model error or timeout"})
                return None
            if not rec.items:
                self.metrics.fallbacks.labels(source, "empty").inc()
                skipped.append({"stage": source, "cause": "no items"})
                return None
            return Answer(rec.items, rec.scores, rec.reasons, source, loaded.version, role, skipped)

        if req.scenario == "cart":
            cart = req.context_items or (self.sessions.cart(req.user_id) if req.user_id else [])
            bundles = loaded.bought_together or model
            if cart:
                got = answer(
                    call("bought_together", lambda: bundles.recommend_for_events(cart, k, filters=filters)),
                    "bought_together",
                )
                if got:
                    return got
        context = req.context_items if req.scenario != "cart" else []
        history = self._history(model, req.user_id)
        if history is not None and (len(history) or not (session or context)):
            items = [*history, *session, *context]
            if session or context:
                rec = call(
                    "personalised", lambda: model.recommend_for_events(items, k, filters=filters, who="user")
                )
            else:
                rec = call(
                    "personalised", lambda: model.recommend([req.user_id or ""], k, filters=filters)[0]
                )
            got = answer(rec, "personalised")
            if got:
                return got
        if session or context:
            items = [*session, *context]
            got = answer(
                call("session", lambda: model.recommend_for_events(items, k, filters=filters)), "session"
            )
            if got:
                return got
        return self._popular_tail(loaded, role, req, [*session, *context], skipped)

    def _popular_tail(
        self, loaded: LoadedVersion, role: str, req: Request, seen: list[str], skipped: list[dict[str, str]]
    ) -> Answer:
        """The last two stages: plain arrays, no model code."""
        k, filters = req.k, req.filters
        popular = self.popular(loaded)
        category = None
        if filters is not None and filters.categories:
            category = filters.categories[0]
        elif seen:
            category = popular.category_of(seen[-1])
        if category is not None:
            cat_filters = (filters or Filters()).model_copy(update={"categories": [category]})
            rec = popular.top(k, filters=cat_filters, exclude=seen, reason=f"popular in {category}")
            if rec.items:
                return Answer(
                    rec.items, rec.scores, rec.reasons, "popular_category", loaded.version, role, skipped
                )
            self.metrics.fallbacks.labels("popular_category", "empty").inc()
            skipped.append({"stage": "popular_category", "cause": "no items"})
        rec = popular.top(k, filters=filters, exclude=seen)
        return Answer(rec.items, rec.scores, rec.reasons, "popular", loaded.version, role, skipped)

    def _live(self, loaded: LoadedVersion, user_id: str | None) -> list[str]:
        """What the shopper did that the version never saw, oldest first: their events since its
        training window (from the store, ``fresh``) and their live session here, each item once
        at its newest place. A store that does not answer leaves the session alone (counted)."""
        if user_id is None:
            return []
        session = self.sessions.recent(user_id)
        if self.fresh is None:
            return session
        stored = self.fresh.peek(loaded, user_id)
        if stored is None:
            if time.monotonic() - self._fold_failed_at < FOLD_IN_BACKOFF:
                return session  # the store did not answer a moment ago: not asked again yet
            try:
                future = self._fold_pool.submit(self.fresh.items, loaded, user_id)
                stored = future.result(timeout=self.timeout * FOLD_IN_SHARE)
            except Exception as exc:  # unreadable or late: the model answers from what it knows
                self._fold_failed_at = time.monotonic()
                self.metrics.model_errors.labels("fold_in").inc()
                log.warning("fold-in events unreadable; answering with the session only", error=repr(exc))
                return session
        if not stored:
            return session
        merged: dict[str, None] = {}
        for item in [*stored, *session]:
            merged.pop(item, None)
            merged[item] = None
        return list(merged)

    def _history(self, model: Recommender, user_id: str | None) -> list[str] | None:
        """The user's training items (None when the model never saw them)."""
        if user_id is None:
            return None
        try:
            st = model.state
            idx = st.user_map.index.get(user_id)
            if idx is None:
                return None
            # the row's slice of the CSR arrays: what ``st.history[idx]`` holds, without building
            # a one-row matrix per request
            h = st.history
            lo, hi = h.indptr[idx], h.indptr[idx + 1]
            return st.item_map.to_external(h.indices[lo:hi][h.data[lo:hi] > 0])
        except Exception as exc:  # answered without the history (seen items may come back): said loudly
            self.metrics.model_errors.labels("history").inc()
            log.warning("shopper history unreadable; answering without it", error=repr(exc))
            return None

    # --- item-to-item -----------------------------------------------------------------------------
    def similar(
        self, deployment: Deployment, item_id: str, k: int, filters: Filters | None, *, bundles: bool = False
    ) -> Answer:
        loaded = deployment.active
        skipped: list[dict[str, str]] = []
        chain: list[tuple[str, Recommender]] = []
        if bundles and loaded.bought_together is not None:
            chain.append(("bought_together", loaded.bought_together))
        chain.append(("similar", loaded.recommender))
        # each stage answers what its evidence supports (a model's list ends where the item's
        # evidence does); the next stage tops the list up to k, so a product page never shows
        # padding in id order as "similar"
        items: list[str] = []
        scores: list[float] = []
        reasons: list[str] = []
        source: str | None = None

        def take(rec: Recommendation, stage: str) -> bool:
            nonlocal source
            have = {item_id, *items}
            answered = zip(rec.items, rec.scores, rec.reasons, strict=True)
            fresh = [(i, s, r) for i, s, r in answered if i not in have]
            for i, s, r in fresh[: k - len(items)]:
                items.append(i)
                scores.append(s)
                reasons.append(r)
            if fresh and source is None:
                source = stage
            return bool(fresh)

        for stage, model in chain:
            rec = self.call(stage, lambda m=model: m.similar_items([item_id], k, filters=filters)[0])
            if rec is None:
                skipped.append({"stage": stage, "cause": "model error or timeout"})
            elif not take(rec, stage):
                self.metrics.fallbacks.labels(stage, "empty").inc()
                skipped.append({"stage": stage, "cause": "no items"})
            if len(items) >= k:
                break
        popular = self.popular(loaded)
        category = popular.category_of(item_id)
        if len(items) < k and category is not None:
            cat_filters = (filters or Filters()).model_copy(update={"categories": [category]})
            in_category = f"popular in {category}"
            take(
                popular.top(k, filters=cat_filters, exclude=[item_id, *items], reason=in_category),
                "popular_category",
            )
        if len(items) < k:
            take(popular.top(k, filters=filters, exclude=[item_id, *items]), "popular")
        return Answer(items, scores, reasons, source or "popular", loaded.version, "active", skipped)

    # --- shadow ---------------------------------------------------------------------------------
    def _shadow(self, shadow: LoadedVersion, req: Request, served: Answer) -> None:
        if self._shadow_pending > 32:  # never let shadow work pile up behind live traffic
            return
        self._shadow_pending += 1

        def run() -> None:
            try:
                started = time.perf_counter()
                other = self._chain(shadow, "shadow", req)
                overlap = top_overlap(served.items, other.items, 10)
                self.metrics.shadow_overlap.observe(overlap)
                log.info(
                    "shadow compared",
                    active=served.model_version,
                    shadow=shadow.version,
                    overlap=round(overlap, 3),
                    active_source=served.source,
                    shadow_source=other.source,
                    seconds=round(time.perf_counter() - started, 4),
                )
            except Exception as exc:
                log.warning("shadow scoring failed", shadow=shadow.version, error=repr(exc))
            finally:
                self._shadow_pending -= 1

        self._shadow_pool.submit(run)
