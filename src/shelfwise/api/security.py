"""API keys (only their sha256 is configured), a token-bucket rate limiter, a request-size limit.

The limiter and the size check run in one pure ASGI middleware (``Guard``) in front of every
route; the key check is a FastAPI dependency on the routes that write or administer.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import structlog

from shelfwise.core.logging import get_logger

log = get_logger(__name__)

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

API_KEY_HEADER = "X-API-Key"


def hash_key(key: str) -> str:
    """What settings hold for a key: its sha256, hex."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class ApiKeys:
    """Checks a presented key against configured sha256 digests (constant-time compare)."""

    def __init__(self, hashes: Iterable[str]) -> None:
        self.hashes = tuple(h.strip().lower() for h in hashes if h.strip())

    def allows(self, key: str | None) -> bool:
        if not key:
            return False
        digest = hash_key(key)
        return any(hmac.compare_digest(digest, h) for h in self.hashes)


class TokenBucket:
    """``rate`` tokens per second per client, up to ``burst``; ``take`` says whether one was left."""

    def __init__(self, rate: float, burst: int, *, max_clients: int = 100_000) -> None:
        self.rate, self.burst, self.max_clients = rate, float(burst), max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, client: str) -> tuple[bool, float]:
        """(allowed, seconds until the next token)."""
        if self.rate <= 0:
            return True, 0.0
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.pop(client, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            allowed = tokens >= 1.0
            if allowed:
                tokens -= 1.0
            self._buckets[client] = (tokens, now)
            if len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
        return allowed, 0.0 if allowed else (1.0 - tokens) / self.rate


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def client_key(scope: Scope) -> str:
    """Who a request counts against: its API key (hashed) or else its client address."""
    key = _header(scope, API_KEY_HEADER.lower().encode())
    if key:
        return "key:" + hash_key(key)[:16]
    client = scope.get("client")
    return f"ip:{client[0] if client else 'unknown'}"


async def _json_error(
    send: Send, status: int, payload: dict[str, Any], headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyTooLarge(Exception):
    pass


_RID_PREFIX = secrets.token_hex(4)  # per process, so ids of several workers do not collide
_RID_COUNTER = itertools.count()


def _request_id() -> str:
    """16 hex characters, unique per request: a random per-process prefix and a counter (a uuid4
    per request costs a system call for randomness on the hot path)."""
    return f"{_RID_PREFIX}{next(_RID_COUNTER) & 0xFFFFFFFF:08x}"


class Guard:
    """Pure ASGI middleware: rate limit per client, 413 for bodies over ``max_bytes`` (declared or
    streamed), and a hook that sees every request's route, status and duration (metrics)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        limiter: TokenBucket,
        max_bytes: int,
        observe: Callable[[str, str, int, float], None] | None = None,
        exempt: tuple[str, ...] = ("/healthz", "/readyz", "/metrics"),
    ) -> None:
        self.app, self.limiter, self.max_bytes, self.observe, self.exempt = (
            app,
            limiter,
            max_bytes,
            observe,
            exempt,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        path = scope.get("path", "")
        status_box = [500]
        # a request id for the logs: the caller's X-Request-ID (HAProxy or the shop's front end) or a
        # new one; bound to every log line written while serving this request, and sent back
        rid = (_header(scope, b"x-request-id") or _request_id())[:64]
        structlog.contextvars.bind_contextvars(request_id=rid)
        raw_send = send

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {
                    **message,
                    "headers": [*message.get("headers", []), (b"x-request-id", rid.encode())],
                }
            await raw_send(message)

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_box[0] = message["status"]
            await send(message)

        try:
            if path not in self.exempt:
                allowed, wait = self.limiter.take(client_key(scope))
                if not allowed:
                    status_box[0] = 429
                    await _json_error(
                        send,
                        429,
                        {
                            "error": "rate_limited",
                            "detail": "too many requests; slow down",
                            "retry_after": round(wait, 3),
                        },
                        [(b"retry-after", str(max(1, round(wait))).encode())],
                    )
                    return
            declared = _header(scope, b"content-length")
            if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
                status_box[0] = 413
                await _json_error(
                    send, 413, {"error": "request_too_large", "detail": f"body over {self.max_bytes} bytes"}
                )
                return
            seen = 0

            async def limited_receive() -> Message:
                nonlocal seen
                message = await receive()
                if message["type"] == "http.request":
                    seen += len(message.get("body", b""))
                    if seen > self.max_bytes:
                        raise BodyTooLarge
                return message

            try:
                await self.app(scope, limited_receive, send_wrapper)
            except BodyTooLarge:
                status_box[0] = 413
                await _json_error(
                    send, 413, {"error": "request_too_large", "detail": f"body over {self.max_bytes} bytes"}
                )
        finally:
            if status_box[0] >= 500:
                log.error("server error", path=path, status=status_box[0])
            structlog.contextvars.unbind_contextvars("request_id")
            if self.observe is not None:
                route = scope.get("route")
                template = getattr(route, "path", None) or (
                    "(unmatched)" if status_box[0] == 404 else "(other)"
                )
                self.observe(scope.get("method", "?"), template, status_box[0], time.perf_counter() - started)
