"""The drill's HAProxy configuration resends an event POST (it carries an Idempotency-Key) that a
replica took and died on without answering, instead of closing the client's connection with no
answer. Under load a SIGKILL often caught such a POST in flight (issue 19): its body came after its
headers, and HAProxy only resends a request it holds whole (``option http-buffer-request``).

Real HAProxy (the drill's configuration) in front of two loopback servers: one answers its health
check and then drops every other request unanswered, as a replica killed mid-request; the other
answers 202."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shelfwise.drills.topology import HAPROXY, HAPROXY_CFG, free_port

pytestmark = pytest.mark.skipif(
    shutil.which("haproxy") is None and not Path(HAPROXY).exists(),
    reason="HAProxy is installed by `make system`",
)


def _read_request(conn: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return b"", b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body


def _serve(sock: socket.socket, *, drop_posts: bool, stop: threading.Event) -> None:
    sock.settimeout(0.2)
    while not stop.is_set():
        try:
            conn, _ = sock.accept()
        except TimeoutError:
            continue
        with conn:
            conn.settimeout(5)
            try:
                head, body = _read_request(conn)
            except OSError:
                continue
            if not head:
                continue
            if head.startswith(b"POST") and drop_posts:
                continue  # took the request and died without a byte of answer
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            with contextlib.suppress(OSError):
                while len(body) < length:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    body += chunk
                status = b"200 OK" if head.startswith(b"GET") else b"202 Accepted"
                conn.sendall(b"HTTP/1.1 " + status + b"\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")


@contextlib.contextmanager
def _haproxy(tmp_path: Path) -> Iterator[int]:
    stop = threading.Event()
    socks, threads = [], []
    for drop in (True, False):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        socks.append(s)
        t = threading.Thread(target=_serve, args=(s,), kwargs={"drop_posts": drop, "stop": stop}, daemon=True)
        t.start()
        threads.append(t)
    port, stats = free_port(), free_port()
    servers = "\n".join(
        f"    server {name} 127.0.0.1:{s.getsockname()[1]} check"
        for name, s in zip(("dies", "answers"), socks, strict=True)
    )
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(HAPROXY_CFG.format(port=port, stats_port=stats, servers=servers))
    proc = subprocess.Popen(
        [HAPROXY, "-db", "-f", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                csv = httpx.get(f"http://127.0.0.1:{stats}/stats;csv", timeout=1).text
            except httpx.HTTPError:
                csv = ""
            states = [
                r.split(",")[17] for r in csv.splitlines() if r.startswith("replicas,") and "BACKEND" not in r
            ]
            if len(states) == 2 and all(s == "UP" for s in states):
                break
            time.sleep(0.1)
        else:
            pytest.fail("HAProxy did not see both servers UP")
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        stop.set()
        for t in threads:
            t.join(timeout=2)
        for s in socks:
            s.close()


def _post(conn: socket.socket, n: int) -> None:
    body = b'{"type": "view", "user_id": "u1", "item_id": "i1"}'
    head = (
        f"POST /v1/events HTTP/1.1\r\nHost: drill\r\nContent-Type: application/json\r\n"
        f"Idempotency-Key: drill-test-{n}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    conn.sendall(head)
    time.sleep(0.05)  # the body in a packet of its own, as a client under load sends it
    conn.sendall(body)


def _status(conn: socket.socket) -> int:
    """The answer's status (0: the connection closed without one)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return 0
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        ),
        0,
    )
    while len(body) < length:
        body += conn.recv(65536)
    return int(head.split(b" ")[1])


def test_an_event_post_a_replica_died_on_is_resent_to_the_other(tmp_path: Path) -> None:
    with _haproxy(tmp_path) as port:
        statuses = []
        conn = socket.create_connection(("127.0.0.1", port), timeout=10)
        try:
            for n in range(8):  # one keep-alive client connection, as the drill's load keeps
                try:
                    _post(conn, n)
                    status = _status(conn)
                except OSError:  # closed on us while sending
                    status = 0
                statuses.append(status)
                if status == 0:  # closed on us: a new connection for the next one
                    conn.close()
                    conn = socket.create_connection(("127.0.0.1", port), timeout=10)
        finally:
            conn.close()
    # round robin sent about half of them to the server that dies on them; each was resent
    assert statuses == [202] * 8, statuses
