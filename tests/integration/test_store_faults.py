"""A hung or down PostgreSQL never costs a 500, a blocked thread for ever, or an acknowledged event
(issue 13, finding 11). The real server on 127.0.0.1:5432: hung = another session holding
ACCESS EXCLUSIVE locks on the tables a request needs; down = a TCP proxy in front of it cut."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
import sqlalchemy as sa
import uvicorn

from shelfwise.api.app import create_app
from shelfwise.core.settings import Settings
from shelfwise.data.privacy import Pseudonymizer
from shelfwise.data.readers import get_format
from shelfwise.drills.proxy import TcpProxy
from shelfwise.features.dataset import Dataset
from shelfwise.registry import ModelRegistry, train_version
from shelfwise.store import open_store
from shelfwise.store.ingest import ingest_events
from tests.conftest import TEST_KEY
from tests.integration.api_fixtures import API_KEY, FAST, KNOWN_USER, Served
from tests.integration.test_api_server import _free_port

AUTH = {"X-API-Key": API_KEY}
ITEM = "85123A"  # on the first invoice of the Online Retail slice
OTHER_USER = "13047"  # another shopper of the slice


@pytest.fixture
def shop(fresh_pg_url: str, retail_slice: Path, tmp_path: Path) -> Iterator[tuple[Served, str, TcpProxy]]:
    """The retail slice in PostgreSQL, a model trained on it, and a proxy the test can cut."""
    served = Served(tmp_path)
    with open_store(fresh_pg_url) as store:
        ingest_events(store, retail_slice, get_format("online-retail"), served.settings())
        train_version(Dataset.from_store(store), ModelRegistry(served.models), FAST)
    target = sa.make_url(fresh_pg_url)
    with TcpProxy((target.host or "127.0.0.1", target.port or 5432)) as proxy:
        yield served, target.set(port=proxy.port).render_as_string(hide_password=False), proxy


def _conninfo(url: str) -> str:
    u = sa.make_url(url)
    return f"host={u.host} port={u.port or 5432} dbname={u.database}" + (
        f" user={u.username}" if u.username else ""
    )


def _serve(settings: Settings, url: str) -> tuple[uvicorn.Server, threading.Thread, str]:
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings, url), host="127.0.0.1", port=port, log_level="error")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.05)
    return server, thread, base


def _stored(url: str, event_id: str) -> bool:
    with open_store(url) as store:
        user = Pseudonymizer(TEST_KEY.encode())(KNOWN_USER)
        return any(e.event_id == event_id for e in store.events_for_user(user))


def _eventually(check: object, seconds: float = 30) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.2)
    return False


def test_finding_11_a_hung_or_down_store_never_costs_a_500_or_an_event(
    shop: tuple[Served, str, TcpProxy], fresh_pg_url: str
) -> None:
    served, url, proxy = shop
    settings = served.settings(
        store_statement_timeout_ms=1000, store_request_timeout_ms=1000, store_connect_timeout_seconds=2
    )
    server, thread, base = _serve(settings, url)
    lock = psycopg.connect(_conninfo(fresh_pg_url))
    try:
        with httpx.Client(base_url=base, timeout=15) as c:
            assert c.get(f"/v1/items/{ITEM}").status_code == 200

            # hung: a session holds the tables; every request still answers within seconds
            lock.execute("LOCK TABLE events, items IN ACCESS EXCLUSIVE MODE")
            started = time.perf_counter()
            ev = {"event_id": "hung-1", "type": "view", "user_id": KNOWN_USER, "item_id": ITEM}
            posted = c.post("/v1/events", json=ev, headers=AUTH)
            assert posted.status_code == 202 and posted.headers["X-Shelfwise-Journaled"] == "true"
            assert time.perf_counter() - started < 5
            item = c.get(f"/v1/items/{ITEM}")
            assert (
                item.status_code == 503
                and item.headers["Retry-After"]
                and item.json()["error"] == "store_unavailable"
            )
            found = c.get("/v1/search", params={"q": "heart", "user_id": KNOWN_USER}, headers=AUTH).json()
            assert (
                found["personalised"] is False and "store did not answer" in found["notice"] and found["hits"]
            )
            recs = c.get(f"/v1/users/{KNOWN_USER}/recommendations", headers=AUTH)  # models are in memory
            assert recs.status_code == 200 and recs.json()["source"] == "personalised"
            lock.rollback()
            assert _eventually(lambda: _stored(fresh_pg_url, "hung-1"))  # the journal replayed it

            # down: nothing listens behind the proxy
            proxy.cut()
            ev2 = {**ev, "event_id": "down-1"}
            posted = c.post("/v1/events", json=ev2, headers=AUTH)
            assert posted.status_code == 202 and posted.headers["X-Shelfwise-Journaled"] == "true"
            assert c.get(f"/v1/items/{ITEM}").status_code == 503
            put = c.put("/v1/items/NEW-1", json={"title": "x"}, headers=AUTH)
            assert put.status_code == 503 and put.headers["Retry-After"]
            gone = c.delete(f"/v1/users/{OTHER_USER}", headers=AUTH)
            assert gone.status_code == 503 and "store" in gone.json()["failed"], gone.text
            found = c.get("/v1/search", params={"q": "heart", "user_id": KNOWN_USER}, headers=AUTH).json()
            assert found["personalised"] is False and found["notice"]
            assert c.get("/readyz").status_code == 503
            metrics = c.get("/metrics").text
            proxy.restore()
            assert _eventually(lambda: _stored(fresh_pg_url, "down-1"))
            assert "shelfwise_event_journal_replay_failures_total" in metrics
            assert c.delete(f"/v1/users/{OTHER_USER}", headers=AUTH).json()["verified"] is True
    finally:
        lock.rollback()
        lock.close()
        proxy.restore()
        server.should_exit = True
        thread.join(timeout=15)


def test_issue_19_a_hung_store_read_never_freezes_the_event_loop(
    shop: tuple[Served, str, TcpProxy], fresh_pg_url: str
) -> None:
    """The merchandising rules, experiment list, consent flags and shopper links are re-read from
    the store when their polls are due, from inside a request. Such a read that hangs (a session
    holds those tables; the statement timeout would end the wait after 6 s) keeps one request
    waiting at most the request's store timeout (1 s) per poll, then the values last read answer;
    it never holds the worker's event loop: /healthz, and a recommendation asked meanwhile (the
    rules last read still hold), answer at once."""
    served, url, _proxy = shop
    settings = served.settings(
        store_statement_timeout_ms=6000, store_request_timeout_ms=1000, store_connect_timeout_seconds=2
    )
    server, thread, base = _serve(settings, url)
    lock = psycopg.connect(_conninfo(fresh_pg_url))
    anonymous = {"session_id": "guest-19", "scenario": "home"}
    try:
        with httpx.Client(base_url=base, timeout=30) as c:
            assert c.get("/v1/recommendations", params=anonymous).status_code == 200  # rules read
            lock.execute(
                "LOCK TABLE merch_documents, experiments, consent, identity_map IN ACCESS EXCLUSIVE MODE"
            )
            time.sleep(0.6)  # the rules' poll (0.5 s) is due: the next answer reads the store
            slow: dict[str, float] = {}

            def ask() -> None:
                started = time.perf_counter()
                answer = httpx.get(f"{base}/v1/recommendations", params=anonymous, timeout=90)
                slow["status"], slow["seconds"] = answer.status_code, time.perf_counter() - started

            asker = threading.Thread(target=ask)
            asker.start()
            time.sleep(0.2)  # it waits on the locked table now
            meanwhile = time.perf_counter()
            other = c.get("/v1/recommendations", params={**anonymous, "session_id": "guest-20"})
            other_seconds = time.perf_counter() - meanwhile
            health: list[float] = []
            for _ in range(15):
                started = time.perf_counter()
                assert c.get("/healthz").status_code == 200
                health.append(time.perf_counter() - started)
                time.sleep(0.1)
            # the polls it finds due (rules, experiments, consent, shopper links) each wait at most the
            # request's 1 s for the store, then the value last read answers: it ends while the lock holds
            asker.join(timeout=30)  # the lock is still held: released in ``finally``
            assert not asker.is_alive(), slow
            assert slow.get("status") == 200 and 0.9 < slow["seconds"] < 8.0, slow
            assert max(health) < 0.5, health
            assert other.status_code == 200 and other_seconds < 0.5, other_seconds
    finally:
        lock.rollback()
        lock.close()
        server.should_exit = True
        thread.join(timeout=15)
