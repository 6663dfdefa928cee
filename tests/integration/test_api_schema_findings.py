"""The requests schemathesis (benchmarks/schemathesis_run.py, seed 13) found answered against the
document on 2026-12-03, replayed one by one: the answer must agree with what the OpenAPI document
says about the request."""

from __future__ import annotations

from fastapi.testclient import TestClient

from shelfwise.api.app import create_app
from tests.integration.api_fixtures import API_KEY, Served


def _client(served: Served) -> TestClient:
    app = create_app(served.settings(rate_limit_per_second=0), served.url, watch_interval=None)
    return TestClient(app, headers={"X-API-Key": API_KEY}, raise_server_exceptions=False)


def test_a_placement_version_past_any_integer_the_store_holds_is_a_422_not_a_500(
    served: Served,
) -> None:
    with _client(served) as client:
        r = client.get("/v1/placements/home?version=16924240774209554350080")
        assert r.status_code == 422, r.text
        assert "version" in r.text


def test_a_whole_float_position_is_an_integer_as_json_schema_says(served: Served) -> None:
    with _client(served) as client:
        event = {"type": "add_to_cart", "user_id": "u-1", "item_id": "85123A", "position": 43.0}
        r = client.post("/v1/events", json={"events": [event]})
        assert r.status_code < 300, r.text
        r = client.post("/v1/events", json={"events": [event | {"position": 43.5}]})
        assert r.status_code == 422, r.text


def test_consent_flags_are_booleans_not_numbers(served: Served) -> None:
    with _client(served) as client:
        r = client.put("/v1/users/u-1/consent", json={"no_analytics": 0})
        assert r.status_code == 422, r.text
        assert "no_analytics" in r.text
        r = client.put("/v1/users/u-1/consent", json={"no_analytics": False})
        assert r.status_code == 200, r.text


def test_the_document_says_which_attribute_filters_are_valid(served: Served) -> None:
    with _client(served) as client:
        spec = client.get("/openapi.json").json()
        params = {p["name"]: p for p in spec["paths"]["/v1/search"]["get"]["parameters"]}
        assert "pattern" in str(params["attribute"]["schema"])  # "" and "bad" are not name:value
        for bad in ("", "bad", "nope:red", "colour:"):
            r = client.get("/v1/search", params={"q": "heart", "attribute": bad})
            assert r.status_code == 422, (bad, r.text)
        assert client.get("/v1/search", params={"q": "heart", "attribute": "colour:red"}).status_code == 200


def test_a_rollback_to_a_version_past_any_integer_the_store_holds_is_a_422_not_a_500(
    served: Served,
) -> None:
    with _client(served) as client:
        r = client.post("/v1/placements/home/rollback", json={"version": 16924240774209554350080})
        assert r.status_code == 422, r.text
        assert "version" in r.text
