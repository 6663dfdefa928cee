"""Stitched identities through the API (issue 18, item 6): a shopper's other id (another device, a
guest id that later signed in) answers as the shopper — recommendations, consent — and deletion or
export through either id reaches both. Also the worker's ``IdentityView`` on both store backends."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from shelfwise.api.app import create_app
from shelfwise.store import open_store
from shelfwise.store.identities import Link, link
from shelfwise.trust.identity_sync import IdentityView
from tests.integration.api_fixtures import API_KEY, KNOWN_USER, Served

ADMIN = {"X-API-Key": API_KEY}
DEVICE = "phone-of-17850"  # the shopper's other device: no events of its own
OTHER_USER = "13047"  # another customer of the Online Retail slice


@pytest.fixture
def client(served: Served) -> Iterator[TestClient]:
    with TestClient(create_app(served.settings(), served.url, watch_interval=None)) as c:
        yield c


def _pseudo(client: TestClient, user_id: str) -> str:
    return str(client.app.state.services.pseudonymize(user_id))  # type: ignore[attr-defined]


def _stitch(client: TestClient, served: Served, alias: str, user: str) -> None:
    store = client.app.state.services.store  # type: ignore[attr-defined]
    link(store, [Link("user", _pseudo(client, alias), _pseudo(client, user), "login")])
    time.sleep(0.6)  # every worker's view reads the links again within its 0.5 s poll


def _recs(client: TestClient, user_id: str) -> dict[str, object]:
    got = client.get(f"/v1/users/{user_id}/recommendations", params={"k": 10}, headers=ADMIN)
    assert got.status_code == 200, got.text
    return dict(got.json())


def _items(body: dict[str, object]) -> list[str]:
    return [i["item_id"] for i in body["items"]]  # type: ignore[attr-defined, index]


def test_an_alias_gets_its_shoppers_personal_answer_once_stitched(client: TestClient, served: Served) -> None:
    main = _recs(client, KNOWN_USER)
    assert main["source"] == "personalised"
    before = _recs(client, DEVICE)
    assert before["source"] != "personalised"  # a stranger: nothing is known of this device yet
    _stitch(client, served, DEVICE, KNOWN_USER)
    after = _recs(client, DEVICE)
    assert after["source"] == "personalised" and after["user_id"] == DEVICE
    assert _items(after) == _items(main)
    assert any(str(i["reason"]).startswith("similar to") for i in after["items"])  # type: ignore[attr-defined]
    # another shopper is not touched by the link
    assert _items(_recs(client, OTHER_USER)) != _items(main)


def test_consent_set_through_an_alias_is_the_shoppers(client: TestClient, served: Served) -> None:
    _stitch(client, served, DEVICE, KNOWN_USER)
    off = client.put(f"/v1/users/{DEVICE}/consent", json={"no_personalisation": True}, headers=ADMIN)
    assert off.status_code == 200 and off.json()["no_personalisation"] is True
    assert client.get(f"/v1/users/{KNOWN_USER}/consent", headers=ADMIN).json()["no_personalisation"] is True
    for who in (KNOWN_USER, DEVICE):
        assert _recs(client, who)["source"] != "personalised"


def test_export_through_either_id_lists_both_and_deletion_through_the_alias_erases_both(
    client: TestClient,
    served: Served,
) -> None:
    # the device browsed before it was stitched: its own event, under its own id
    sent = client.post(
        "/v1/events", json={"type": "view", "user_id": DEVICE, "item_id": "22752"}, headers=ADMIN
    )
    assert sent.status_code in (200, 201, 202), sent.text
    _stitch(client, served, DEVICE, KNOWN_USER)
    main_pseudo, device_pseudo = _pseudo(client, KNOWN_USER), _pseudo(client, DEVICE)
    for who in (KNOWN_USER, DEVICE):
        body = client.get(f"/v1/users/{who}/export", headers=ADMIN).json()
        owners = {e["user_id"] for e in body["store"]["events"]}
        assert owners == {main_pseudo, device_pseudo}, (who, owners)
        assert [(r["alias_id"], r["user_id"]) for r in body["store"]["identity_links"]] == [
            (device_pseudo, main_pseudo)
        ]
    other_events = client.get(f"/v1/users/{OTHER_USER}/export", headers=ADMIN).json()["store"]["events"]
    assert other_events

    gone = client.delete(f"/v1/users/{DEVICE}", headers=ADMIN)
    assert gone.status_code == 200, gone.text
    assert gone.json()["verified"] is True and gone.json()["removed"]["stitched_ids"] == 1
    for who in (KNOWN_USER, DEVICE):
        left = client.get(f"/v1/users/{who}/export", headers=ADMIN).json()
        assert left["store"]["events"] == [] and left["store"]["identity_links"] == []
        assert _recs(client, who)["source"] != "personalised"
    report = client.get(f"/v1/admin/users/{KNOWN_USER}/deletion-report", headers=ADMIN).json()
    assert report["verified"] is True
    # the other shopper keeps every event
    assert (
        client.get(f"/v1/users/{OTHER_USER}/export", headers=ADMIN).json()["store"]["events"] == other_events
    )


def test_an_identity_view_follows_new_and_removed_links(store_url: str) -> None:
    with open_store(store_url) as store:
        view = IdentityView(store, poll_seconds=0.0)
        assert view.shopper_of("a") == "a"
        link(store, [Link("user", "a", "main", "login"), Link("session", "s1", "main", "device")])
        assert view.shopper_of("a") == "main" and view.shopper_of("s1") == "s1"  # sessions are no user ids
        link(store, [Link("user", "main", "older", "login")])  # a chain: a → main → older
        assert view.shopper_of("a") == "older" and view.shopper_of("main") == "older"
        big = IdentityView(store, poll_seconds=0.0, snapshot_limit=1)  # read one id at a time
        assert big.shopper_of("a") == "older" and big.shopper_of("nobody") == "nobody"
        slow = IdentityView(store, poll_seconds=3600)
        assert slow.shopper_of("b") == "b"
        link(store, [Link("user", "b", "older", "login")])
        assert slow.shopper_of("b") == "b"  # until its next poll
        assert view.shopper_of("b") == "older"
