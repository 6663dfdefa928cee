"""Security headers on every answer: a Content-Security-Policy that runs only this site's own
script files (no inline script, no ``eval``, no plugin, no framing), ``nosniff`` and a referrer
policy that keeps URLs (a search query, a shopper id) from leaking to other sites.

A pure ASGI middleware, so streaming answers and the API's own error answers get them too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

PAGE_CSP = (
    "default-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)
# anything that is not a page (JSON, scripts, images) needs nothing at all when opened on its own
OTHER_CSP = "default-src 'none'; frame-ancestors 'none'"
# FastAPI's interactive docs load Swagger UI / ReDoc from a CDN with an inline bootstrap script; they
# carry no data, so they keep working without the CSP (the other headers still apply)
NO_CSP = ("/docs", "/redoc")
# answers that hold per-shopper rows or a session's CSRF token: never kept by a browser or proxy cache
# (the back button after signing out must not show them again)
NO_STORE = ("/analytics", "/ops", "/sign-in", "/sign-out")

HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)

Message = dict[str, Any]
ASGIApp = Callable[
    [dict[str, Any], Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]
]


class SecurityHeaders:
    """Adds the security headers to every HTTP answer of ``app`` (an answer's own value wins)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(
        self,
        scope: dict[str, Any],
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        csp = not path.startswith(NO_CSP)
        no_store = path.startswith(NO_STORE)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                have = {k.lower(): v for k, v in message.get("headers", [])}
                extra = list(HEADERS)
                if no_store:
                    extra.append((b"cache-control", b"no-store"))
                if csp:
                    page = have.get(b"content-type", b"").startswith(b"text/html")
                    extra.append((b"content-security-policy", (PAGE_CSP if page else OTHER_CSP).encode()))
                message = {
                    **message,
                    "headers": [*message.get("headers", []), *((k, v) for k, v in extra if k not in have)],
                }
            await send(message)

        await self.app(scope, receive, send_with_headers)
