"""The requests schemathesis (benchmarks/schemathesis_run.py, seed 13) found answered against the
document on 2026-12-03, replayed one by one: the answer must agree with what the OpenAPI document
says about the request."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from jsonschema import Draft202012Validator

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


# The four operations whose body the route validates itself (merchandising models, extra="forbid")
# were documented as "any object" / "any list": schemathesis sent documented-valid bodies the server
# refused (ST202, run of 2026-12-04). The document now states the models' schemas.


def _body_schema(spec: dict[str, Any], path: str, method: str = "put") -> Draft202012Validator:
    """A validator for the documented request body of ``method path`` (its ``$ref``s resolved in
    the document's components)."""
    schema = spec["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]
    return Draft202012Validator({**schema, "components": spec["components"]})


def _refused_as_documented(r: Any) -> None:
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["error"] == "invalid_request" and {"field", "message", "type"} <= set(body["detail"][0])


def test_a_placement_body_is_documented_as_the_placement_the_server_validates(served: Served) -> None:
    with _client(served) as client:
        documented = _body_schema(client.get("/openapi.json").json(), "/v1/placements/{name}")
        unknown_fields = {"\u00bck": [{"x": "y"}, []], "[D*": {",": [-4676262625059115.0, None, -73]}}
        assert not documented.is_valid(unknown_fields)
        _refused_as_documented(client.put("/v1/placements/pg3v0k6", json=unknown_fields))
        too_big = {"k": 201}
        assert not documented.is_valid(too_big)
        _refused_as_documented(client.put("/v1/placements/pg3v0k6", json=too_big))
        good = {
            "k": 8,
            "candidates": 50,
            "rules": {"rules": [{"kind": "boost", "attribute": "brand", "value": "x"}]},
        }
        assert documented.is_valid(good)
        assert client.put("/v1/placements/pg3v0k6", json=good).status_code == 200


def test_a_rule_set_body_is_documented_as_the_rule_set_the_server_validates(served: Served) -> None:
    with _client(served) as client:
        documented = _body_schema(client.get("/openapi.json").json(), "/v1/placements/{name}/rules")
        unknown_fields = {"\u00bck\u001a": [], "\U000ff506\u00a22]": ["x", 373, ""]}
        assert not documented.is_valid(unknown_fields)
        _refused_as_documented(client.put("/v1/placements/email/rules", json=unknown_fields))
        unknown_kind = {"rules": [{"kind": "teleport", "item_id": "85123A"}]}
        assert not documented.is_valid(unknown_kind)
        _refused_as_documented(client.put("/v1/placements/email/rules", json=unknown_kind))
        good = {"rules": [{"kind": "diversity", "strength": 0.5}]}
        assert documented.is_valid(good)
        assert client.put("/v1/placements/email/rules", json=good).status_code == 200


def test_the_search_settings_body_is_documented_as_the_settings_the_server_validates(served: Served) -> None:
    with _client(served) as client:
        documented = _body_schema(client.get("/openapi.json").json(), "/v1/search/settings")
        assert not documented.is_valid({"": None})
        _refused_as_documented(client.put("/v1/search/settings", json={"": None}))
        good = {"synonyms": [{"terms": ["tee", "t-shirt"]}], "stop_words": ["the"]}
        assert documented.is_valid(good)
        assert client.put("/v1/search/settings", json=good).status_code == 200


def test_each_search_settings_part_is_documented_as_its_own_list(served: Served) -> None:
    with _client(served) as client:
        spec = client.get("/openapi.json").json()
        synonyms = _body_schema(spec, "/v1/search/settings/synonyms")
        assert not synonyms.is_valid([{}])
        _refused_as_documented(client.put("/v1/search/settings/synonyms", json=[{}]))
        redirect = {"query": "returns", "url": "/help/returns"}
        assert not synonyms.is_valid([redirect])  # a redirect is not a synonym
        _refused_as_documented(client.put("/v1/search/settings/synonyms", json=[redirect]))
        redirects = _body_schema(spec, "/v1/search/settings/redirects")
        assert redirects.is_valid([redirect])
        assert client.put("/v1/search/settings/redirects", json=[redirect]).status_code == 200
        assert client.get("/v1/search/settings").json()["redirects"] == [redirect]
        stop_words = _body_schema(spec, "/v1/search/settings/stop_words")
        assert not stop_words.is_valid([1]) and stop_words.is_valid(["the"])
        _refused_as_documented(client.put("/v1/search/settings/stop_words", json=[1]))
        assert client.put("/v1/search/settings/nonsense", json=[]).status_code == 422  # as before


def test_a_name_of_spaces_only_is_a_422_not_a_500_on_every_later_read(served: Served) -> None:
    # found by tests/integration/test_api_schema.py once the bodies were documented: " " passed
    # min_length, was stored normalised as "", and every read of the settings then failed validation
    with _client(served) as client:
        boost = {"kind": "boost", "attribute": " ", "value": "x"}
        for body in (
            {"stop_words": [" "]},
            {"synonyms": [{"terms": ["tee", "\u3000"]}]},
            {"redirects": [{"query": "\x1c", "url": "/x"}]},
            {"query_rules": [{"query": "tee", "rules": {"rules": [boost]}}]},
        ):
            r = client.put("/v1/search/settings", json=body)
            _refused_as_documented(r)
            assert "blank" in r.json()["detail"][0]["message"], r.text
            assert client.get("/v1/search/settings").status_code == 200
        _refused_as_documented(client.put("/v1/placements/home/rules", json={"rules": [boost]}))
        assert client.get("/v1/placements/home").status_code == 200
        assert client.get("/v1/recommendations", params={"k": 5}).status_code < 500


def test_a_boolean_or_a_text_is_not_a_number_in_merchandising_bodies(served: Served) -> None:
    # schemathesis run of 2026-12-04 (ST201): {"strength": false}, {"epsilon": false} were saved as 0
    with _client(served) as client:
        spec = client.get("/openapi.json").json()
        placement = _body_schema(spec, "/v1/placements/{name}")
        for body in (
            {"exploration": {"epsilon": False}},
            {"k": "5"},
            {"filters": {"available_only": 1}},
            {"rules": {"rules": [{"kind": "diversity", "strength": False}]}},
        ):
            assert not placement.is_valid(body)
            _refused_as_documented(client.put("/v1/placements/product", json=body))
        diversity = {"rules": [{"kind": "diversity", "strength": False}]}
        _refused_as_documented(client.put("/v1/placements/search/rules", json=diversity))
        rule = {"query": "0", "rules": diversity}
        _refused_as_documented(client.put("/v1/search/settings/query_rules", json=[rule]))
        whole = {
            "k": 5.0,
            "candidates": 50,
            "rules": {"rules": [{"kind": "pin", "item_id": "85123A", "position": 2.0}]},
        }
        assert placement.is_valid(whole)  # JSON Schema's integer includes 5.0
        assert client.put("/v1/placements/product", json=whole).status_code == 200, (
            "a whole float is an integer"
        )


def test_a_promotion_window_is_a_date_time_text_not_a_number(served: Served) -> None:
    # schemathesis run 4 (ST201): {"start": 0, ...} was read as the epoch and saved
    with _client(served) as client:
        documented = _body_schema(client.get("/openapi.json").json(), "/v1/placements/{name}/rules")
        promo = {"kind": "promotion", "name": "p", "item_ids": ["85123A"], "end": "2027-01-01T00:00:00Z"}
        assert not documented.is_valid({"rules": [promo | {"start": 0}]})
        _refused_as_documented(
            client.put("/v1/placements/email/rules", json={"rules": [promo | {"start": 0}]})
        )
        good = {"rules": [promo | {"start": "2026-12-01T00:00:00Z"}]}
        assert documented.is_valid(good)
        assert client.put("/v1/placements/email/rules", json=good).status_code == 200


def _bare_bounds(node: Any, path: str = "") -> list[str]:
    """Where the document carries pydantic's own ``ge``/``le``/``gt``/``lt`` keywords, which JSON
    Schema ignores (a bound the server enforces but the document does not state)."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in {"ge", "le", "gt", "lt"} and isinstance(value, int | float):
                found.append(f"{path}/{key}")
            found += _bare_bounds(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _bare_bounds(value, f"{path}[{i}]")
    return found


def test_every_bound_the_server_enforces_is_one_json_schema_states(served: Served) -> None:
    # schemathesis run 4 (custom check): a placement with filters.price_min -1.2e-38 was valid by the
    # document (its bound was a bare `ge`, inside the Optional) and refused by the server
    with _client(served) as client:
        spec = client.get("/openapi.json").json()
        assert _bare_bounds(spec) == []
        placement = _body_schema(spec, "/v1/placements/{name}")
        for body in ({"filters": {"price_min": -1.175494351e-38}}, {"filters": {"price_max": -1}}):
            assert not placement.is_valid(body)
            _refused_as_documented(client.put("/v1/placements/product", json=body))
        rules = _body_schema(spec, "/v1/placements/{name}/rules")
        window = {"start": "2026-01-01T00:00:00Z", "end": "2027-01-01T00:00:00Z"}
        promotion = {"kind": "promotion", "name": "p", "item_ids": ["85123A"], **window}
        for position in (0, 1001):
            body = {"rules": [{**promotion, "position": position}]}
            assert not rules.is_valid(body)
            _refused_as_documented(client.put("/v1/placements/product/rules", json=body))
        assert client.put("/v1/placements/product", json={"filters": {"price_min": 0.5}}).status_code == 200
