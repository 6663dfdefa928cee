"""The service through FastAPI's TestClient over a real SQLite store and registry: recommendations
with versions and reasons, real-time session updates, the fallback chain under a broken or slow
model, caching, deletion everywhere, security, admin activation and rollback, items."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from shelfwise.api.app import create_app
from shelfwise.registry import ModelRegistry
from shelfwise.serving.deployment import Deployment
from tests.conftest import TEST_KEY
from tests.integration.api_fixtures import API_KEY, KNOWN_USER, Served, reader
from tests.integration.test_cli import BIN

AUTH = {"X-API-Key": API_KEY}


@pytest.fixture
def client(served: Served) -> Iterator[TestClient]:
    app = create_app(served.settings(), served.url, watch_interval=None)
    with TestClient(app, headers=reader(app)) as c:
        yield c


def _svc(c: TestClient) -> Any:
    return c.app.state.services  # type: ignore[attr-defined]


def _metric(c: TestClient, name: str, **labels: str) -> float:
    value = _svc(c).metrics.registry.get_sample_value(name, labels)
    return float(value or 0.0)


def test_recommendations_carry_model_version_and_a_reason_per_item(client: TestClient) -> None:
    r = client.get(f"/v1/users/{KNOWN_USER}/recommendations", params={"k": 5})
    assert r.status_code == 200
    body = r.json()
    assert body["model_version"] == ModelRegistry(_svc(client).registry.root).active
    assert body["source"] == "personalised"
    assert len(body["items"]) == 5 and all(i["reason"] for i in body["items"])
    assert any(i["reason"].startswith("similar to") for i in body["items"])
    stranger = client.get("/v1/users/never-seen/recommendations").json()
    assert stranger["source"] == "popular" and stranger["items"][0]["reason"] == "popular overall"
    for path in ("/v1/items/85123A/similar", "/v1/items/85123A/bought-together"):
        out = client.get(path, params={"k": 3}).json()
        assert out["model_version"] and len(out["items"]) == 3 and all(i["reason"] for i in out["items"])
    cart = client.post("/v1/cart/recommendations", json={"items": ["85123A", "71053"], "k": 4}).json()
    assert cart["source"] == "bought_together" and not {"85123A", "71053"} & {
        i["item_id"] for i in cart["items"]
    }
    assert client.get("/v1/items/no-such-item/similar").status_code == 404


def test_similar_items_end_with_the_evidence_and_the_chain_tops_them_up(client: TestClient) -> None:
    """Item-kNN knows few neighbours for a rarely bought item: its list ends with them (no items in
    id order at score 0 called "similar"), and the page still gets k items, the rest popular ones."""
    model = _svc(client).registry.load(_svc(client).registry.active).recommender
    short = None
    for item in model.item_map.external.tolist():
        [sim] = model.similar_items([item], 10)
        if 0 < len(sim.items) < 10:
            short = (item, sim)
            break
    assert short is not None, "the slice has an item with fewer than 10 neighbours"
    item, sim = short
    assert all(s > 0 for s in sim.scores)
    body = client.get(f"/v1/items/{item}/similar", params={"k": 10}).json()
    got = [i["item_id"] for i in body["items"]]
    assert body["source"] == "similar" and len(got) == 10 and len(set(got)) == 10 and item not in got
    assert got[: len(sim.items)] == sim.items
    assert all(i["reason"].startswith("popular") for i in body["items"][len(sim.items) :])


def test_a_view_changes_the_next_recommendations_within_a_second(client: TestClient) -> None:
    before = client.get("/v1/users/shopper-1/recommendations", params={"k": 10}).json()
    assert before["source"] == "popular"
    started = time.perf_counter()
    posted = client.post(
        "/v1/events", json={"type": "view", "user_id": "shopper-1", "item_id": "71053"}, headers=AUTH
    )
    assert posted.status_code == 202 and posted.json()["accepted"] == 1
    after = client.get("/v1/users/shopper-1/recommendations", params={"k": 10}).json()
    elapsed = time.perf_counter() - started
    assert elapsed < 1.0
    assert after["source"] == "session" and not after["cached"]
    assert [i["item_id"] for i in after["items"]] != [i["item_id"] for i in before["items"]]
    assert "71053" not in {i["item_id"] for i in after["items"]}
    assert any("71053" in i["reason"] for i in after["items"])


def test_results_are_cached_and_a_users_event_invalidates_them(client: TestClient) -> None:
    url = f"/v1/users/{KNOWN_USER}/recommendations"
    assert client.get(url).json()["cached"] is False
    assert client.get(url).json()["cached"] is True
    client.post("/v1/events", json={"type": "cart", "user_id": KNOWN_USER, "item_id": "22752"}, headers=AUTH)
    again = client.get(url).json()
    assert again["cached"] is False and "22752" not in {i["item_id"] for i in again["items"]}
    cart = client.get(url, params={"scenario": "cart"}).json()
    assert cart["source"] == "bought_together"


def _swap_in(c: TestClient, model_hook: Any) -> None:
    svc = _svc(c)
    loaded = svc.registry.load(svc.registry.active)  # a fresh copy, not the cached one
    model_hook(loaded.recommender)
    svc.live.current = Deployment(active=loaded)


def test_a_failing_model_falls_back_and_is_counted_never_500(client: TestClient) -> None:
    def boom(*_a: Any, **_k: Any) -> Any:
        raise RuntimeError("injected model failure")

    def hook(model: Any) -> None:
        model._score = boom
        model._similar_scores = boom

    _swap_in(client, hook)
    r = client.get(f"/v1/users/{KNOWN_USER}/recommendations", params={"k": 5})
    assert r.status_code == 200
    body = r.json()
    assert body["source"] in ("popular", "popular_category") and len(body["items"]) == 5
    assert body["skipped"][0]["stage"] == "personalised"
    sim = client.get("/v1/items/85123A/similar")
    assert sim.status_code == 200 and sim.json()["source"] in (
        "popular",
        "popular_category",
        "bought_together",
    )
    assert _metric(client, "shelfwise_model_errors_total", cause="error") >= 2
    assert _metric(client, "shelfwise_recommend_fallbacks_total", stage="personalised", cause="error") == 1
    assert "shelfwise_model_errors_total" in client.get("/metrics").text


def test_a_slow_model_times_out_into_the_fallback(served: Served) -> None:
    app = create_app(served.settings(model_timeout_ms=100), served.url, watch_interval=None)
    with TestClient(app, headers=reader(app)) as c:

        def hook(model: Any) -> None:
            real = model._score

            def slow(*a: Any, **k: Any) -> Any:
                time.sleep(5.0)
                return real(*a, **k)

            model._score = slow

        _swap_in(c, hook)
        started = time.perf_counter()
        r = c.get(f"/v1/users/{KNOWN_USER}/recommendations")
        assert (
            r.status_code == 200 and time.perf_counter() - started < 4.0
        )  # long before the model would have answered
        assert r.json()["source"] in ("popular", "popular_category")
        assert _metric(c, "shelfwise_model_errors_total", cause="timeout") == 1


def test_events_are_idempotent_and_validated_field_by_field(client: TestClient) -> None:
    event = {
        "type": "purchase",
        "user_id": "u-9",
        "item_id": "22752",
        "event_id": "order-1-line-1",
        "price": 7.65,
    }
    first = client.post("/v1/events", json=event, headers=AUTH).json()
    second = client.post("/v1/events", json=event, headers=AUTH).json()
    assert (first["accepted"], second["accepted"], second["duplicates"]) == (1, 0, 1)
    keyed = {"type": "view", "user_id": "u-9", "item_id": "71053"}
    one = client.post("/v1/events", json=keyed, headers={**AUTH, "Idempotency-Key": "k-1"}).json()
    two = client.post("/v1/events", json=keyed, headers={**AUTH, "Idempotency-Key": "k-1"}).json()
    assert one["event_ids"] == ["k-1"] and two["duplicates"] == 1
    batch = {"events": [{"type": "view", "user_id": "u-9", "item_id": str(i)} for i in ("22752", "71053")]}
    assert client.post("/v1/events", json=batch, headers=AUTH).json()["accepted"] == 2
    future = client.post(
        "/v1/events",
        json={"type": "view", "user_id": "u", "item_id": "1", "ts": 99_999_999_999_999},
        headers=AUTH,
    )
    # a schema-valid event the gate refuses is received, listed and quarantined: never a 422 for a
    # body the documented schema allows (the "not ahead of the clock" bound moves with the clock)
    assert future.status_code == 202 and future.json()["accepted"] == 0
    assert future.json()["rejections"][0]["field"] == "body.ts"
    missing = client.post("/v1/events", json={"type": "cart", "user_id": "u"}, headers=AUTH)
    assert missing.status_code == 422 and missing.json()["detail"][0]["field"] == "body.item_id"
    bad_k = client.get("/v1/users/u/recommendations", params={"k": 0})
    assert bad_k.status_code == 422 and bad_k.json()["detail"][0]["field"] == "query.k"


def _api_quarantine(c: TestClient) -> list[dict[str, Any]]:
    """Quarantined records the API wrote (the served store also holds ingest's)."""
    return [row for row in _svc(c).store.quarantined(limit=100_000) if row["source"] == "api"]


def test_a_bad_event_is_quarantined_and_the_rest_of_its_batch_stored(client: TestClient) -> None:
    svc = _svc(client)
    shopper = "batch-shopper-1"
    batch = {
        "events": [
            {"type": "view", "user_id": shopper, "item_id": "22752"},
            {"type": "view", "user_id": shopper, "item_id": "71053", "ts": 99_999_999_999_999},
            {"type": "cart", "user_id": shopper, "item_id": "71053"},
        ]
    }
    r = client.post("/v1/events", json=batch, headers=AUTH)
    assert r.status_code == 202, r.text
    body = r.json()
    assert (body["accepted"], body["rejected"], len(body["event_ids"])) == (2, 1, 2)
    [rejection] = body["rejections"]
    assert rejection["index"] == 1 and rejection["field"] == "body.events.1.ts"
    assert rejection["reason"] == "future_timestamp"
    pseudo = svc.pseudonymize(shopper)
    stored = svc.store.events_for_user(pseudo)
    assert sorted(e.item_id for e in stored) == ["22752", "71053"]
    [row] = _api_quarantine(client)
    assert (row["kind"], row["line_no"], row["field"]) == ("event", 1, "ts")
    assert row["reason"] == "future_timestamp"
    assert pseudo in row["record"] and shopper not in row["record"]  # kept pseudonymised
    assert _metric(client, "shelfwise_events_total", result="rejected") == 1


def test_a_batch_with_no_valid_event_is_received_listed_and_quarantined(client: TestClient) -> None:
    future = 99_999_999_999_999
    batch = {
        "events": [
            {"type": "cart", "user_id": "batch-shopper-2", "item_id": "1", "ts": future},
            {"type": "view", "user_id": "batch-shopper-2", "item_id": "1", "ts": future + 1},
        ]
    }
    r = client.post("/v1/events", json=batch, headers=AUTH)
    assert r.status_code == 202 and r.json()["accepted"] == 0 and r.json()["rejected"] == 2
    assert [(d["field"], d["reason"]) for d in r.json()["rejections"]] == [
        ("body.events.0.ts", "future_timestamp"),
        ("body.events.1.ts", "future_timestamp"),
    ]
    assert [(q["line_no"], q["field"], q["reason"]) for q in _api_quarantine(client)] == [
        (0, "ts", "future_timestamp"),
        (1, "ts", "future_timestamp"),
    ]
    assert not _svc(client).store.events_for_user(_svc(client).pseudonymize("batch-shopper-2"))
    # what the documented schema already rules out (a product event with no item, a type nobody
    # knows) is a 422 naming the field, as the OpenAPI document says, before the gate: not quarantined
    no_item = client.post("/v1/events", json={"type": "cart", "user_id": "u"}, headers=AUTH)
    assert no_item.status_code == 422 and no_item.json()["detail"][0]["field"] == "body.item_id"
    teleport = {"type": "teleport", "user_id": "u", "item_id": "1"}
    single = client.post("/v1/events", json=teleport, headers=AUTH)
    assert single.status_code == 422 and single.json()["detail"][0]["field"] == "body.type"
    assert len(_api_quarantine(client)) == 2
    assert _metric(client, "shelfwise_events_total", result="rejected") == 2


def test_schema_errors_name_the_event_and_field_of_the_shape_sent(client: TestClient) -> None:
    good = {"type": "view", "user_id": "u", "item_id": "71053"}
    batch = {"events": [good, {**good, "price": -1}, {**good, "quantity": "many"}]}
    r = client.post("/v1/events", json=batch, headers=AUTH)
    assert r.status_code == 422 and r.json()["error"] == "invalid_request"
    detail = r.json()["detail"]
    assert [d["field"] for d in detail] == ["body.events.1.price", "body.events.2.quantity"]
    assert detail[0]["message"] == "Input should be greater than or equal to 0"
    assert "EventIn" not in r.text and "extra_forbidden" not in r.text  # not the single-event shape
    single = client.post("/v1/events", json={**good, "price": -1}, headers=AUTH)
    assert single.status_code == 422 and [d["field"] for d in single.json()["detail"]] == ["body.price"]
    assert "EventBatchIn" not in single.text and "events" not in single.text
    assert not _api_quarantine(client)  # never reached the gate


def test_writes_need_a_key_bodies_are_limited_and_clients_rate_limited(served: Served) -> None:
    settings = served.settings(max_request_bytes=2048, rate_limit_per_second=0.2, rate_limit_burst=5)
    with TestClient(create_app(settings, served.url, watch_interval=None)) as c:
        ev = {"type": "view", "user_id": "u", "item_id": "71053"}
        assert c.post("/v1/events", json=ev).status_code == 401
        assert c.post("/v1/events", json=ev, headers={"X-API-Key": "wrong"}).status_code == 401
        assert c.delete("/v1/users/u").status_code == 401
        assert c.get("/v1/admin/models").status_code == 401
        big = {"events": [{**ev, "context": {"note": "x" * 500}} for _ in range(10)]}
        too_large = c.post("/v1/events", json=big, headers=AUTH)
        assert too_large.status_code == 413 and too_large.json()["error"] == "request_too_large"
        codes = [c.get("/v1/autocomplete", params={"q": "whi"}).status_code for _ in range(12)]
        assert codes.count(429) >= 5 and codes[0] == 200
        assert c.get("/healthz").status_code == 200  # health checks are never limited


def test_delete_user_reaches_everything_and_the_cli_proves_it(
    client: TestClient,
    served: Served,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = f"/v1/users/{KNOWN_USER}/recommendations"
    client.get(url)
    client.post("/v1/events", json={"type": "view", "user_id": KNOWN_USER, "item_id": "71053"}, headers=AUTH)
    client.get(url)
    client.get("/v1/search", params={"q": "heart", "user_id": KNOWN_USER})
    env = {
        **os.environ,
        "SHELFWISE_VAR_DIR": str(served.root / "var"),
        "SHELFWISE_PSEUDONYM_KEY": TEST_KEY,
        "SHELFWISE_MODELS_DIR": str(served.models),
    }

    def verify() -> subprocess.CompletedProcess[str]:
        # a separate process, as an operator runs it (and as SQLite's locks expect)
        cmd = [str(BIN), "privacy", "verify-deletion", KNOWN_USER, "--db", served.url, "--json"]
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)

    before = verify()
    assert before.returncode == 1, before.stderr
    started = time.perf_counter()
    r = client.delete(f"/v1/users/{KNOWN_USER}", headers=AUTH)
    seconds = time.perf_counter() - started
    assert r.status_code == 200
    body = r.json()
    assert body["verified"] is True and seconds < 60
    removed = body["removed"]
    assert removed["events"] > 0 and removed["users"] == 1 and removed["session_entries"] == 1
    assert removed["cached_results"] >= 1 and removed["search_affinity"] == 1
    assert removed["models_in_memory"] and removed["model_versions_on_disk"]
    places = {p["place"] for p in body["places"]}
    assert places >= {
        "store_events",
        "users_table",
        "quarantine",
        "session_store",
        "result_cache",
        "search_personal_signals",
        "models_in_memory",
        "model_artifacts",
    }
    after = verify()
    # nothing found; without --api a server's memory is not checked, so not "verified" (exit 3)
    assert after.returncode == 3, after.stdout + after.stderr
    report = json.loads(after.stdout)
    assert report["found_in"] == [] and "derived_copies" in {p["place"] for p in report["places"]}
    again = client.get(url).json()
    assert again["source"] == "popular"  # the model no longer knows them


def test_admin_lists_activates_through_the_gate_and_rolls_back(client: TestClient, served: Served) -> None:
    from shelfwise.features.dataset import Dataset
    from shelfwise.registry import GateRefusedError, TrainingConfig, train_version
    from shelfwise.store import open_store

    reg = ModelRegistry(served.models)
    first = reg.active
    with open_store(served.url) as store:
        ds = Dataset.from_store(store)
    with pytest.raises(GateRefusedError):
        train_version(ds, reg, TrainingConfig(recommender={"model": "popular"}, bought_together=None))
    worse = next(v for v in reg.versions() if v != first)
    listed = client.get("/v1/admin/models", headers=AUTH).json()
    assert listed["active"] == first and {v["version"] for v in listed["versions"]} == {first, worse}
    assert all("ndcg@10" in v["metrics"] for v in listed["versions"])
    refused = client.post(f"/v1/admin/models/{worse}/activate", headers=AUTH)
    assert refused.status_code == 409 and "gate" in refused.json()["detail"]
    forced = client.post(f"/v1/admin/models/{worse}/activate", params={"force": True}, headers=AUTH)
    assert forced.status_code == 200 and forced.json()["active"] == worse
    assert client.get(f"/v1/users/{KNOWN_USER}/recommendations").json()["model_version"] == worse
    back = client.post("/v1/admin/rollback", headers=AUTH).json()
    assert back["active"] == first and back["seconds"] < 1.0
    assert client.get(f"/v1/users/{KNOWN_USER}/recommendations").json()["model_version"] == first
    assert client.post("/v1/admin/models/v-nope/activate", headers=AUTH).status_code == 404
    canary = client.post(
        f"/v1/admin/models/{worse}/candidate", json={"mode": "canary", "percent": 100}, headers=AUTH
    )
    assert canary.status_code == 200
    routed = client.get("/v1/users/anyone/recommendations").json()
    assert routed["role"] == "canary" and routed["model_version"] == worse
    client.post(f"/v1/admin/models/{worse}/candidate", json={"mode": "shadow"}, headers=AUTH)
    for i in range(3):
        assert client.get(f"/v1/users/s{i}/recommendations").json()["role"] == "active"
    deadline = time.time() + 5
    while time.time() < deadline and _metric(client, "shelfwise_shadow_top10_overlap_count") < 3:
        time.sleep(0.05)
    assert _metric(client, "shelfwise_shadow_top10_overlap_count") == 3
    assert client.delete("/v1/admin/candidate", headers=AUTH).json()["candidate"] is None


def test_item_writes_reach_search_and_recommendations(client: TestClient) -> None:
    new = {"title": "Blue ceramic teapot with bamboo handle", "category": "Kitchen > Teapots", "price": 19.5}
    put = client.put("/v1/items/TEAPOT-1", json=new, headers=AUTH)
    assert put.status_code == 200 and put.json()["title"] == new["title"]
    hits = client.get("/v1/search", params={"q": "bamboo teapot"}).json()
    assert hits["hits"][0]["item_id"] == "TEAPOT-1" and hits["model_version"]
    assert client.get("/v1/items/TEAPOT-1").json()["price"] == 19.5
    top = client.get("/v1/users/stranger/recommendations", params={"k": 1}).json()["items"][0]["item_id"]
    assert client.delete(f"/v1/items/{top}", headers=AUTH).json()["marked_unavailable"] is True
    after = client.get("/v1/users/stranger-2/recommendations", params={"k": 10}).json()
    assert top not in {i["item_id"] for i in after["items"]}
    assert client.delete("/v1/items/never-there", headers=AUTH).status_code == 404
    assert client.put("/v1/items/x", json={"price": -1}, headers=AUTH).status_code == 422


def test_search_pages_facets_and_autocomplete(client: TestClient) -> None:
    one = client.get("/v1/search", params={"q": "heart", "size": 5, "page": 1}).json()
    two = client.get("/v1/search", params={"q": "heart", "size": 5, "page": 2}).json()
    assert one["total"] > 10 and len(one["hits"]) == 5
    assert not {h["item_id"] for h in one["hits"]} & {h["item_id"] for h in two["hits"]}
    assert isinstance(one["facets"], dict) and all(h["reason"] for h in one["hits"])
    ac = client.get("/v1/autocomplete", params={"q": "whi"}).json()
    assert ac["suggestions"] and all(s.startswith("whi") for s in ac["suggestions"])
    assert client.get("/v1/search", params={"q": ""}).status_code == 422


def test_health_readiness_and_metrics(client: TestClient) -> None:
    live = client.get("/healthz").json()
    assert live["status"] == "ok"
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["model_version"] == live["model_version"] is not None
    client.get("/v1/users/x/recommendations")
    text = client.get("/metrics").text
    assert 'route="/v1/users/{user_id}/recommendations"' in text and "shelfwise_active_model" in text


def test_metrics_can_require_an_analyst_key(served: Served) -> None:
    """``metrics_key_required``: no key 401, a read key 403, an analyst or admin key 200; the
    health checks stay open (a load balancer probes them without a key)."""
    from shelfwise.core.access import Role

    app = create_app(served.settings(metrics_key_required=True), served.url, watch_interval=None)
    with TestClient(app) as c:
        keys = _svc(c).keys
        analyst, _ = keys.create(Role.ANALYST, "scraper")
        read, _ = keys.create(Role.READ, "shop")
        assert c.get("/metrics").status_code == 401
        refused = c.get("/metrics", headers={"X-API-Key": read})
        assert refused.status_code == 403 and refused.json()["needs"] == "analyst"
        for key in (analyst, API_KEY):
            answer = c.get("/metrics", headers={"X-API-Key": key})
            assert answer.status_code == 200 and "shelfwise_active_model" in answer.text
        assert c.get("/healthz").status_code == 200 and c.get("/readyz").status_code == 200


def test_every_answer_carries_a_request_id(client: TestClient) -> None:
    given = client.get("/healthz", headers={"X-Request-ID": "abc123"})
    assert given.headers["x-request-id"] == "abc123"
    made = client.get("/v1/search", params={"q": "heart"})
    assert len(made.headers["x-request-id"]) == 16
    assert made.headers["x-request-id"] != client.get("/healthz").headers["x-request-id"]


def test_a_known_shoppers_list_is_precomputed_and_never_shows_an_item_taken_off_sale(
    client: TestClient,
) -> None:
    svc = _svc(client)
    loaded = svc.live.current.active
    pseudo = svc.pseudonymize(KNOWN_USER)
    # built before the app takes requests (``warm_before_serving_seconds``): no wait here
    assert pseudo in loaded.precomputed and loaded.version not in svc.live._precomputing
    first = client.get(f"/v1/users/{KNOWN_USER}/recommendations", params={"k": 10}).json()
    direct = loaded.recommender.recommend([pseudo], 10)[0]
    assert first["source"] == "personalised" and [i["item_id"] for i in first["items"]] == direct.items
    assert [i["reason"] for i in first["items"]] == direct.reasons
    top = first["items"][0]["item_id"]
    assert client.delete(f"/v1/items/{top}", headers=AUTH).status_code == 200
    again = client.get(f"/v1/users/{KNOWN_USER}/recommendations", params={"k": 10}).json()
    assert not again["cached"] and top not in [i["item_id"] for i in again["items"]]
    assert len(again["items"]) == 10
    # a live session bypasses the list: the model folds the new view in
    viewed = first["items"][5]["item_id"]
    event = {"type": "view", "user_id": KNOWN_USER, "item_id": viewed}
    assert client.post("/v1/events", json=event, headers=AUTH).status_code == 202
    after = client.get(f"/v1/users/{KNOWN_USER}/recommendations", params={"k": 10}).json()
    folded = loaded.recommender.recommend_for_events(
        [*svc.recommending._history(loaded.recommender, pseudo), viewed], 10, who="user"
    )
    assert after["source"] == "personalised" and [i["item_id"] for i in after["items"]] == folded.items


def test_two_workers_share_item_writes_and_deletions(served: Served) -> None:
    """Two app instances over one store and registry, as `serve --workers 2` runs them: an item
    written or taken off sale through one reaches the other's search and recommendations, and a
    shopper erased through one is gone from the other's memory (its deletion report says so)."""

    one = create_app(served.settings(), served.url, watch_interval=None)
    two = create_app(served.settings(), served.url, watch_interval=None)
    with TestClient(one, headers=reader(one)) as a, TestClient(two, headers=reader(two)) as b:
        url = f"/v1/users/{KNOWN_USER}/recommendations"
        before = b.get(url, params={"k": 10}).json()  # worker two now holds a cached answer
        assert before["source"] == "personalised"
        b.post("/v1/events", json={"type": "view", "user_id": KNOWN_USER, "item_id": "71053"}, headers=AUTH)
        assert _svc(b).sessions.holds(_svc(b).pseudonymize(KNOWN_USER))

        teapot = {
            "title": "Green enamel teapot with wooden handle",
            "category": "Kitchen > Teapots",
            "price": 9,
        }
        assert a.put("/v1/items/TEAPOT-2", json=teapot, headers=AUTH).status_code == 200
        gone = before["items"][0]["item_id"]
        assert a.delete(f"/v1/items/{gone}", headers=AUTH).status_code == 200
        _svc(b).catalogue.follow()  # what worker two's watcher does every half second
        hits = b.get("/v1/search", params={"q": "enamel teapot"}).json()["hits"]
        assert hits and hits[0]["item_id"] == "TEAPOT-2"
        assert gone not in {h["item_id"] for h in b.get("/v1/search", params={"q": gone}).json()["hits"]}
        after = b.get(url, params={"k": 10}).json()
        assert gone not in [i["item_id"] for i in after["items"]]
        _svc(a).catalogue.follow()  # its own lines: nothing to do again
        assert not _svc(a).catalogue.own_lines

        assert a.delete(f"/v1/users/{KNOWN_USER}", headers=AUTH).json()["verified"] is True
        report = b.get(f"/v1/admin/users/{KNOWN_USER}/deletion-report", headers=AUTH).json()
        assert report["verified"] is True, [p for p in report["places"] if p["found"]]
        assert b.get(url).json()["source"] != "personalised"
