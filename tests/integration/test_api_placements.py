"""Placements, merchandising rules and search management through the API, over a real SQLite store
and a trained version: rules saved here shape the next answer (pins at their position, blocked
brands never shown, every rule named in the reason, a list the rules would empty falls back and
says so); bad input is a 404 or a 422 naming the field, never a 500."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from shelfwise.api.app import create_app
from tests.integration.api_fixtures import API_KEY, Served, reader

ADMIN = {"X-API-Key": API_KEY}


@pytest.fixture
def client(served: Served) -> Iterator[TestClient]:
    app = create_app(served.settings(), served.url, watch_interval=None)
    with TestClient(app) as c:
        yield c


def _home(c: TestClient, **params: Any) -> dict[str, Any]:
    r = c.get("/v1/recommendations", params={"k": 10, **params})
    assert r.status_code == 200, r.text
    return r.json()


def _ids(body: dict[str, Any]) -> list[str]:
    return [i["item_id"] for i in body["items"]]


def test_placements_are_listed_read_with_a_read_key_and_saved_with_an_admin_one(client: TestClient) -> None:
    read = reader(client.app)
    assert client.get("/v1/placements").status_code == 401
    listed = client.get("/v1/placements", headers=read).json()["placements"]
    assert {p["name"] for p in listed} >= {"home", "product", "cart", "search", "store", "promotion"}
    assert client.get("/v1/placements/home", headers=read).json()["version"] == 0
    missing = client.get("/v1/placements/no-such-place", headers=read)
    assert missing.status_code == 404 and missing.json()["error"] == "unknown_placement"
    assert "no-such-place" in missing.json()["detail"]
    refused = client.put("/v1/placements/home/rules", json={"rules": []}, headers=read)
    assert refused.status_code == 403
    saved = client.put("/v1/placements/home", json={"k": 8, "candidates": 50}, headers=ADMIN)
    assert saved.status_code == 200 and saved.json()["version"] == 1 and saved.json()["k"] == 8
    history = client.get("/v1/placements/home/history", headers=read).json()["versions"]
    assert 1 in {v["version"] for v in history}


def test_bad_rules_are_refused_naming_the_field(client: TestClient) -> None:
    def put(name: str, rules: Any) -> Any:
        return client.put(f"/v1/placements/{name}/rules", json=rules, headers=ADMIN)

    unknown = put("nowhere", {"rules": []})
    assert unknown.status_code == 404 and unknown.json()["error"] == "unknown_placement"
    bad_position = put("home", {"rules": [{"kind": "pin", "item_id": "85123A", "position": 0}]})
    assert bad_position.status_code == 422
    assert "position" in bad_position.json()["detail"][0]["field"]
    no_item = put("home", {"rules": [{"kind": "pin", "item_id": "NO-SUCH-ITEM", "position": 1}]})
    assert no_item.status_code == 422
    problem = no_item.json()["detail"][0]
    assert "item_id" in problem["field"] and "NO-SUCH-ITEM" in problem["message"]
    window = {"start": "2026-12-01T00:00:00Z", "end": "2026-12-31T00:00:00Z"}
    overlapping = put(
        "home",
        {
            "rules": [
                {"kind": "promotion", "name": "xmas", "item_ids": ["85123A"], "position": 1, **window},
                {"kind": "promotion", "name": "winter", "item_ids": ["85123A"], "position": 2, **window},
            ]
        },
    )
    assert overlapping.status_code == 422, overlapping.text
    assert "xmas" in overlapping.json()["detail"][0]["message"]
    unknown_kind = put("home", {"rules": [{"kind": "teleport", "item_id": "85123A"}]})
    assert unknown_kind.status_code == 422 and unknown_kind.json()["detail"][0]["field"].startswith("body")
    not_object = client.put("/v1/placements/home/rules", json=[1, 2], headers=ADMIN)
    assert not_object.status_code == 422
    assert client.get("/v1/placements/home").status_code == 401  # reading still needs a key
    # nothing bad was saved
    assert client.get("/v1/placements/home", headers=ADMIN).json()["version"] == 0


def test_a_pin_shows_at_its_position_and_a_blocked_brand_never_shows(client: TestClient) -> None:
    before = _ids(_home(client))
    assert len(before) == 10
    pinned = before[-1]  # an item from the bottom of the list, pinned to third place
    branded = before[:2]
    for item_id in branded:  # two of the top items get a brand, which is then blocked
        item = client.get(f"/v1/items/{item_id}").json()
        body = {k: item[k] for k in ("title", "category", "price", "currency")}
        put = client.put(f"/v1/items/{item_id}", json={**body, "brand": "Acme"}, headers=ADMIN)
        assert put.status_code == 200, put.text
    rules = {
        "rules": [
            {"kind": "pin", "item_id": pinned, "position": 3, "name": "hero"},
            {"kind": "block", "brands": ["ACME"], "name": "no acme"},
        ]
    }
    saved = client.put("/v1/placements/home/rules", json=rules, headers=ADMIN)
    assert saved.status_code == 200, saved.text
    started = time.monotonic()
    after = _home(client)
    assert time.monotonic() - started < 1.0
    ids = _ids(after)
    assert ids[2] == pinned and 'pinned at 3 by rule "hero"' in after["items"][2]["reason"]
    assert not set(branded) & set(ids) and len(ids) == 10  # the pool refilled the blocked places
    assert after["placement"] == "home" and after["fallback"] is False
    # the user route and scenario=store are other placements: home's rules do not touch store
    store = _home(client, scenario="store")
    assert store["placement"] is None and set(branded) <= set(_ids(store)) | set(before[10:])
    # and search, another placement, is untouched by home's rules
    cleared = client.put("/v1/placements/home/rules", json={"rules": []}, headers=ADMIN)
    assert cleared.status_code == 200
    assert set(branded) <= set(_ids(_home(client)))


def test_rules_that_would_empty_a_list_fall_back_and_say_so(client: TestClient) -> None:
    first = _home(client)["items"][0]
    category = first["category"]
    assert category, "the slice's items carry an annotated category"
    in_category = _home(client, category=category, scenario="category")
    rule = {"rules": [{"kind": "block", "categories": [category], "name": "hide it"}]}
    assert client.put("/v1/placements/category/rules", json=rule, headers=ADMIN).status_code == 200
    out = _home(client, category=category, scenario="category")
    assert out["fallback"] is True and _ids(out) == _ids(in_category)
    assert any("would leave no items" in n for n in out["notes"])
    assert all("would leave no items" in i["reason"] for i in out["items"])


def test_search_rules_synonyms_and_redirects_hold_without_a_restart(client: TestClient) -> None:
    q = "lantern"
    plain = client.get("/v1/search", params={"q": q, "size": 5}).json()
    assert plain["total"] > 0
    # a synonym, saved through the API, finds what the word alone does not
    none = client.get("/v1/search", params={"q": "glowjar"}).json()
    assert none["total"] == 0
    syn = [{"terms": ["glowjar", "lantern"], "direction": "one-way"}]
    r = client.put("/v1/search/settings/synonyms", json=syn, headers=ADMIN)
    assert r.status_code == 200, r.text
    found = client.get("/v1/search", params={"q": "glowjar"}).json()
    assert found["total"] > 0 and "lantern" in found["synonyms"]
    # a redirect is answered as a redirect, with no hits
    redirects = [{"query": "delivery", "url": "/pages/delivery"}]
    assert client.put("/v1/search/settings/redirects", json=redirects, headers=ADMIN).status_code == 200
    red = client.get("/v1/search", params={"q": "Delivery"}).json()
    assert red["redirect"] == "/pages/delivery" and red["hits"] == []
    # a query rule pins an item the query did not find at the top
    other = client.get("/v1/search", params={"q": "mug", "size": 1}).json()["hits"][0]["item_id"]
    rules = [
        {"query": q, "match": "exact", "rules": {"rules": [{"kind": "pin", "item_id": other, "position": 1}]}}
    ]
    r = client.put("/v1/search/settings/query_rules", json=rules, headers=ADMIN)
    assert r.status_code == 200, r.text
    pinned = client.get("/v1/search", params={"q": q, "size": 5}).json()
    assert pinned["hits"][0]["item_id"] == other and "pinned at 1" in pinned["hits"][0]["reason"]
    assert any("query rule" in n for n in pinned["notes"])
    bad = client.put("/v1/search/settings/redirects", json=[{"query": "x"}], headers=ADMIN)
    assert bad.status_code == 422 and "redirects" in bad.json()["detail"][0]["field"]
    settings = client.get("/v1/search/settings", headers=reader(client.app)).json()
    assert settings["version"] >= 3 and settings["redirects"][0]["url"] == "/pages/delivery"


def test_an_annotated_item_read_back_can_be_written_back_unchanged(client: TestClient) -> None:
    item_id = _ids(_home(client))[0]
    item = client.get(f"/v1/items/{item_id}").json()
    assert isinstance(item["attributes"].get("annotated", []), list)
    body = {
        k: item[k] for k in ("title", "description", "category", "brand", "price", "currency", "attributes")
    }
    put = client.put(f"/v1/items/{item_id}", json=body, headers=ADMIN)
    assert put.status_code == 200, put.text
    assert client.get(f"/v1/items/{item_id}").json()["attributes"] == item["attributes"]
    bad = {**body, "attributes": {"sizes": [{"nested": "object"}]}}
    assert client.put(f"/v1/items/{item_id}", json=bad, headers=ADMIN).status_code == 422
