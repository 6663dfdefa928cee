"""The feedback loop through the real app (TestClient over a real SQLite store and registry): every
answer carries an id and is logged as an impression; events cite answers and are credited (or,
citing an unknown or another shopper's answer, stored and counted); online metrics in /metrics;
experiment arms choose the model version served."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from shelfwise.api.app import create_app
from shelfwise.store.impressions import attribution_counts, get_impressions
from tests.integration.api_fixtures import API_KEY, KNOWN_USER, Served, reader

AUTH = {"X-API-Key": API_KEY}


@pytest.fixture
def client(served: Served) -> Iterator[TestClient]:
    app = create_app(served.settings(), served.url, watch_interval=None)
    with TestClient(app, headers=reader(app)) as c:
        yield c


def _svc(c: TestClient) -> Any:
    return c.app.state.services  # type: ignore[attr-defined]


def _metric(c: TestClient, name: str, **labels: str) -> float:
    return float(_svc(c).metrics.registry.get_sample_value(name, labels) or 0.0)


def _items(body: dict[str, Any]) -> list[str]:
    return [i["item_id"] for i in body.get("items", body.get("hits", []))]


def test_every_answer_has_an_id_and_is_logged_as_an_impression(client: TestClient) -> None:
    svc = _svc(client)
    pseudo = svc.pseudonymize(KNOWN_USER)
    mine = client.get(f"/v1/users/{KNOWN_USER}/recommendations", params={"k": 5}).json()
    guest = client.get("/v1/recommendations", params={"k": 4, "session_id": "visit-1"}).json()
    similar = client.get("/v1/items/85123A/similar", params={"k": 3}).json()
    cart = client.post("/v1/cart/recommendations", json={"items": ["85123A"], "k": 3}).json()
    found = client.get("/v1/search", params={"q": "heart", "user_id": KNOWN_USER, "size": 5}).json()
    ids = [mine["rec_id"], guest["rec_id"], similar["rec_id"], cart["rec_id"], found["search_id"]]
    assert all(isinstance(i, str) and len(i) == 22 for i in ids) and len(set(ids)) == 5
    again = client.get(f"/v1/users/{KNOWN_USER}/recommendations", params={"k": 5}).json()
    assert again["cached"] and again["rec_id"] != mine["rec_id"]  # each answer shown is one impression

    assert svc.feedback.flush()
    logged = get_impressions(svc.store, [*ids, again["rec_id"]])
    assert set(logged) == {*ids, again["rec_id"]}
    rec = logged[mine["rec_id"]]
    assert (rec.kind, rec.placement, rec.user_id, rec.version) == (
        "rec",
        "home",
        pseudo,
        mine["model_version"],
    )
    assert list(rec.items) == _items(mine) and rec.experiment is None and rec.arm is None
    g = logged[guest["rec_id"]]
    assert g.user_id is None and g.session_id == "visit-1" and list(g.items) == _items(guest)
    assert logged[similar["rec_id"]].placement == "product" and logged[cart["rec_id"]].placement == "cart"
    s = logged[found["search_id"]]
    assert (s.kind, s.placement, s.user_id, s.version) == ("search", "search", pseudo, found["model_version"])
    assert list(s.items) == _items(found)
    assert _metric(client, "shelfwise_impressions_total", result="logged") == 6

    schema = client.get("/openapi.json").json()["components"]["schemas"]
    assert "rec_id" in schema["RecommendationsOut"]["properties"]
    assert "search_id" in schema["SearchOut"]["properties"]
    for shape in ("ProductEventIn", "MoneyEventIn", "OtherEventIn"):
        assert {"rec_id", "search_id", "position"} <= set(schema[shape]["properties"])


def test_the_impression_queue_is_bounded_and_answers_never_wait_for_it(served: Served) -> None:
    settings = served.settings(impression_queue_size=2, impression_flush_ms=600_000)
    app = create_app(settings, served.url, watch_interval=None)
    with TestClient(app) as c:
        ids = [c.get("/v1/recommendations", params={"k": 3}).json()["rec_id"] for _ in range(5)]
        assert len(set(ids)) == 5  # every answer has its id, logged or not
        assert _metric(c, "shelfwise_impressions_total", result="dropped") == 3
        assert _svc(c).feedback.flush()
        assert set(get_impressions(_svc(c).store, ids)) == set(ids[:2])


def test_events_citing_answers_are_credited_and_foreign_or_unknown_ids_counted(client: TestClient) -> None:
    svc = _svc(client)
    rec = client.get(f"/v1/users/{KNOWN_USER}/recommendations", params={"k": 5}).json()
    found = client.get("/v1/search", params={"q": "heart", "user_id": KNOWN_USER}).json()
    items, hits = _items(rec), _items(found)
    events = [
        {"type": "click", "user_id": KNOWN_USER, "item_id": items[1], "rec_id": rec["rec_id"], "position": 2},
        {  # the same citation inside context
            "type": "cart",
            "user_id": KNOWN_USER,
            "item_id": items[0],
            "context": {"rec_id": rec["rec_id"], "position": 1},
        },
        {"type": "click", "user_id": KNOWN_USER, "item_id": hits[0], "search_id": found["search_id"]},
        # another shopper replaying this shopper's answer id: stored, credited to nothing
        {
            "type": "click",
            "user_id": "someone-else",
            "item_id": items[1],
            "rec_id": rec["rec_id"],
            "position": 2,
        },
        # an id nobody served
        {"type": "click", "user_id": KNOWN_USER, "item_id": items[1], "rec_id": "0" * 22, "position": 2},
        # the position holds another item
        {"type": "click", "user_id": KNOWN_USER, "item_id": items[1], "rec_id": rec["rec_id"], "position": 4},
        # a malformed position inside context
        {
            "type": "click",
            "user_id": KNOWN_USER,
            "item_id": items[2],
            "context": {"rec_id": rec["rec_id"], "position": "x"},
        },
    ]
    for n, ev in enumerate(events):  # same shopper, item, type and time: told apart by their ids
        ev["event_id"] = f"cite-{n}"
    r = client.post("/v1/events", json={"events": events}, headers=AUTH)
    assert r.status_code == 202 and r.json()["accepted"] == len(events)  # every event stored
    assert svc.feedback.flush()
    want = {"attributed": 3, "foreign": 1, "unknown": 1, "bad_position": 2}
    assert attribution_counts(svc.store) == want
    for status, n in want.items():
        assert _metric(client, "shelfwise_attributions_total", status=status) == n
    text = client.get("/metrics").text
    assert 'shelfwise_attributions_total{status="foreign"} 1.0' in text
    assert 'shelfwise_attributions_total{status="unknown"} 1.0' in text

    # bad input is a 422 naming the field, never a 500
    for bad, field in (
        ({"position": 0}, "position"),
        ({"position": "two"}, "position"),
        ({"rec_id": "x" * 65}, "rec_id"),
        ({"search_id": ""}, "search_id"),
    ):
        ev = {"type": "click", "user_id": KNOWN_USER, "item_id": items[0], **bad}
        answer = client.post("/v1/events", json=ev, headers=AUTH)
        assert answer.status_code == 422, answer.text
        assert any(p["field"].endswith(field) for p in answer.json()["detail"])


def test_metrics_show_online_metrics_per_placement_and_version_cached(client: TestClient) -> None:
    svc = _svc(client)
    recs = [client.get(f"/v1/users/shopper-{n}/recommendations", params={"k": 3}).json() for n in range(4)]
    clicks = [
        {
            "type": "click",
            "user_id": f"shopper-{n}",
            "item_id": r["items"][0]["item_id"],
            "rec_id": r["rec_id"],
            "position": 1,
        }
        for n, r in enumerate(recs[:2])
    ]
    assert client.post("/v1/events", json={"events": clicks}, headers=AUTH).status_code == 202
    assert svc.feedback.flush()
    labels = {"placement": "home", "version": recs[0]["model_version"], "experiment": "", "arm": ""}
    assert _metric(client, "shelfwise_online_impressions", **labels) == 4
    assert _metric(client, "shelfwise_online_clicks", **labels) == 2
    ctr = _metric(client, "shelfwise_online_ctr", **labels, bound="value")
    low = _metric(client, "shelfwise_online_ctr", **labels, bound="low")
    high = _metric(client, "shelfwise_online_ctr", **labels, bound="high")
    assert ctr == pytest.approx(2 / 4) and low < ctr < high  # clicks per answer shown
    assert "shelfwise_online_conversion" in client.get("/metrics").text
    # cached for the TTL: a new answer is not in the next scrape
    client.get("/v1/users/shopper-9/recommendations", params={"k": 3})
    assert svc.feedback.flush()
    assert _metric(client, "shelfwise_online_impressions", **labels) == 4


def _second_version(served: Served) -> tuple[str, str]:
    """The active version and a second one (popular items) trained on the same store, registered
    but not activated (its gate refuses it)."""
    from shelfwise.features.dataset import Dataset
    from shelfwise.registry import GateRefusedError, ModelRegistry, TrainingConfig, train_version
    from shelfwise.store import open_store

    reg = ModelRegistry(served.models)
    active = reg.active
    with open_store(served.url) as store:
        ds = Dataset.from_store(store)
    with pytest.raises(GateRefusedError):
        train_version(ds, reg, TrainingConfig(recommender={"model": "popular"}, bought_together=None))
    return active, next(v for v in reg.versions() if v != active)


def _wait_loaded(svc: Any, version: str) -> None:
    """Until the server has the arm's version in memory (it loads in the background), at most 60 s."""
    deadline = time.time() + 60
    while svc.live.loaded(version) is None and time.time() < deadline:
        time.sleep(0.1)


