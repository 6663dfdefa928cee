"""Hot per-shopper state: live sessions (recent items, cart) and cached results.

Both live in the process by default and in Redis when ``SHELFWISE_REDIS_URL`` is set, so several
API replicas share them. Every key shelfwise writes starts with ``redis_prefix``; a shopper's state
is a handful of keys named after their pseudonym, so forgetting them is a few ``DEL``s.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict, deque
from typing import Any, Protocol


class SessionStore(Protocol):
    """Recent items a shopper touched (oldest first) and what is in their cart."""

    backend: str

    def push(self, user_id: str, item_id: str, *, cart: bool | None = None) -> None:
        """Record an item; ``cart`` True adds it to the cart, False removes it, None leaves the cart."""

    def recent(self, user_id: str) -> list[str]: ...

    def cart(self, user_id: str) -> list[str]: ...

    def forget(self, user_id: str) -> int:
        """Drop everything about the user; returns how many entries were removed."""

    def holds(self, user_id: str) -> bool: ...


class ResultCache(Protocol):
    backend: str

    def get(self, user_id: str, key: str) -> dict[str, Any] | None: ...

    def put(self, user_id: str, key: str, value: dict[str, Any]) -> None: ...

    def invalidate(self, user_id: str) -> int: ...

    def holds(self, user_id: str) -> bool: ...


class MemorySessions:
    """Sessions in this process: bounded per user and in users (least recently active dropped)."""

    backend = "memory"

    def __init__(self, *, items: int = 50, ttl_seconds: int = 86_400, max_users: int = 200_000) -> None:
        self.items, self.ttl, self.max_users = items, ttl_seconds, max_users
        self._recent: OrderedDict[str, tuple[float, deque[str]]] = OrderedDict()
        self._cart: dict[str, dict[str, None]] = {}
        self._lock = threading.Lock()

    def push(self, user_id: str, item_id: str, *, cart: bool | None = None) -> None:
        with self._lock:
            _, q = self._recent.pop(user_id, (0.0, deque(maxlen=self.items)))
            q.append(item_id)
            self._recent[user_id] = (time.monotonic(), q)
            if cart is True:
                self._cart.setdefault(user_id, {})[item_id] = None
            elif cart is False:
                self._cart.get(user_id, {}).pop(item_id, None)
            while len(self._recent) > self.max_users:
                old, _ = self._recent.popitem(last=False)
                self._cart.pop(old, None)

    def recent(self, user_id: str) -> list[str]:
        with self._lock:
            entry = self._recent.get(user_id)
            if entry is None:
                return []
            if time.monotonic() - entry[0] > self.ttl:
                self._recent.pop(user_id, None)
                self._cart.pop(user_id, None)
                return []
            return list(entry[1])

    def cart(self, user_id: str) -> list[str]:
        with self._lock:
            return list(self._cart.get(user_id, {}))

    def forget(self, user_id: str) -> int:
        with self._lock:
            n = len(self._recent.pop(user_id, (0.0, ()))[1]) + len(self._cart.pop(user_id, {}))
        return n

    def holds(self, user_id: str) -> bool:
        with self._lock:
            return user_id in self._recent or user_id in self._cart

    def users(self) -> list[str]:
        with self._lock:
            return list({**dict.fromkeys(self._recent), **dict.fromkeys(self._cart)})


class MemoryCache:
    """An LRU of results keyed by (user, request); a user's entries are dropped together."""

    backend = "memory"

    def __init__(self, *, size: int = 50_000, ttl_seconds: int = 600) -> None:
        self.size, self.ttl = size, ttl_seconds
        self._data: OrderedDict[tuple[str, str], tuple[float, dict[str, Any]]] = OrderedDict()
        self._by_user: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def get(self, user_id: str, key: str) -> dict[str, Any] | None:
        with self._lock:
            entry = self._data.get((user_id, key))
            if entry is None:
                return None
            if time.monotonic() - entry[0] > self.ttl:
                self._drop((user_id, key))
                return None
            self._data.move_to_end((user_id, key))
            return entry[1]

    def put(self, user_id: str, key: str, value: dict[str, Any]) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._data[(user_id, key)] = (time.monotonic(), value)
            self._data.move_to_end((user_id, key))
            self._by_user.setdefault(user_id, set()).add(key)
            while len(self._data) > self.size:
                self._drop(next(iter(self._data)))

    def _drop(self, full: tuple[str, str]) -> None:
        self._data.pop(full, None)
        keys = self._by_user.get(full[0])
        if keys is not None:
            keys.discard(full[1])
            if not keys:
                del self._by_user[full[0]]

    def invalidate(self, user_id: str) -> int:
        with self._lock:
            keys = self._by_user.pop(user_id, set())
            for key in keys:
                self._data.pop((user_id, key), None)
            return len(keys)

    def holds(self, user_id: str) -> bool:
        with self._lock:
            return user_id in self._by_user

    def clear(self) -> int:
        with self._lock:
            n = len(self._data)
            self._data.clear()
            self._by_user.clear()
            return n


