"""A small HTTP/1.1 load generator for loopback benchmarks (asyncio, raw sockets, keep-alive).

It runs in its own process so the client never shares an interpreter (or a GIL) with the server:

    spec = {"port": 8000, "requests": ["GET /healthz"], "seconds": 5, "connections": 16, "rate": 300}
    echo "$spec" | python -m benchmarks.loadgen      # one JSON result on stdout

Two modes:
- **open loop** (``rate`` given): request ``i`` is due at ``start + i / rate`` whatever the server
  does; its latency runs from that due time, so time spent waiting for a free connection counts
  (no coordinated omission). This is the mode for "p99 at the stated rate".
- **closed loop** (``rate`` null): each connection sends its next request as soon as the last one
  answered; the request rate reached is the throughput at saturation.

A request is ``"METHOD /path"`` or ``{"method", "path", "body" (JSON), "headers"}``; they are sent
round-robin (with ``no_repeat``, each at most once). It is lean on purpose (pre-encoded requests,
no HTTP library) so that on a small machine the client costs far less CPU than the server.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np


def encode(request: str | dict[str, Any], host: str, port: int) -> bytes:
    if isinstance(request, str):
        method, path = request.split(" ", 1)
        request = {"method": method, "path": path}
    body = b""
    headers = {"Host": f"{host}:{port}", **request.get("headers", {})}
    if request.get("body") is not None:
        body = json.dumps(request["body"], separators=(",", ":")).encode()
        headers["Content-Type"] = "application/json"
    if body or request["method"] in ("POST", "PUT", "PATCH"):
        headers["Content-Length"] = str(len(body))
    head = f"{request['method']} {request['path']} HTTP/1.1\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    return head.encode("latin-1") + body


@dataclass
class Outcome:
    latencies: list[float]
    statuses: dict[int, int]
    transport_errors: int
    bodies: list[bytes]


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    chunked = False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if not chunked:
        return status, await reader.readexactly(length)
    body = b""
    while True:
        size = int((await reader.readuntil(b"\r\n")).strip(), 16)
        chunk = await reader.readexactly(size + 2)
        if size == 0:
            return status, body
        body += chunk[:-2]


class _Conn:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def send(self, raw: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        try:
            self.writer.write(raw)
            return await _read_response(self.reader)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def _run(spec: dict[str, Any]) -> Outcome:
    host, port = spec.get("host", "127.0.0.1"), int(spec["port"])
    raws = [encode(r, host, port) for r in spec["requests"]]
    seconds, rate = float(spec["seconds"]), spec.get("rate")
    connections = int(spec.get("connections", 16))
    keep_bodies = int(spec.get("keep_bodies", 0))
    no_repeat = bool(spec.get("no_repeat", False))  # stop when every request was sent once
    out = Outcome([], {}, 0, [])
    conns = [_Conn(host, port) for _ in range(connections)]

    async def one(conn: _Conn, raw: bytes, due: float) -> None:
        try:
            status, body = await conn.send(raw)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            out.transport_errors += 1
            return
        out.latencies.append(time.perf_counter() - due)
        out.statuses[status] = out.statuses.get(status, 0) + 1
        if len(out.bodies) < keep_bodies:
            out.bodies.append(body)

    start = time.perf_counter() + 0.05
    stop = start + seconds
    if rate is None:

        async def closed(n: int) -> None:
            i = n
            await asyncio.sleep(max(0.0, start - time.perf_counter()))
            while (now := time.perf_counter()) < stop and not (no_repeat and i >= len(raws)):
                await one(conns[n], raws[i % len(raws)], now)
                i += connections

        await asyncio.gather(*(closed(n) for n in range(connections)))
    else:
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()

        async def worker(conn: _Conn) -> None:
            while (job := await queue.get()) is not None:
                await one(conn, job[1], job[0])

        workers = [asyncio.create_task(worker(c)) for c in conns]
        total = int(seconds * float(rate))
        if no_repeat:
            total = min(total, len(raws))
        for i in range(total):
            due = start + i / float(rate)
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            queue.put_nowait((due, raws[i % len(raws)]))
        for _ in workers:
            queue.put_nowait(None)
        await asyncio.gather(*workers)
    out.wall = time.perf_counter() - start  # type: ignore[attr-defined]
    for c in conns:
        c.close()
    return out


def summarise(out: Outcome, wall: float) -> dict[str, Any]:
    ms = np.asarray(out.latencies) * 1000 if out.latencies else np.zeros(1)
    ok = sum(n for s, n in out.statuses.items() if 200 <= s < 300)
    return {
        "requests": len(out.latencies),
        "rps": round(len(out.latencies) / wall, 1),
        "ok": ok,
        "non_2xx": len(out.latencies) - ok + out.transport_errors,
        "statuses": {str(s): n for s, n in sorted(out.statuses.items())},
        "transport_errors": out.transport_errors,
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p90_ms": round(float(np.percentile(ms, 90)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "max_ms": round(float(ms.max()), 2),
    }


def run_spec(spec: dict[str, Any]) -> dict[str, Any]:
    out = asyncio.run(_run(spec))
    result = summarise(out, out.wall)  # type: ignore[attr-defined]
    result["rate"] = spec.get("rate")
    result["connections"] = spec.get("connections", 16)
    result["seconds"] = spec["seconds"]
    if spec.get("keep_bodies"):
        result["bodies"] = [b.decode("utf-8", "replace") for b in out.bodies]
    return result


def main() -> int:
    spec = json.loads(sys.stdin.read())
    print(json.dumps(run_spec(spec)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
