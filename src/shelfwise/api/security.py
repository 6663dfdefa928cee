"""Who is calling, a token-bucket rate limiter, a request-size limit, security headers.

One pure ASGI middleware (``Guard``) runs in front of every route. It finds the caller first: an
``X-API-Key`` (a role from the key ring, ``shelfwise.core.access``), an ``Authorization: Bearer``
shopper token, or nobody. A credential that is sent but not valid is answered 401 there, before
any rate-limit bucket is taken, so made-up keys cannot mint buckets. A valid credential gets a
bucket of its own; anonymous callers are limited by client address (``X-Forwarded-For`` only from
the configured proxies). Each route then says which role it needs (``api.auth``).
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from shelfwise.core.access import KeyRing, Role, ShopperTokens, TokenError, hash_key
from shelfwise.core.logging import get_logger
from shelfwise.web.headers import with_security_headers

log = get_logger(__name__)

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

API_KEY_HEADER = "X-API-Key"
__all__ = ["API_KEY_HEADER", "Caller", "CredentialError", "Guard", "Identify", "TokenBucket", "hash_key"]


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent a request: a key's role (and id), a shopper token's shopper, or nobody."""

    role: Role | None = None
    key_id: str | None = None
    shopper: str | None = None  # the shop's id, as the token names it

    @property
    def anonymous(self) -> bool:
        return self.role is None and self.shopper is None

    def bucket(self) -> str | None:
        """The rate-limit bucket of a valid credential (None: anonymous, limited by address)."""
        if self.key_id is not None:
            return "key:" + self.key_id
        if self.shopper is not None:
            return "shopper:" + hash_key(self.shopper)[:16]
        return None


ANONYMOUS = Caller()


class CredentialError(Exception):
    """A credential was sent and is not valid (unknown or revoked key, forged or expired token)."""

    def __init__(self, error: str, detail: str) -> None:
        super().__init__(detail)
        self.error, self.detail = error, detail


class Identify:
    """Finds the caller of a request from its headers (the key ring re-reads its file on change)."""

    def __init__(self, keys: KeyRing, tokens: ShopperTokens) -> None:
        self.keys, self.tokens = keys, tokens

    def __call__(self, scope: Scope) -> Caller:
        key = _header(scope, b"x-api-key")
        auth = _header(scope, b"authorization")
        if key is not None:
            found = self.keys.identify(key.strip())
            if found is None:
                raise CredentialError("api_key_rejected", "this API key is not valid (unknown or revoked)")
            return Caller(role=found[1], key_id=found[0])
        if auth is not None:
            scheme, _, token = auth.strip().partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise CredentialError("credential_rejected", "Authorization must be `Bearer <shopper token>`")
            try:
                return Caller(shopper=self.tokens.verify(token.strip()))
            except TokenError as exc:
                raise CredentialError("token_rejected", str(exc)) from None
        return ANONYMOUS


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


class ClientAddress:
    """The address a request counts against: the connecting peer, or, when the peer is one of
    ``trusted`` proxies, the right-most ``X-Forwarded-For`` entry that is not a trusted proxy
    (entries left of it could be written by the client itself)."""

    def __init__(self, trusted: Sequence[str] = ()) -> None:
        self.trusted = [ipaddress.ip_network(c, strict=False) for c in trusted]

    def _is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.trusted)

    def __call__(self, scope: Scope) -> str:
        client = scope.get("client")
        peer = client[0] if client else "unknown"
        if not self.trusted or not self._is_trusted(peer):
            return peer
        forwarded = _header(scope, b"x-forwarded-for")
        if not forwarded:
            return peer
        for hop in reversed([h.strip() for h in forwarded.split(",") if h.strip()]):
            if not self._is_trusted(hop):
                return hop
        return peer


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
    """Pure ASGI middleware: finds the caller (401 for a credential that is not valid), rate limit
    per valid credential or client address, 413 for bodies over ``max_bytes`` (declared or
    streamed), security headers on every answer, and a hook that sees every request's route,
    status and duration (metrics). The caller is left in ``request.state.caller``."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        limiter: TokenBucket,
        max_bytes: int,
        identify: Callable[[Scope], Caller] | None = None,
        address: Callable[[Scope], str] | None = None,
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
        self.identify = identify or (lambda _scope: ANONYMOUS)
        self.address = address or ClientAddress()

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
                status_box[0] = message["status"]
                headers = with_security_headers(path, list(message.get("headers", [])))
                headers.append((b"x-request-id", rid.encode()))
                message = {**message, "headers": headers}
            await raw_send(message)

        try:
            try:
                caller = self.identify(scope)
            except CredentialError as exc:  # before any bucket: a made-up key gets none
                status_box[0] = 401
                await _json_error(
                    send,
                    401,
                    {"error": exc.error, "detail": exc.detail},
                    [(b"www-authenticate", b'Bearer realm="shelfwise"')],
                )
                return
            scope.setdefault("state", {})["caller"] = caller
            if path not in self.exempt:
                allowed, wait = self.limiter.take(caller.bucket() or "ip:" + self.address(scope))
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
                await self.app(scope, limited_receive, send)
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
