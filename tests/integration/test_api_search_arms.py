"""Search experiments through the real app: arms on the search placement compare search modes and
index versions; each answer says its arm, is served by that arm's index version and mode, and is
logged under it, so the experiment's status reads search outcomes per arm."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from shelfwise.api.app import create_app
from shelfwise.evaluation.experiment_service import ExperimentSpec
from shelfwise.serving.search_service import index_registry
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


def _search(c: TestClient, session: str) -> dict[str, Any]:
    r = c.get("/v1/search", params={"q": "heart", "size": 5, "session_id": session})
    assert r.status_code == 200, r.text
    return r.json()


def test_search_arms_serve_their_mode_and_index_version_and_are_logged(client: TestClient) -> None:
    svc = _svc(client)
    usual_version, usual_mode = svc.search_version, svc.search_mode
    # another index version of the same catalogue, keyword only, registered but not activated
    items = list(svc.store.get_items(svc.store.item_ids()).values())
    other = index_registry(svc.settings).build(items, mode="bm25", activate=False).version
    assert other != usual_version
    svc.feedback.experiments.create(
        ExperimentSpec(
            name="search-arms",
            placement="search",
            arms=[
                {"name": "control", "share": 0.34},
                {"name": "keyword", "share": 0.33, "search_mode": "bm25"},
                {"name": "old-index", "share": 0.33, "index_version": other},
            ],
            salt="search-test",
        )
    )
    assert svc.search_arms.wait(other)
    answers: dict[str, list[dict[str, Any]]] = {}
    for n in range(45):
        body = _search(client, f"visit-{n}")
        answers.setdefault(body["arm"], []).append({**body, "session": f"visit-{n}"})
    assert set(answers) == {"control", "keyword", "old-index"}
    for b in answers["control"]:
        assert (b["experiment"], b["model_version"], b["mode"]) == ("search-arms", usual_version, usual_mode)
    for b in answers["keyword"]:
        assert (b["model_version"], b["mode"]) == (usual_version, "bm25")
    for b in answers["old-index"]:
        assert (b["model_version"], b["mode"]) == (other, "bm25")
        assert b["hits"]  # the other index answers the query
    # outside the experiment: no session, no arm
    plain = client.get("/v1/search", params={"q": "heart", "size": 5}).json()
    assert plain["arm"] is None and plain["model_version"] == usual_version

    assert svc.feedback.flush()
    treated = answers["old-index"][0]
    logged = get_impressions(svc.store, [treated["search_id"], answers["control"][0]["search_id"]])
    imp = logged[treated["search_id"]]
    assert (imp.kind, imp.version, imp.experiment, imp.arm) == ("search", other, "search-arms", "old-index")
    assert logged[answers["control"][0]["search_id"]].arm == "control"
    click = {
        "type": "click",
        "session_id": treated["session"],  # the visit that searched
        "item_id": treated["hits"][0]["item_id"],
        "search_id": treated["search_id"],
        "position": 1,
    }
    assert client.post("/v1/events", json=click, headers=ADMIN).status_code == 202
    assert svc.feedback.flush()
    status = svc.feedback.experiments.status("search-arms", persist=False)
    by_arm = {a["arm"]: a for a in status["arms"]}
    assert {a: by_arm[a]["units"] for a in by_arm} == {a: len(v) for a, v in answers.items()}
    assert by_arm["old-index"]["totals"]["clicks"] == 1 and by_arm["control"]["totals"]["clicks"] == 0


def test_a_mode_the_arms_index_cannot_serve_gets_the_usual_answer(client: TestClient) -> None:
    svc = _svc(client)
    svc.feedback.experiments.create(
        ExperimentSpec(
            name="ltr-arm",
            placement="search",
            arms=[{"name": "control", "share": 0.5}, {"name": "ltr", "share": 0.5, "search_mode": "ltr"}],
        )
    )
    bodies = [_search(client, f"s{n}") for n in range(20)]
    assert {b["arm"] for b in bodies} <= {"control", None} and None in {b["arm"] for b in bodies}
    assert all(b["mode"] == svc.search_mode for b in bodies)
