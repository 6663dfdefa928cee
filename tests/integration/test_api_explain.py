"""The admin explain route (issue 18): why a shopper's served answer holds each item where it does,
through the API, for an admin only."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from shelfwise.api.app import create_app
from tests.integration.api_fixtures import API_KEY, KNOWN_USER, Served, reader

ADMIN = {"X-API-Key": API_KEY}


@pytest.fixture
def client(served: Served) -> Iterator[TestClient]:
    with TestClient(create_app(served.settings(), served.url, watch_interval=None)) as c:
        yield c


def test_explain_needs_an_admin(client: TestClient) -> None:
    url = f"/v1/admin/explain?user_id={KNOWN_USER}"
    assert client.get(url).status_code == 401
    assert client.get(url, headers=reader(client.app)).status_code == 403


def test_explain_splits_each_served_score_over_the_shoppers_history(client: TestClient) -> None:
    shown = client.get(f"/v1/users/{KNOWN_USER}/recommendations?k=5", headers=ADMIN).json()
    got = client.get(f"/v1/admin/explain?user_id={KNOWN_USER}&k=5", headers=ADMIN)
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["source"] == "personalised" and body["personalised"] and body["method"] == "history"
    assert [r["item_id"] for r in body["served"]] == [i["item_id"] for i in shown["items"]]
    assert [r["item"] for r in body["items"]] == [i["item_id"] for i in shown["items"]]
    assert body["history_items"] > 0
    for pos, row in enumerate(body["items"], start=1):
        att = row["attribution"]
        assert row["served"] and row["position"] == pos
        # item-KNN's score is the sum of the history items' similarities: the shares are exact
        assert att["additive"] is True
        assert att["score"] == pytest.approx(row["served_score"], rel=1e-4)
        # no placement rules here: the model's own rank is the served position
        assert att["model_rank"] == pos
        shares = [c["contribution"] for c in att["contributions"]]
        assert shares == sorted(shares, key=abs, reverse=True) and sum(shares) <= att["score"] + 1e-4
        if pos > 1:
            assert row["above"]["item"] == body["items"][pos - 2]["item"]


def test_explain_says_how_far_an_unserved_item_fell(client: TestClient) -> None:
    full = client.get(f"/v1/admin/explain?user_id={KNOWN_USER}&k=20", headers=ADMIN).json()
    far = full["served"][-1]["item_id"]
    body = client.get(f"/v1/admin/explain?user_id={KNOWN_USER}&k=3&item_id={far}", headers=ADMIN).json()
    (row,) = body["items"]
    assert row["item"] == far and not row["served"] and row["position"] is None
    # its rank among every item (tied scores share the best rank: 20th served, maybe tied higher up)
    assert row["attribution"]["model_rank"] == full["items"][-1]["attribution"]["model_rank"] > 3
    assert any("not in the served top 3" in n for n in body["notes"])


def test_explain_answers_404_for_unknown_ids_and_422_for_bad_input(client: TestClient) -> None:
    unknown_user = client.get("/v1/admin/explain?user_id=no-such-shopper", headers=ADMIN)
    assert unknown_user.status_code == 404 and unknown_user.json()["error"] == "unknown_user"
    unknown_item = client.get(f"/v1/admin/explain?user_id={KNOWN_USER}&item_id=NOPE-0", headers=ADMIN)
    assert unknown_item.status_code == 404 and unknown_item.json()["error"] == "unknown_item"
    assert client.get("/v1/admin/explain", headers=ADMIN).status_code == 422
    assert client.get(f"/v1/admin/explain?user_id={KNOWN_USER}&k=0", headers=ADMIN).status_code == 422


def test_explain_reads_no_history_once_consent_is_off(client: TestClient) -> None:
    off = client.put(f"/v1/users/{KNOWN_USER}/consent", json={"no_personalisation": True}, headers=ADMIN)
    assert off.status_code == 200
    body = client.get(f"/v1/admin/explain?user_id={KNOWN_USER}", headers=ADMIN).json()
    assert body["personalised"] is False and body["method"] == "none" and body["history_items"] == 0
    assert all(row["attribution"] is None for row in body["items"])
    assert any("turned personalisation off" in n for n in body["notes"])
