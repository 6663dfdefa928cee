"""What uvicorn needs beyond its defaults to serve this app fast.

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
import socket

from uvicorn.protocols.http.h11_impl import H11Protocol


class NoDelayH11Protocol(H11Protocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):  # not a TCP socket after all: nothing to tune
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)