def test_an_experiment_arm_chooses_the_served_version_and_is_logged(
    client: TestClient,
    served: Served,
) -> None:
    from shelfwise.evaluation.experiment_service import ExperimentSpec

    svc = _svc(client)
    active, other = _second_version(served)
    svc.feedback.experiments.create(
        ExperimentSpec(
            name="home-popular",
            placement="home",
            arms=[{"name": "control", "share": 0.5}, {"name": "popular", "share": 0.5, "version": other}],
            salt="s1",
        )
    )
    arms: dict[str, list[str]] = {}
    for n in range(40):
        user = f"exp-shopper-{n}"
        a = svc.feedback.experiments.assignment("home", svc.pseudonymize(user))
        arms.setdefault(a.arm, []).append(user)
    assert set(arms) == {"control", "popular"}

    # the arm's version is not in memory yet: it loads in the background, meanwhile no arm label
    first = client.get(f"/v1/users/{arms['popular'][0]}/recommendations").json()
    assert first["model_version"] == active and first["arm"] is None
    _wait_loaded(svc, other)
    treated = client.get(f"/v1/users/{arms['popular'][1]}/recommendations").json()
    control = client.get(f"/v1/users/{arms['control'][0]}/recommendations").json()
    assert (treated["model_version"], treated["experiment"], treated["arm"]) == (
        other,
        "home-popular",
        "popular",
    )
    assert (control["model_version"], control["arm"]) == (active, "control")
    # another placement is outside the experiment
    cart = client.post(
        "/v1/cart/recommendations", json={"items": ["85123A"], "user_id": arms["popular"][1]}
    ).json()
    assert cart["arm"] is None

    assert svc.feedback.flush()
    logged = get_impressions(svc.store, [first["rec_id"], treated["rec_id"], control["rec_id"]])
    assert (logged[first["rec_id"]].experiment, logged[first["rec_id"]].arm) == (None, None)
    t = logged[treated["rec_id"]]
    assert (t.version, t.experiment, t.arm) == (other, "home-popular", "popular")
    c = logged[control["rec_id"]]
    assert (c.version, c.experiment, c.arm) == (active, "home-popular", "control")
    # a click on the treated answer is credited to its arm
    click = {
        "type": "click",
        "user_id": arms["popular"][1],
        "item_id": treated["items"][0]["item_id"],
        "rec_id": treated["rec_id"],
        "position": 1,
    }
    assert client.post("/v1/events", json=click, headers=AUTH).status_code == 202
    assert svc.feedback.flush()
    status = svc.feedback.experiments.status("home-popular", persist=False)
    by_arm = {a["arm"]: a for a in status["arms"]}
    assert by_arm["popular"]["totals"]["clicks"] == 1 and by_arm["control"]["totals"]["clicks"] == 0
    assert status["srm"]["counts"] == {"control": 1, "popular": 1}


