"""Search experiments through the real app: arms on the search placement compare search modes and
index versions; each answer says its arm, is served by that arm's index version and mode, and is
logged under it, so the experiment's status reads search outcomes per arm."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from shelfwise.api.app import create_app
from shelfwise.evaluation.experiment_service import ExperimentSpec
from shelfwise.evaluation.experiments import shown_propensities
from shelfwise.serving.search_service import index_registry
from shelfwise.store.impressions import get_impressions
from tests.integration.api_fixtures import API_KEY, Served, reader

ADMIN = {"X-API-Key": API_KEY}
EXAM = [1.0, 0.5, 0.3]  # an interleaving experiment's examination curve


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


def _drafts(a: list[str], b: list[str], k: int) -> set[tuple[str, ...]]:
    """Every list team draft can make of ``a`` and ``b`` (every coin sequence)."""
    import itertools

    from shelfwise.evaluation.experiments import _draft

    out = set()
    for coins in itertools.product((True, False), repeat=k):
        out.add(tuple(_draft(a, b, k, iter(coins).__next__)[0]))
    return out


def test_a_search_interleaving_experiment_serves_team_drafts_and_credits_clicks(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two index versions on the search placement, interleaved: every answer of a shopper in the
    experiment is a team draft of both versions' hits (the same one when the shopper asks again or
    turns the page), logged with each slot's credits under both versions; shoppers who click the
    items only B shows make the status prefer B on both credits."""
    svc = _svc(client)
    items = sorted(svc.store.get_items(svc.store.item_ids()).values(), key=lambda it: it.item_id)
    # arm B: an index of every other item, so its hits differ from A's
    other = index_registry(svc.settings).build(items[::2], mode="bm25", activate=False).version
    svc.feedback.experiments.create(
        ExperimentSpec(
            name="search-inter",
            placement="search",
            kind="interleaving",
            arms=[{"name": "current", "share": 0.5}, {"name": "half", "share": 0.5, "index_version": other}],
            examination=EXAM,
        )
    )
    assert svc.search_arms.wait(other)
    engine_b = svc.search_arms.engine(other)[0]
    a = [h.item.item_id for h in svc.search.search("heart", k=10, mode=svc.search_mode).hits]
    b = [h.item.item_id for h in engine_b.search("heart", k=10, mode="bm25").hits]
    only_b = set(b) - set(a)
    assert len(a) == len(b) == 10 and only_b
    possible = _drafts(a, b, 10)

    bodies = []
    for n in range(60):
        r = client.get("/v1/search", params={"q": "heart", "size": 10, "session_id": f"shopper-{n}"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["experiment"], body["arm"]) == ("search-inter", "interleaved")
        assert tuple(h["item_id"] for h in body["hits"]) in possible
        assert any("team draft of index version" in note for note in body["notes"])
        bodies.append(body)
    assert len({tuple(h["item_id"] for h in b["hits"]) for b in bodies}) > 1  # the coins differ by shopper
    again = client.get("/v1/search", params={"q": "heart", "size": 10, "session_id": "shopper-0"}).json()
    assert [h["item_id"] for h in again["hits"]] == [h["item_id"] for h in bodies[0]["hits"]]
    second = client.get("/v1/search", params={"q": "heart", "size": 5, "page": 2, "session_id": "shopper-0"})
    assert [h["item_id"] for h in second.json()["hits"]] == [h["item_id"] for h in bodies[0]["hits"][5:]]

    # every shopper clicks the first item B ranks above A (one A does not rank at all, if shown)
    def rank(ranking: list[str], item: str) -> int:
        return ranking.index(item) if item in ranking else len(ranking)

    for n, body in enumerate(bodies):
        ids = [h["item_id"] for h in body["hits"]]
        better = [i for i, item in enumerate(ids) if rank(b, item) < rank(a, item)]
        pos = next((i for i in better if ids[i] in only_b), better[0]) + 1
        click = {
            "type": "click",
            "session_id": f"shopper-{n}",
            "item_id": ids[pos - 1],
            "search_id": body["search_id"],
            "position": pos,
        }
        assert client.post("/v1/events", json=click, headers=ADMIN).status_code == 202
    assert svc.feedback.flush()
    logged = get_impressions(svc.store, [bodies[0]["search_id"], second.json()["search_id"]])
    imp = logged[bodies[0]["search_id"]]
    assert (imp.arm, imp.experiment) == ("interleaved", "search-inter")
    assert imp.version == f"{svc.search_version}:{svc.search_mode}+{other}:bm25"
    assert len(imp.interleaving["team"]) == len(imp.interleaving["ips"]) == 10
    # the credits divide by the experiment's examination curve (the last value holds deeper down)
    exam = [EXAM[min(r, len(EXAM) - 1)] for r in range(10)]
    q = shown_propensities(a, b, 10, exam)
    gain = [{item: 1 / np.log2(r + 2) for r, item in enumerate(x)} for x in (a, b)]
    served = [h["item_id"] for h in bodies[0]["hits"]]
    expected = [round((gain[0].get(d, 0.0) - gain[1].get(d, 0.0)) / q[d], 6) for d in served]
    assert imp.interleaving["ips"] == pytest.approx(expected)
    page_two = logged[second.json()["search_id"]].interleaving
    assert page_two["ips"] == imp.interleaving["ips"][5:]  # page 2's slots keep their credits
    status = svc.feedback.experiments.status("search-inter", persist=False)
    assert status["kind"] == "interleaving" and status["clicks"] == 60
    assert status["arms"][1]["index_version"] == other
    assert status["credit"]["inverse_propensity"]["mean"] < 0 and status["credit"]["team_draft"]["mean"] < 0
    assert status["preferred"] == "half"
    from shelfwise.registry.gate import experiment_gate

    assert experiment_gate(status).passed  # B: the index version a release would activate
    assert not experiment_gate(status, arm="current").passed

    # past the drafted depth, A's remaining hits in A's order, credited to neither arm
    from shelfwise.api.routes import search as search_routes

    monkeypatch.setattr(search_routes, "INTERLEAVE_DEPTH", 4)
    deep = client.get("/v1/search", params={"q": "heart", "size": 10, "session_id": "shopper-deep"}).json()
    ids = [h["item_id"] for h in deep["hits"]]
    assert tuple(ids[:4]) in _drafts(a, b, 4)
    assert ids[4:] == [i for i in a if i not in ids[:4]][:6]
    assert svc.feedback.flush()
    credits = get_impressions(svc.store, [deep["search_id"]])[deep["search_id"]].interleaving
    assert credits["team"][4:] == [0] * 6 and credits["ips"][4:] == [0.0] * 6
