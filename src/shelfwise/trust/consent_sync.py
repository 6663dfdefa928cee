"""Consent that takes effect at once on every worker.

Each serving worker keeps a ``ConsentView``: the flags it has read, and a *stamp* of the consent
state it read them under. A request asks ``view.get(user)``; the view first compares the stamp,
cheaply, and forgets what it read when the stamp moved:

- with Redis (``redis=`` a client), the stamp is one integer key that every change increments
  (``INCR``): one round trip of ~0.1 ms per request, so a change made on one worker is seen by the
  next request on any other;
- always, as a safety net for writers that do not bump Redis (a CLI run against the store alone,
  a restore), the store's own stamp (``consent_stamp``: rows and newest change of the consent
  table), read at most every ``poll_seconds`` — a change is seen within that time without Redis.

Only shoppers who turned a flag on have a row, so while the table holds at most ``snapshot_limit``
rows the view reads it whole, once per stamp, and answers every shopper from memory (a shopper with no
row has both flags off): a request for a shopper it never saw costs no store read. A bigger table is
read one shopper at a time, as before.

Changes go through ``ConsentView.set`` (or ``set_consent_everywhere``): the store first (the truth),
then the Redis stamp.
"""

from __future__ import annotations

import threading
from typing import Any

from shelfwise.core.logging import get_logger
from shelfwise.core.polled import Polled
from shelfwise.store.base import Store
from shelfwise.store.consent import Consent, all_consent, consent_stamp, get_consent, set_consent

VERSION_KEY = "consent:version"
log = get_logger(__name__)


def _redis_version(redis: Any, key: str) -> int:
    raw = redis.get(key)
    return int(raw) if raw is not None else 0


def redis_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` means Redis could not be reached (down, failing over to a replica, or a
    demoted primary refusing writes): the store's stamp then stands in for the Redis one."""
    import redis

    errors = redis.exceptions
    return isinstance(exc, errors.ConnectionError | errors.TimeoutError | errors.ReadOnlyError | OSError)


def set_consent_everywhere(
    store: Store,
    user_id: str,
    *,
    redis: Any = None,
    prefix: str = "shelfwise:",
    no_personalisation: bool | None = None,
    no_analytics: bool | None = None,
) -> Consent:
    """Change a shopper's flags in the store, then move the stamp every worker checks."""
    new = set_consent(store, user_id, no_personalisation=no_personalisation, no_analytics=no_analytics)
    if redis is not None:
        try:
            redis.incr(prefix + VERSION_KEY)
        except Exception as exc:
            if not redis_unavailable(exc):
                raise
            # the change is in the store (the truth): every worker sees it at its next store poll
            log.warning("consent changed but Redis did not take the stamp", error=str(exc)[:200])
    return new


class ConsentView:
    """One worker's view of the consent flags, current within a request (Redis) or within
    ``poll_seconds`` (the store's stamp alone). Thread-safe."""

    def __init__(
        self,
        store: Store,
        *,
        redis: Any = None,
        prefix: str = "shelfwise:",
        poll_seconds: float = 0.5,
        snapshot_limit: int = 100_000,
        wait_at_most: float | None = None,
    ) -> None:
        self.store = store
        self.redis = redis
        self.key = prefix + VERSION_KEY
        self.prefix = prefix
        self.poll_seconds = poll_seconds
        self._lock = threading.Lock()
        self._flags: dict[str, Consent] = {}
        self.snapshot_limit = snapshot_limit
        self._all: dict[str, Consent] | None = None  # every row, while the table is small
        self._too_big = False  # the table outgrew the snapshot under the current stamp
        self._generation = 0  # moves with the stamp: a snapshot read under an older one is dropped
        self._redis_seen: int | None = None
        # read outside the lock by one caller per poll (the others answer from the flags last read);
        # a failed read is raised to its caller, and the next caller reads again
        self._store_stamp: Polled[tuple[int, int]] = Polled(
            self._read_store_stamp, every=poll_seconds, wait_at_most=wait_at_most, name="consent stamp"
        )
        self.reloads = 0  # how often the stamp moved (for tests and metrics)
        self.redis_failures = 0  # checks that found Redis unreachable (the store's stamp was used)

    def _check(self) -> None:
        """Clear this view when a stamp moved: Redis's, read on every call, or the store's, when its
        poll is due. Both are read outside the lock: while one caller waits on a slow store, the
        others answer from the flags last read."""
        version: int | None = None
        if self.redis is not None:
            try:
                version = _redis_version(self.redis, self.key)
            except Exception as exc:
                if not redis_unavailable(exc):
                    raise
                version = None  # Redis down or failing over: the store's stamp alone, as without Redis
                with self._lock:
                    self.redis_failures += 1
        self._store_stamp.get()  # the read clears this view when the store's stamp moved
        if version is not None:
            with self._lock:
                moved = self._redis_seen is not None and version != self._redis_seen
                self._redis_seen = version
                if moved:
                    self._forget()

    def _read_store_stamp(self, last: tuple[int, int] | None) -> tuple[int, int]:
        stamp = consent_stamp(self.store)
        if last is not None and stamp != last:
            with self._lock:
                self._forget()
        return stamp

    def _forget(self) -> None:
        """Drop every flag read (the lock is held): they are read again under the new stamp."""
        self._flags.clear()
        self._all, self._too_big = None, False
        self._generation += 1
        self.reloads += 1

    def _snapshot(self) -> dict[str, Consent] | None:
        """Every row of the consent table, read once per stamp (None: more than ``snapshot_limit``)."""
        with self._lock:
            if self._all is not None or self._too_big:
                return self._all
            generation = self._generation
        rows = all_consent(self.store, limit=self.snapshot_limit + 1)
        found = None if len(rows) > self.snapshot_limit else {c.user_id: c for c in rows}
        with self._lock:
            if generation == self._generation:  # the stamp did not move while it was read
                self._all, self._too_big = found, found is None
        return found

    def get(self, user_id: str) -> Consent:
        """The shopper's flags as they stand now."""
        self._check()
        with self._lock:
            cached = self._flags.get(user_id)
            generation = self._generation
        if cached is not None:
            return cached
        snapshot = self._snapshot() if self.snapshot_limit > 0 else None
        if snapshot is not None:
            return snapshot.get(user_id) or Consent(user_id)
        found = get_consent(self.store, user_id)
        with self._lock:
            # kept only when no stamp moved meanwhile: flags read before a change never stand in for it
            if generation == self._generation:
                self._flags[user_id] = found
        return found

    def personalise(self, user_id: str) -> bool:
        """May this shopper's history be used for them?"""
        return self.get(user_id).personalise

    def set(
        self, user_id: str, *, no_personalisation: bool | None = None, no_analytics: bool | None = None
    ) -> Consent:
        """Change the flags for every worker (this one at once)."""
        new = set_consent_everywhere(
            self.store,
            user_id,
            redis=self.redis,
            prefix=self.prefix,
            no_personalisation=no_personalisation,
            no_analytics=no_analytics,
        )
        with self._lock:
            # the moved stamp clears this view at its next check too; the store is read again then
            self._flags[user_id] = new
            if self._all is not None:
                self._all[user_id] = new
        return new