def local_parts(
    sessions: SessionStore, cache: ResultCache
) -> tuple[MemorySessions | None, MemoryCache | None]:
    """The parts of this state that live in this process only (the whole state in memory, or the
    fallback a Redis-backed state writes to while Redis is down)."""

    def local(x: Any, kind: type) -> Any:
        if isinstance(x, kind):
            return x
        fallback = getattr(x, "fallback", None)
        return fallback if isinstance(fallback, kind) else None

    return local(sessions, MemorySessions), local(cache, MemoryCache)


class RedisSessions:
    """Sessions in Redis: a capped list of recent items and a cart set per user, with a TTL."""

    backend = "redis"

    def __init__(self, client: Any, *, prefix: str, items: int = 50, ttl_seconds: int = 86_400) -> None:
        self.r, self.prefix, self.items, self.ttl = client, prefix, items, ttl_seconds

    def _keys(self, user_id: str) -> tuple[str, str]:
        return f"{self.prefix}sess:{user_id}", f"{self.prefix}cart:{user_id}"

    def push(self, user_id: str, item_id: str, *, cart: bool | None = None) -> None:
        recent, cart_key = self._keys(user_id)
        pipe = self.r.pipeline(transaction=True)
        pipe.rpush(recent, item_id)
        pipe.ltrim(recent, -self.items, -1)
        pipe.expire(recent, self.ttl)
        if cart is True:
            pipe.zadd(cart_key, {item_id: time.time()})
            pipe.expire(cart_key, self.ttl)
        elif cart is False:
            pipe.zrem(cart_key, item_id)
        pipe.execute()

    def recent(self, user_id: str) -> list[str]:
        return [v.decode() for v in self.r.lrange(self._keys(user_id)[0], 0, -1)]

    def cart(self, user_id: str) -> list[str]:
        return [v.decode() for v in self.r.zrange(self._keys(user_id)[1], 0, -1)]

    def forget(self, user_id: str) -> int:
        recent, cart_key = self._keys(user_id)
        pipe = self.r.pipeline(transaction=True)
        pipe.llen(recent)
        pipe.zcard(cart_key)
        pipe.delete(recent, cart_key)
        n_recent, n_cart, _ = pipe.execute()
        return int(n_recent) + int(n_cart)

    def holds(self, user_id: str) -> bool:
        return bool(self.r.exists(*self._keys(user_id)))


class RedisCache:
    """Results in one Redis hash per user (field = request key), expiring after ``ttl_seconds``."""

    backend = "redis"

    def __init__(self, client: Any, *, prefix: str, ttl_seconds: int = 600) -> None:
        self.r, self.prefix, self.ttl = client, prefix, ttl_seconds

    def _key(self, user_id: str) -> str:
        return f"{self.prefix}rec:{user_id}"

    def get(self, user_id: str, key: str) -> dict[str, Any] | None:
        raw = self.r.hget(self._key(user_id), key)
        return None if raw is None else json.loads(raw)

    def put(self, user_id: str, key: str, value: dict[str, Any]) -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(self._key(user_id), key, json.dumps(value, separators=(",", ":")))
        pipe.expire(self._key(user_id), self.ttl)
        pipe.execute()

    def invalidate(self, user_id: str) -> int:
        key = self._key(user_id)
        pipe = self.r.pipeline(transaction=True)
        pipe.hlen(key)
        pipe.delete(key)
        n, _ = pipe.execute()
        return int(n)

    def holds(self, user_id: str) -> bool:
        return bool(self.r.exists(self._key(user_id)))


class _Degrading:
    """Redis first; while Redis fails, the process's own memory (a circuit: Redis is tried again
    ``retry_seconds`` after a failure). Shoppers keep being served, with state local to this replica
    for the outage; users whose state changed meanwhile have their Redis results dropped on return."""

    def __init__(self, primary: Any, fallback: Any, *, retry_seconds: float = 1.0) -> None:
        self.primary, self.fallback, self.retry = primary, fallback, retry_seconds
        self._down_until = 0.0
        self._touched: set[str] = set()
        self._lock = threading.Lock()
        self.failures = 0

    @property
    def backend(self) -> str:
        return str(self.primary.backend)

    @property
    def degraded(self) -> bool:
        return time.monotonic() < self._down_until

    def _call(self, name: str, user_id: str, *args: Any, write: bool = False, **kwargs: Any) -> Any:
        import redis

        if not self.degraded:
            try:
                out = getattr(self.primary, name)(user_id, *args, **kwargs)
                if self._touched:
                    self._heal()
                return out
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError):
                self.failures += 1
                with self._lock:
                    self._down_until = time.monotonic() + self.retry
        if write:
            with self._lock:
                self._touched.add(user_id)
        return getattr(self.fallback, name)(user_id, *args, **kwargs)

    def _heal(self) -> None:
        """Redis is back: what it holds for users who changed during the outage is stale."""
        with self._lock:
            touched, self._touched = self._touched, set()
        for user in touched:
            try:
                self.primary_invalidate(user)
            except Exception:  # down again: keep them for the next return
                with self._lock:
                    self._touched.add(user)
                return

    def primary_invalidate(self, user_id: str) -> None:
        invalidate = getattr(self.primary, "invalidate", None)
        if invalidate is not None:
            invalidate(user_id)

    def holds(self, user_id: str) -> bool:
        return bool(self._call("holds", user_id)) or self.fallback.holds(user_id)