def test_an_interleaving_experiment_serves_a_team_draft_of_both_versions_and_credits_clicks(
    client: TestClient,
    served: Served,
) -> None:
    from shelfwise.evaluation.experiment_service import ExperimentSpec
    from shelfwise.serving.deployment import Deployment
    from shelfwise.serving.recommending import Request

    svc = _svc(client)
    active, other = _second_version(served)
    svc.feedback.experiments.create(
        ExperimentSpec(
            name="home-inter",
            placement="home",
            kind="interleaving",
            arms=[{"name": "current", "share": 0.5}, {"name": "popular", "share": 0.5, "version": other}],
            salt="s1",
        )
    )
    user = KNOWN_USER
    first = client.get(f"/v1/users/{user}/recommendations?k=6").json()
    assert first["arm"] is None  # B is not in memory yet: served as usual meanwhile
    _wait_loaded(svc, other)
    body = client.get(f"/v1/users/{user}/recommendations?k=6").json()
    assert (body["experiment"], body["arm"], body["model_version"]) == ("home-inter", "interleaved", active)
    assert any("team draft of versions" in n for n in body["notes"])
    pseudo = svc.pseudonymize(user)
    lists = []
    for version in (active, other):
        dep = Deployment(active=svc.live.loaded(version) if version != active else svc.live.current.active)
        req = Request(user_id=pseudo, k=6, scenario="home")
        lists.append(svc.recommending.recommend(dep, req)[0].items)
    shown = _items(body)
    assert len(shown) == 6 and set(shown) <= set(lists[0]) | set(lists[1])
    assert (
        any(i not in lists[0] for i in shown)
        or lists[0][:6] == lists[1][:6]
        or set(lists[1][:3]) <= set(lists[0])
    )
    assert svc.feedback.flush()
    imp = get_impressions(svc.store, [body["rec_id"]])[body["rec_id"]]
    assert imp.arm == "interleaved" and imp.interleaving is not None
    assert len(imp.interleaving["team"]) == 6 and len(imp.interleaving["ips"]) == 6
    assert imp.interleaving["versions"] == [active, other]
    assert imp.version == f"{active}+{other}"  # never counted as one version's answer
    # a click on a slot is credited with that slot's credits
    pos = next((p for p, c in enumerate(imp.interleaving["ips"], 1) if c != 0), 1)
    click = {
        "type": "click",
        "user_id": user,
        "item_id": shown[pos - 1],
        "rec_id": body["rec_id"],
        "position": pos,
    }
    assert client.post("/v1/events", json=click, headers=AUTH).status_code == 202
    assert svc.feedback.flush()
    status = svc.feedback.experiments.status("home-inter", persist=False)
    assert status["units"] == 1 and status["clicks"] == 1
    assert status["credit"]["inverse_propensity"]["mean"] == pytest.approx(imp.interleaving["ips"][pos - 1])
    assert status["credit"]["team_draft"]["mean"] == imp.interleaving["team"][pos - 1]
    # the guest endpoint interleaves too (its unit is the session), and so does the cart
    guest = client.get("/v1/recommendations?k=6&session_id=guest-1").json()
    assert guest["arm"] == "interleaved"
    svc.feedback.experiments.stop("home-inter")
    svc.feedback.experiments.create(
        ExperimentSpec(
            name="cart-inter",
            placement="cart",
            kind="interleaving",
            arms=[{"name": "current", "share": 0.5}, {"name": "popular", "share": 0.5, "version": other}],
        )
    )
    cart = client.post("/v1/cart/recommendations", json={"items": shown[:1], "user_id": user, "k": 4}).json()
    assert cart["arm"] == "interleaved" and len(cart["items"]) == 4
    assert svc.feedback.flush()
    assert get_impressions(svc.store, [cart["rec_id"]])[cart["rec_id"]].interleaving is not None


