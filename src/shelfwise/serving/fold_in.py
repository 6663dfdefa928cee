"""Incremental fold-in between retrains: a shopper's events that the served version never saw (after
its training window, ``data_window.max_ts``) are read from the store and folded into their
recommendations by the model itself (``Recommender.recommend_for_events``: ALS solves the user's
least-squares step, EASE and item-kNN score the history through the item matrix, sequence models
read it in order), with no retrain.

The live session (``serving.state``) already folds in what a shopper did on this worker in the last
``session_ttl_seconds``; this reads the store, so the shopper's newer events count on every worker,
after a restart and after the session expired, until the next retrain takes them in. A shopper's
list is cached per version for ``ttl`` seconds; an event this worker accepts drops it at once
(``invalidate``), so the next answer here is fresh and another worker's within ``ttl``.

The request path never waits on the store for it on the event loop: ``peek`` answers only from the
cache (None: unknown, the chain then runs in the model pool, where ``items`` reads the store).

    fresh = FreshEvents(store, ttl=30)
    fresh.items(loaded, pseudonym)     # ['71053', '22752']: newest last, the version never saw them
"""

from __future__ import annotations

import time
from collections.abc import Iterator, MutableMapping
from typing import Any

from shelfwise.core.logging import get_logger
from shelfwise.data.schemas import EventType
from shelfwise.registry.versions import LoadedVersion
from shelfwise.serving.lru import LRUDict
from shelfwise.store import Store

log = get_logger(__name__)
FOLDED_TYPES = (EventType.VIEW, EventType.CLICK, EventType.WISHLIST, EventType.CART, EventType.PURCHASE)


def since_of(loaded: LoadedVersion) -> int | None:
    """The first event time the version did not train on (None: it does not say)."""
    max_ts = (loaded.info.data_window or {}).get("max_ts")
    return None if max_ts is None else int(max_ts) + 1


class FreshEvents(MutableMapping[str, Any]):
    """Per shopper (pseudonym): the items of their events since the served version's training
    window, newest last, at most ``items``; cached for ``ttl`` seconds, at most ``users`` shoppers.
    A mapping over the cached shoppers, so erasure can drop and check one (``serving.erasure``)."""

    def __init__(self, store: Store, *, ttl: float = 30.0, items: int = 50, users: int = 50_000) -> None:
        self.store, self.ttl, self.max_items = store, ttl, items
        self._cache: LRUDict[tuple[str, float, list[str]]] = LRUDict(users)
        self.reads = 0  # store reads (a test and the freshness benchmark look)

    def peek(self, loaded: LoadedVersion, user_id: str) -> list[str] | None:
        """The cached list when it is current for this version, else None (not known here)."""
        hit = self._cache.get(user_id)
        if hit is None or hit[0] != loaded.version or time.monotonic() - hit[1] > self.ttl:
            return None
        return hit[2]

    def items(self, loaded: LoadedVersion, user_id: str) -> list[str]:
        """The shopper's items since the version's training window (read from the store on a miss)."""
        cached = self.peek(loaded, user_id)
        if cached is not None:
            return cached
        since = since_of(loaded)
        if since is None:
            return []
        self.reads += 1
        events = self.store.events_for_user(user_id, since=since, types=FOLDED_TYPES)
        seen: dict[str, None] = {}
        for e in events:  # oldest first: a repeated item moves to its newest place
            if e.item_id:
                seen.pop(e.item_id, None)
                seen[e.item_id] = None
        out = list(seen)[-self.max_items :]
        self._cache.put(user_id, (loaded.version, time.monotonic(), out))
        return out

    def invalidate(self, user_id: str) -> int:
        with self._cache.lock:
            return int(self._cache.pop(user_id, None) is not None)

    def clear(self) -> None:
        with self._cache.lock:
            self._cache.clear()

    # --- the mapping erasure reads ----------------------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        return self._cache[key][2]

    def __setitem__(self, key: str, value: Any) -> None:
        raise TypeError("fold-in lists are read from the store, not set")

    def __delitem__(self, key: str) -> None:
        with self._cache.lock:
            del self._cache[key]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._cache))

    def __len__(self) -> int:
        return len(self._cache)
