"""Running the app under uvicorn (``run_server``), with what uvicorn needs beyond its defaults to
serve it fast.

With ``--workers N`` uvicorn binds the listening socket itself, with ``proto=0``; asyncio then
skips ``TCP_NODELAY`` on every accepted connection (it sets it only when ``proto`` is TCP), and
because h11 writes a response's head and body separately, Nagle's algorithm meets the client's
delayed ACK: every keep-alive response after the first waits ~40 ms on Linux. This protocol sets
``TCP_NODELAY`` itself, whatever the socket's origin.

    uvicorn.run(..., workers=2, http=NoDelayH11Protocol)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket

from uvicorn.protocols.http.h11_impl import H11Protocol

from shelfwise.core.settings import Settings


class NoDelayH11Protocol(H11Protocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):  # not a TCP socket after all: nothing to tune
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)


def run_server(settings: Settings, store_url: str, *, host: str, port: int, workers: int = 1) -> None:
    """Serve the app over ``store_url`` until interrupted. With several workers each process builds
    its own app from the environment (``app_from_env``): the store URL, the var directory and the
    admin key hashes are put there first, so every worker accepts the same keys."""
    import uvicorn

    if workers == 1:
        from shelfwise.api.app import create_app

        app = create_app(settings, store_url)
        uvicorn.run(app, host=host, port=port, log_level="warning", http=NoDelayH11Protocol)
        return
    os.environ["SHELFWISE_DB_URL"] = store_url
    os.environ["SHELFWISE_VAR_DIR"] = str(settings.var_dir)
    if not settings.api_key_hashes:
        from shelfwise.serving.keys import admin_key_hashes

        os.environ["SHELFWISE_API_KEY_HASHES"] = json.dumps(admin_key_hashes(settings))
    uvicorn.run(
        "shelfwise.api.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
        http=NoDelayH11Protocol,  # without it, ~40 ms per keep-alive response
    )
