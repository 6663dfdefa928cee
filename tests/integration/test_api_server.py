"""A real uvicorn server on a free loopback port: the same app over real HTTP."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import uvicorn

from shelfwise.api.app import create_app
from tests.integration.api_fixtures import API_KEY, KNOWN_USER, Served


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_real_http_server_serves_and_takes_events(served: Served) -> None:
    port = _free_port()
    app = create_app(served.settings(), served.url, watch_interval=0.2)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        with httpx.Client(base_url=base, timeout=10) as c:
            read = {"X-API-Key": API_KEY}  # the admin key reads too
            mine = c.get(f"/v1/users/{KNOWN_USER}/recommendations", headers=read)
            assert mine.json()["source"] == "personalised"
            ev = {"type": "view", "user_id": "http-shopper", "item_id": "71053"}
            assert c.post("/v1/events", json=ev, headers={"X-API-Key": API_KEY}).status_code == 202
            assert c.get("/v1/users/http-shopper/recommendations", headers=read).json()["source"] == "session"
            assert c.get("/openapi.json").json()["paths"]["/v1/search"]
            assert (
                c.post("/v1/events", content=b"{not json", headers={"X-API-Key": API_KEY}).status_code == 422
            )
    finally:
        server.should_exit = True
        thread.join(timeout=10)
