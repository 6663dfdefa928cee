"""Data rights through the API (issue 18): consent switches personalisation off at once, and an
export holds the shopper's rows and nobody else's; both for an admin only."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from shelfwise.api.app import create_app
from tests.integration.api_fixtures import API_KEY, KNOWN_USER, Served

ADMIN = {"X-API-Key": API_KEY}
OTHER_USER = "13047"  # another customer of the Online Retail slice


@pytest.fixture
def client(served: Served) -> Iterator[TestClient]:
    with TestClient(create_app(served.settings(), served.url, watch_interval=None)) as c:
        yield c


def test_consent_turns_personalisation_off_at_once_and_back_on(client: TestClient) -> None:
    url = f"/v1/users/{KNOWN_USER}/recommendations"
    assert client.get(url, headers=ADMIN).json()["source"] == "personalised"
    assert client.get(f"/v1/users/{KNOWN_USER}/consent", headers=ADMIN).json()["no_personalisation"] is False
    off = client.put(f"/v1/users/{KNOWN_USER}/consent", json={"no_personalisation": True}, headers=ADMIN)
    assert off.status_code == 200 and off.json()["no_personalisation"] is True
    body = client.get(url, headers=ADMIN).json()
    assert body["source"] != "personalised"
    assert not any(i["reason"].startswith("similar to") for i in body["items"])
    assert any("turned personalisation off" in n for n in body["notes"])
    on = client.put(f"/v1/users/{KNOWN_USER}/consent", json={"no_personalisation": False}, headers=ADMIN)
    assert on.json()["no_personalisation"] is False
    assert client.get(url, headers=ADMIN).json()["source"] == "personalised"


def test_consent_and_export_need_an_admin_and_refuse_bad_input(client: TestClient) -> None:
    assert client.get(f"/v1/users/{KNOWN_USER}/export").status_code == 401
    assert client.put(f"/v1/users/{KNOWN_USER}/consent", json={"no_personalisation": True}).status_code == 401
    bad = client.put(
        f"/v1/users/{KNOWN_USER}/consent", json={"no_personalisation": "sometimes"}, headers=ADMIN
    )
    assert bad.status_code == 422
    extra = client.put(f"/v1/users/{KNOWN_USER}/consent", json={"marketing": True}, headers=ADMIN)
    assert extra.status_code == 422


def test_an_export_holds_the_shoppers_events_and_nothing_of_another(client: TestClient) -> None:
    mine = client.get(f"/v1/users/{KNOWN_USER}/export", headers=ADMIN)
    assert mine.status_code == 200, mine.text
    body = mine.json()
    events = body["store"]["events"]
    assert body["requested_as"] == KNOWN_USER and events and body["counts"]["events"] == len(events)
    pseudo = body["user_id"]
    assert all(e.get("user_id") in (None, pseudo) for e in events)
    theirs = client.get(f"/v1/users/{OTHER_USER}/export", headers=ADMIN).json()
    assert theirs["user_id"] != pseudo and theirs["store"]["events"]
    assert not {e["event_id"] for e in theirs["store"]["events"]} & {e["event_id"] for e in events}
