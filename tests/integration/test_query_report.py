"""The zero-result and low-click query report through the real app (TestClient over a real SQLite
store and registry): searches are served and logged with their query and hit count, clicks citing
them are attributed, and the merchant page, its JSON and the CLI report the queries that found
nothing or were not clicked; a redirect added from there holds on the next search."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from shelfwise.api.app import create_app
from shelfwise.core.access import Role
from tests.integration.api_fixtures import API_KEY, Served
from tests.integration.test_cli import one_json, run

ADMIN = {"X-API-Key": API_KEY}
NOTHING = "zzqx wibblefrob"
SCRIPT = "<script>alert(1)</script> qqzz"


@pytest.fixture
def client(served: Served) -> Iterator[TestClient]:
    app = create_app(served.settings(rate_limit_per_second=0), served.url, watch_interval=None)
    with TestClient(app) as c:
        yield c


def _search(c: TestClient, q: str, **params: Any) -> dict[str, Any]:
    r = c.get("/v1/search", params={"q": q, "size": 5, **params})
    assert r.status_code == 200, r.text
    return dict(r.json())


def _row(rows: list[dict[str, Any]], query: str) -> dict[str, Any] | None:
    return next((r for r in rows if r["query"] == query), None)


def test_zero_result_and_low_click_queries_are_reported_and_fixed_from_the_page(
    client: TestClient,
    served: Served,
) -> None:
    svc = client.app.state.services  # type: ignore[attr-defined]
    for q in (NOTHING, f"  {NOTHING.upper()} "):  # case and spaces do not split a query
        assert _search(client, q)["total"] == 0
    _search(client, SCRIPT)
    unclicked = [_search(client, "lantern") for _ in range(3)]
    assert all(a["total"] > 0 for a in unclicked)
    clicked = [_search(client, "heart", session_id=f"visit-{n}") for n in range(3)]
    events = [
        {
            "type": "click",
            "session_id": f"visit-{n}",
            "item_id": a["hits"][0]["item_id"],
            "search_id": a["search_id"],
            "position": 1,
            "event_id": f"click-{n}",
        }
        for n, a in enumerate(clicked)
    ]
    assert client.post("/v1/events", json={"events": events}, headers=ADMIN).status_code == 202
    assert svc.feedback.flush()

    report = client.get("/merchant/api/queries", headers=ADMIN).json()
    zero = _row(report["zero_result"], NOTHING)
    assert zero is not None and zero["searches"] == 2 and zero["zero_results"] == 2, report
    assert _row(report["zero_result"], "lantern") is None
    low = _row(report["low_click"], "lantern")
    assert low is not None and low["with_results"] == 3 and low["clicked"] == 0 and low["ctr"] == 0
    assert _row(report["low_click"], "heart") is None  # every answer clicked
    assert report["searches"] == 9 and report["zero_result_searches"] >= 2

    # stricter thresholds are the merchant's to choose; bad ones are a clear 422
    assert (
        _row(client.get("/merchant/api/queries?min_searches=4", headers=ADMIN).json()["low_click"], "lantern")
        is None
    )
    for bad in ("days=0", "max_ctr=2", "min_searches=0", "days=abc"):
        assert client.get(f"/merchant/api/queries?{bad}", headers=ADMIN).status_code == 422, bad

    # the page: queries are text, never markup; each row links to the controls with the query filled in
    # (every query with results shown as low-click: the one with markup shows whichever list it is in)
    page = client.get("/merchant/queries?min_searches=1&max_ctr=1", headers=ADMIN)
    assert page.status_code == 200
    assert (
        "<script>alert(1)</script>" not in page.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    )
    assert f'href="/merchant?query={NOTHING.replace(" ", "%20")}#search-controls"' in page.text
    controls = client.get("/merchant", params={"query": NOTHING}, headers=ADMIN).text
    assert f'id="redirect-query" name="query" size="40" value="{NOTHING}"' in controls
    escaped = client.get("/merchant", params={"query": '"><b>x'}, headers=ADMIN).text
    assert '"><b>x' not in escaped and "&#34;&gt;&lt;b&gt;x" in escaped

    # a redirect saved from there holds on the next search, and the report says the query is managed
    bad = client.post(
        "/merchant/api/search/redirects", json={"query": NOTHING, "url": "javascript:x"}, headers=ADMIN
    )
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"].startswith("body.redirects")
    assert (
        client.post("/merchant/api/search/redirects", json={"query": NOTHING}, headers=ADMIN).status_code
        == 422
    )
    assert client.post("/merchant/api/search/redirects", content=b"{", headers=ADMIN).status_code == 422
    saved = client.post(
        "/merchant/api/search/redirects", json={"query": NOTHING, "url": "/help/search"}, headers=ADMIN
    )
    assert saved.status_code == 200, saved.text
    assert _search(client, NOTHING)["redirect"] == "/help/search"
    # the form the page posts (a key in the header here; a session adds its CSRF token)
    form = client.post(
        "/merchant/api/search/synonyms",
        data={"terms": "lantern, lamp", "direction": "two-way"},
        headers=ADMIN,
        follow_redirects=False,
    )
    assert form.status_code == 303 and form.headers["location"].startswith("/merchant?saved=synonym")
    refused = client.post("/merchant/api/search/synonyms", data={"terms": "lamp"}, headers=ADMIN)
    assert refused.status_code == 422 and 'id="search-error"' in refused.text
    again = client.get("/merchant/api/queries", headers=ADMIN).json()
    assert _row(again["zero_result"], NOTHING)["managed"] == ["redirect: /help/search"]  # type: ignore[index]
    assert any("lamp" in m for m in _row(again["low_click"], "lantern")["managed"])  # type: ignore[index]

    # the queries shoppers typed are personal: no credential, no report; an analyst is not enough
    assert client.get("/merchant/api/queries").status_code == 401
    assert client.get("/merchant/queries", follow_redirects=False).status_code == 303
    analyst, _ = svc.keys.create(Role.ANALYST, "tests")
    assert client.get("/merchant/api/queries", headers={"X-API-Key": analyst}).status_code == 403
    assert client.post("/merchant/api/search/redirects", json={"query": "a", "url": "/b"}).status_code == 401

    # the CLI reads the same report from the store
    out = one_json(run("placements", "query-report", "--db", served.url, "--json", cwd=served.root))
    # (a redirected search is not a search answer: still the two of before)
    assert _row(out["zero_result"], NOTHING)["searches"] == 2  # type: ignore[index]
    assert _row(out["low_click"], "lantern")["with_results"] == 3  # type: ignore[index]
    assert (
        run(
            "placements", "query-report", "--db", served.url, "--max-ctr", "3", cwd=served.root, check=False
        ).returncode
        == 2
    )