class DegradingSessions(_Degrading):
    def push(self, user_id: str, item_id: str, *, cart: bool | None = None) -> None:
        self._call("push", user_id, item_id, cart=cart, write=True)

    def recent(self, user_id: str) -> list[str]:
        return list(self._call("recent", user_id))

    def cart(self, user_id: str) -> list[str]:
        return list(self._call("cart", user_id))

    def forget(self, user_id: str) -> int:
        return int(self._call("forget", user_id, write=True)) + self.fallback.forget(user_id)


class DegradingCache(_Degrading):
    def get(self, user_id: str, key: str) -> dict[str, Any] | None:
        out: dict[str, Any] | None = self._call("get", user_id, key)
        return out

    def put(self, user_id: str, key: str, value: dict[str, Any]) -> None:
        self._call("put", user_id, key, value, write=True)

    def invalidate(self, user_id: str) -> int:
        return int(self._call("invalidate", user_id, write=True)) + self.fallback.invalidate(user_id)


SENTINEL_SCHEME = "redis+sentinel://"


def redis_from_url(url: str, *, socket_timeout: float = 2.0, socket_connect_timeout: float = 2.0) -> Any:
    """A Redis client (not connected yet) for ``url``: ``redis://``, ``rediss://``, ``unix://``, or
    ``redis+sentinel://[:password@]host:port[,host:port…]/service[/db]``, the primary that the
    Sentinels name for ``service``: after a failover new connections go to the promoted replica
    (a request on a connection to the lost primary fails, and the degrading stores take over)."""
    import redis

    if not url.startswith(SENTINEL_SCHEME):
        return redis.Redis.from_url(
            url, socket_timeout=socket_timeout, socket_connect_timeout=socket_connect_timeout
        )
    from urllib.parse import unquote

    from redis.sentinel import Sentinel

    from shelfwise.core.errors import ConfigError

    rest = url[len(SENTINEL_SCHEME) :]
    auth, _, rest = rest.rpartition("@")
    hosts, _, path = rest.partition("/")
    parts = [p for p in path.split("/") if p]
    try:
        sentinels = [
            (h.rpartition(":")[0] or h, int(h.rpartition(":")[2] or 26379)) for h in hosts.split(",") if h
        ]
        db = int(parts[1]) if len(parts) > 1 else 0
    except ValueError as exc:
        raise ConfigError(f"bad Redis Sentinel URL {url!r}: {exc}") from exc
    if not sentinels or not parts:
        raise ConfigError(
            f"bad Redis Sentinel URL {url!r}",
            hint="redis+sentinel://HOST:PORT[,HOST:PORT…]/SERVICE[/DB]",
        )
    password = unquote(auth.partition(":")[2]) or None if auth else None
    timeouts = {"socket_timeout": socket_timeout, "socket_connect_timeout": socket_connect_timeout}
    return Sentinel(sentinels, **timeouts).master_for(parts[0], db=db, password=password, **timeouts)


def redis_client(url: str) -> Any:
    client = redis_from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
    client.ping()  # fail at start, with a clear error, rather than on the first request
    return client


def make_state(
    *,
    redis_url: str | None,
    prefix: str,
    session_items: int,
    session_ttl: int,
    cache_size: int,
    cache_ttl: int,
) -> tuple[SessionStore, ResultCache]:
    """In-process state, or Redis-backed when ``redis_url`` is given."""
    if redis_url:
        client = redis_client(redis_url)
        # Redis down later: degrade to this process's memory rather than fail requests
        return (
            DegradingSessions(
                RedisSessions(client, prefix=prefix, items=session_items, ttl_seconds=session_ttl),
                MemorySessions(items=session_items, ttl_seconds=session_ttl),
            ),
            DegradingCache(
                RedisCache(client, prefix=prefix, ttl_seconds=cache_ttl),
                MemoryCache(size=cache_size, ttl_seconds=cache_ttl),
            ),
        )
    return (
        MemorySessions(items=session_items, ttl_seconds=session_ttl),
        MemoryCache(size=cache_size, ttl_seconds=cache_ttl),
    )
