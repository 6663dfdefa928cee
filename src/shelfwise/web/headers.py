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


_PAGE = (b"content-security-policy", PAGE_CSP.encode())
_OTHER = (b"content-security-policy", OTHER_CSP.encode())
_NO_STORE = (b"cache-control", b"no-store")


def with_security_headers(path: str, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """``headers`` of an answer to ``path`` plus the security headers it did not set itself."""
    have: set[bytes] = set()
    ctype = b""
    for k, v in headers:
        k = k.lower()
        have.add(k)
        if k == b"content-type":
            ctype = v
    out = [*headers, *(h for h in HEADERS if h[0] not in have)]
    if path.startswith(NO_STORE) and b"cache-control" not in have:
        out.append(_NO_STORE)
    if b"content-security-policy" not in have and not path.startswith(NO_CSP):
        out.append(_PAGE if ctype.startswith(b"text/html") else _OTHER)
    return out


class SecurityHeaders:
    """Adds the security headers to every HTTP answer of ``app`` (an answer's own value wins).
    The API's ``Guard`` calls ``with_security_headers`` itself; this wraps an app without it."""

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

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {
                    **message,
                    "headers": with_security_headers(path, list(message.get("headers", []))),
                }
            await send(message)

        await self.app(scope, receive, send_with_headers)