def test_a_canary_whose_conversion_drops_is_rolled_back_within_one_window(served: Served) -> None:
    from shelfwise.core.clock import now_ms
    from shelfwise.registry import ModelRegistry

    active, other = _second_version(served)
    reg = ModelRegistry(served.models)
    settings = served.settings(canary_window_seconds=0, canary_min_sessions=20)  # 0: no thread, steps by hand
    app = create_app(settings, served.url, watch_interval=None)
    with TestClient(app, headers=reader(app)) as c:
        svc = _svc(c)
        assert svc.canary.check() is None  # no canary
        r = c.post(
            f"/v1/admin/models/{other}/candidate", json={"mode": "canary", "percent": 50}, headers=AUTH
        )
        assert r.status_code == 200
        assert svc.canary.check(now=now_ms() - 1) is None  # the guard starts its first window
        served_by: dict[str, int] = {}
        purchases = []
        for n in range(120):
            user = f"canary-shopper-{n}"
            body = c.get(f"/v1/users/{user}/recommendations", params={"k": 3}).json()
            served_by[body["role"]] = served_by.get(body["role"], 0) + 1
            # the canary's shoppers stop buying; half of the others buy the first item shown
            if body["role"] == "active" and n % 2 == 0:
                item = body["items"][0]["item_id"]
                purchases.append(
                    {
                        "type": "purchase",
                        "user_id": user,
                        "item_id": item,
                        "price": 5.0,
                        "rec_id": body["rec_id"],
                        "position": 1,
                    }
                )
        assert served_by["canary"] >= 20 and served_by["active"] >= 20
        assert c.post("/v1/events", json={"events": purchases}, headers=AUTH).status_code == 202
        assert svc.feedback.flush()
        row = svc.canary.check(now=now_ms() + 1, window_ms=0)
        assert row is not None and row["window"] == 1 and row["decision"] == "rollback", row
        assert row["canary"]["conversions"] == 0 and row["control"]["conversions"] == len(purchases)
        assert reg.pointer().candidate is None and svc.live.current.candidate is None
        after = c.get("/v1/users/canary-shopper-1/recommendations").json()
        assert after["role"] == "active" and after["model_version"] == active
        report = svc.canary.report_path()
        assert json.loads(report.with_suffix(".json").read_text())["decision"] == "rollback"
        assert "rollback" in report.with_suffix(".md").read_text()
