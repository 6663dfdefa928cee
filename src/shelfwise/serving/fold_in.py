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

Most shoppers have no event after the window, so ``items`` first reads, once per ``ttl`` per
version, *who* has such events (one query, at most ``users`` pseudonyms, else it asks shopper by
shopper as before): anyone not among them gets an empty list with no read of their own, and
``peek`` can say so on the event loop (a precomputed list then answers, as with fold-in off). An
event this worker accepts puts its shopper among them at once (``invalidate``); another worker's
within ``ttl``, as for the per-shopper lists. Erasure drops a shopper from both (the mapping below).

    fresh = FreshEvents(store, ttl=30)
    fresh.items(loaded, pseudonym)     # ['71053', '22752']: newest last, the version never saw them
"""

from __future__ import annotations

import threading
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
    A mapping over the shoppers held (cached lists and the per-version sets of who has newer
    events), so erasure can drop and check one (``serving.erasure``)."""

    def __init__(self, store: Store, *, ttl: float = 30.0, items: int = 50, users: int = 50_000) -> None:
        self.store, self.ttl, self.max_items, self.max_users = store, ttl, items, users
        self._cache: LRUDict[tuple[str, float, list[str]]] = LRUDict(users)
        # per version: (read at, the pseudonyms with events since its window); None: too many or
        # unknown (asked shopper by shopper)
        self._newer: dict[str, tuple[float, set[str] | None]] = {}
        self._added: dict[str, set[str]] = {}  # per version being re-read: who got an event meanwhile
        self.reads = 0  # store reads (a test and the freshness benchmark look)

    def peek(self, loaded: LoadedVersion, user_id: str) -> list[str] | None:
        """The cached list when it is current for this version, else None (not known here)."""
        hit = self._cache.get(user_id)
        if hit is not None and hit[0] == loaded.version and time.monotonic() - hit[1] <= self.ttl:
            return hit[2]
        known = self._newer.get(loaded.version)
        who = known[1] if known is not None and time.monotonic() - known[0] <= self.ttl else None
        if who is not None and user_id not in who:  # (a set's ``in`` is atomic: no lock needed)
            return []  # no event since the window (as of ``ttl`` ago, nor here since)
        return None

    def items(self, loaded: LoadedVersion, user_id: str) -> list[str]:
        """The shopper's items since the version's training window (read from the store on a miss)."""
        cached = self.peek(loaded, user_id)
        if cached is not None:
            return cached
        since = since_of(loaded)
        if since is None:
            return []
        self._refresh_soon(loaded)  # in the background: a request never waits on that query
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

    def _refresh_soon(self, loaded: LoadedVersion) -> None:
        started = self._claim(loaded)
        if started is not None:
            threading.Thread(
                target=self._read_newer, args=(loaded, started), name="shelfwise-fold-in", daemon=True
            ).start()

    def refresh(self, loaded: LoadedVersion) -> set[str] | None:
        """Who has events since the version's window, re-read now when older than ``ttl`` (one
        query; None: unknown, too many, or another thread is reading it)."""
        started = self._claim(loaded)
        if started is None:
            known = self._newer.get(loaded.version)
            return None if known is None else known[1]
        return self._read_newer(loaded, started)

    def _claim(self, loaded: LoadedVersion) -> float | None:
        """When the set of who is newer is due and nobody reads it yet: the time the read starts."""
        if since_of(loaded) is None:
            return None
        with self._cache.lock:
            known = self._newer.get(loaded.version)
            if known is not None and time.monotonic() - known[0] <= self.ttl:
                return None
            if loaded.version in self._added:  # another thread is reading it
                return None
            self._added[loaded.version] = set()
            return time.monotonic()

    def _read_newer(self, loaded: LoadedVersion, started: float) -> set[str] | None:
        version, since = loaded.version, since_of(loaded)
        found: set[str] | None = None
        try:
            self.reads += 1
            found = self.store.users_with_events_since(since or 0, types=FOLDED_TYPES, limit=self.max_users)
        except Exception as exc:  # per-shopper reads meanwhile; tried again after ``ttl``
            log.warning("fold-in: who has newer events not read", error=repr(exc))
        with self._cache.lock:
            added = self._added.pop(version, set())
            if found is not None:
                found |= added  # events accepted here while it was read
            self._newer[version] = (started, found)
            for stale in [v for v, (at, _) in self._newer.items() if started - at > 10 * self.ttl]:
                del self._newer[stale]  # a version no longer served
        return found

    def invalidate(self, user_id: str) -> int:
        with self._cache.lock:
            for _, who in self._newer.values():
                if who is not None:
                    who.add(user_id)
            for added in self._added.values():
                added.add(user_id)
            return int(self._cache.pop(user_id, None) is not None)

    def clear(self) -> None:
        with self._cache.lock:
            self._cache.clear()
            self._newer.clear()

    # --- the mapping erasure reads ----------------------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        with self._cache.lock:
            hit = self._cache.get(key)
            if hit is not None:
                return hit[2]
            if any(who is not None and key in who for _, who in self._newer.values()):
                return []  # known to have newer events, their list not read yet
        raise KeyError(key)

    def __setitem__(self, key: str, value: Any) -> None:
        raise TypeError("fold-in lists are read from the store, not set")

    def __delitem__(self, key: str) -> None:
        with self._cache.lock:
            held = self._cache.pop(key, None) is not None
            for _, who in self._newer.values():
                if who is not None and key in who:
                    who.discard(key)
                    held = True
            for added in self._added.values():
                added.discard(key)
        if not held:
            raise KeyError(key)

    def _keys(self) -> set[str]:
        with self._cache.lock:
            keys = set(self._cache)
            for _, who in self._newer.values():
                keys |= who or set()
        return keys

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys())

    def __len__(self) -> int:
        return len(self._keys())
