"""The binders of ``api.fastpath`` answer exactly as FastAPI's own handler: the same status, content
type and body (apart from per-answer ids and timings) on valid and invalid requests alike."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from shelfwise.api.app import create_app
from shelfwise.api.fastpath import _BINDERS
from tests.integration.api_fixtures import KNOWN_USER, Served, reader

VARYING = ("rec_id", "search_id", "took_ms", "cached")

RECS = f"/v1/users/{KNOWN_USER}/recommendations"
URLS = [
    RECS,
    RECS + "?k=5",
    RECS + "?k=0",
    RECS + "?k=101",
    RECS + "?k=abc",
    RECS + "?k=5&k=6",
    RECS + "?k=",
    RECS + "?scenario=nope",
    RECS + "?scenario=category",
    RECS + "?scenario=category&category=lighting",
    RECS + "?category=",
    RECS + "?brand=" + "b" * 257,
    RECS + "?price_min=-1",
    RECS + "?price_min=1&price_max=0.5",
    RECS + "?price_min=nan",
    RECS + "?item_id=85123A&scenario=product",
    RECS + "?unknown=1",
    RECS + "?session_id=",
    RECS + "?session_id=s-1&k=3",
    "/v1/users/" + "u" * 257 + "/recommendations",
    "/v1/users/%20/recommendations",
    "/v1/recommendations?k=3",
    "/v1/recommendations?k=0",
    "/v1/recommendations?scenario=promotion&session_id=guest-1",
    "/v1/search?q=heart",
    "/v1/search",
    "/v1/search?q=",
    "/v1/search?q=%20",
    "/v1/search?q=%20heart",
    "/v1/search?q=" + "x" * 501,
    "/v1/search?q=heart&size=0",
    "/v1/search?q=heart&page=2&size=5",
    "/v1/search?q=heart&page=101",
    "/v1/search?q=heart&q=bag",
    "/v1/search?q=heart&brand=a&brand=b",
    "/v1/search?q=heart&brand=",
    "/v1/search?q=heart" + "&brand=b" * 21,
    "/v1/search?q=heart&available=yes",
    "/v1/search?q=heart&available=maybe",
    "/v1/search?q=heart&sort=price_asc",
    "/v1/search?q=heart&sort=bogus",
    "/v1/search?q=heart&attribute=colour:red",
    "/v1/search?q=heart&attribute=bad",
    "/v1/search?q=heart&price_min=2&price_max=1",
    "/v1/search?q=heart&category=",
    "/v1/search?q=heart&user_id=" + KNOWN_USER,
    "/v1/search?q=heart&user_id=",
    "/v1/search?q=heart&session_id=s-1",
    "/v1/search?q=heart&other=1",
]


@pytest.fixture
def client(served: Served) -> Iterator[TestClient]:
    app = create_app(served.settings(), served.url, watch_interval=None)
    with TestClient(app, headers=reader(app)) as c:
        yield c


def _answer(client: TestClient, url: str) -> tuple[int, str, Any]:
    r = client.get(url)
    body = r.json()
    if isinstance(body, dict):
        for name in VARYING:
            body.pop(name, None)
    return r.status_code, r.headers["content-type"], body


def test_binders_answer_as_fastapi_does(client: TestClient) -> None:
    assert len(_BINDERS) >= 3
    fast = {url: _answer(client, url) for url in URLS}
    # any dependency override sends every request through FastAPI's own handler
    client.app.dependency_overrides[test_binders_answer_as_fastapi_does] = lambda: None  # type: ignore[attr-defined]
    slow = {url: _answer(client, url) for url in URLS}
    for url in URLS:
        assert fast[url] == slow[url], url
    statuses = {s for s, _, _ in fast.values()}
    assert {200, 422} <= statuses  # both kinds were compared
    assert sum(s == 200 for s, _, _ in fast.values()) >= 15
