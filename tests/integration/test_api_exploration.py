"""The exploration slot through the real app: a placement opts in with its ``exploration`` setting;
its answers then carry the slot's propensity, explored items say so in their reason, the
impressions hold the propensities, and a candidate policy is evaluated off-policy from those logs.
A placement without the setting is untouched."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from shelfwise.api.app import create_app
from shelfwise.evaluation.off_policy import ope_from_logs
from shelfwise.store.impressions import get_impressions
from tests.integration.api_fixtures import API_KEY, Served, reader

ADMIN = {"X-API-Key": API_KEY}


@pytest.fixture
def client(served: Served) -> Iterator[TestClient]:
    app = create_app(served.settings(), served.url, watch_interval=None)
    with TestClient(app, headers=reader(app)) as c:
        yield c


def _svc(c: TestClient) -> Any:
    return c.app.state.services  # type: ignore[attr-defined]


def _ids(body: dict[str, Any]) -> list[str]:
    return [i["item_id"] for i in body["items"]]


def _explore(c: TestClient, placement: str, **setting: Any) -> None:
    r = c.put(f"/v1/placements/{placement}", json={"exploration": setting}, headers=ADMIN)
    assert r.status_code == 200, r.text
    assert r.json()["exploration"]["slot"] == setting["slot"]


def test_an_opted_in_placement_explores_its_slot_and_logs_the_propensity(client: TestClient) -> None:
    params = {"k": 5, "scenario": "home"}
    plain = client.get("/v1/recommendations", params=params).json()
    assert plain["exploration"] is None
    ranked = _ids(client.get("/v1/recommendations", params={**params, "k": 8}).json())
    # slot 4 of 5, picking among the ranker's items 4..7: two of them are below the list
    _explore(client, "home", policy="epsilon_greedy", slot=4, epsilon=1.0, pool=4)
    bodies = [
        client.get("/v1/recommendations", params={**params, "session_id": f"s{n}"}).json() for n in range(60)
    ]
    shown_at_slot = set()
    for b in bodies:
        ex = b["exploration"]
        assert ex["policy"] == "epsilon_greedy" and ex["slot"] == 4 and ex["propensity"] == 0.25
        items = _ids(b)
        assert len(items) == 5 and items[:3] == ranked[:3]  # above the slot: the ranker's order
        shown_at_slot.add(items[3])
        reason = b["items"][3]["reason"]
        assert ex["explored"] == (items[3] != ranked[3])
        assert reason.startswith("exploration:") == ex["explored"]
    assert shown_at_slot == set(ranked[3:7])  # each of the pool shows (60 draws of 1 in 4)
    assert any(set(_ids(b)) - set(ranked[:5]) for b in bodies)  # explored from below the list

    # another placement without the setting is untouched
    store_page = client.get("/v1/recommendations", params={"k": 5, "scenario": "store"}).json()
    assert store_page["exploration"] is None

    svc = _svc(client)
    assert svc.feedback.flush()
    logged = get_impressions(svc.store, [b["rec_id"] for b in bodies] + [store_page["rec_id"]])
    for b in bodies:
        imp = logged[b["rec_id"]]
        assert list(imp.items) == _ids(b) and list(imp.propensities or []) == [1.0, 1.0, 1.0, 0.25, 1.0]
    assert logged[store_page["rec_id"]].propensities is None

    # clicks citing the slot, then a candidate policy evaluated from the logs
    clicks = [
        {"type": "click", "session_id": f"s{n}", "item_id": _ids(b)[3], "rec_id": b["rec_id"], "position": 4}
        for n, b in enumerate(bodies)
        if _ids(b)[3] == ranked[5]
    ]
    assert client.post("/v1/events", json={"events": clicks}, headers=ADMIN).status_code == 202
    assert svc.feedback.flush()
    result = ope_from_logs(svc.store, placement="home", slot=3, target=lambda imp: {ranked[5]: 1.0})
    assert result["logs"] >= 60 and result["min_propensity"] == 0.25
    # every click landed on ranked[5]: the policy always showing it is clicked every time
    assert result["estimates"]["snips"] == pytest.approx(1.0)


def test_no_exploration_at_epsilon_zero_and_bad_settings_are_refused(client: TestClient) -> None:
    _explore(client, "home", slot=2, epsilon=0.0, pool=3)
    ranked = _ids(client.get("/v1/recommendations", params={"k": 6}).json())
    for _ in range(5):
        b = client.get("/v1/recommendations", params={"k": 6}).json()
        assert _ids(b) == ranked and b["exploration"]["explored"] is False
        assert b["exploration"]["propensity"] == 1.0
    for body, field in (
        ({"exploration": {"slot": 11}}, "slot"),  # beyond k (10)
        ({"exploration": {"epsilon": 1.5}}, "epsilon"),
        ({"exploration": {"pool": 1}}, "pool"),
        ({"source": "search", "exploration": {"slot": 2}}, "search"),
        ({"exploration": {"policy": "random"}}, "policy"),
    ):
        r = client.put("/v1/placements/home", json=body, headers=ADMIN)
        assert r.status_code == 422 and field in r.text, (body, r.text)


def test_a_pinned_slot_is_not_explored(client: TestClient) -> None:
    ranked = _ids(client.get("/v1/recommendations", params={"k": 5}).json())
    _explore(client, "home", slot=2, epsilon=1.0, pool=3)
    rule = {"rules": [{"kind": "pin", "item_id": ranked[4], "position": 2, "name": "pin it"}]}
    saved = client.put("/v1/placements/home/rules", json=rule, headers=ADMIN)
    assert saved.status_code == 200, saved.text
    for _ in range(10):
        b = client.get("/v1/recommendations", params={"k": 5}).json()
        assert _ids(b)[1] == ranked[4] and b["exploration"] is None


def test_thompson_sampling_slot_logs_its_monte_carlo_propensity(client: TestClient) -> None:
    _explore(client, "home", policy="thompson", slot=1, pool=3)
    params = {"k": 3}
    bodies = [
        client.get("/v1/recommendations", params={**params, "session_id": f"t{n}"}).json() for n in range(30)
    ]
    for b in bodies:
        ex = b["exploration"]
        assert ex["policy"] == "thompson" and ex["slot"] == 1 and 0 < ex["propensity"] <= 1
        if ex["explored"]:
            assert b["items"][0]["reason"].startswith("exploration: a Thompson-sampling pick")
    assert len({_ids(b)[0] for b in bodies}) > 1  # the slot's item varies (no clicks: wide posteriors)
    svc = _svc(client)
    assert svc.feedback.flush()
    logged = get_impressions(svc.store, [b["rec_id"] for b in bodies])
    for b in bodies:
        props = logged[b["rec_id"]].propensities
        assert (
            props is not None and props[0] == b["exploration"]["propensity"] and list(props[1:]) == [1.0, 1.0]
        )
