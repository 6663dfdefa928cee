"""The experiments page through the real app: admin only; each experiment's arms, exposure, lifts
with intervals, the sample-ratio check, guardrails and a decision, from the same status the CLI
reads; text from the store (a placement name) is escaped."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from shelfwise.api.app import create_app
from shelfwise.core.access import Role
from shelfwise.evaluation.experiment_service import ExperimentSpec
from tests.integration.api_fixtures import API_KEY, Served, reader

ADMIN = {"X-API-Key": API_KEY}


@pytest.fixture
def client(served: Served) -> Iterator[TestClient]:
    app = create_app(served.settings(), served.url, watch_interval=None)
    with TestClient(app, headers=reader(app)) as c:
        yield c


def _svc(c: TestClient) -> Any:
    return c.app.state.services  # type: ignore[attr-defined]


def test_the_experiments_page_shows_arms_exposure_lifts_srm_and_a_decision(client: TestClient) -> None:
    svc = _svc(client)
    exps = svc.feedback.experiments
    exps.create(
        ExperimentSpec(
            name="home-split",
            placement="home",
            arms=[{"name": "control", "share": 0.5}, {"name": "treatment", "share": 0.5}],
            salt="page-test",
            guardrails=[{"metric": "add_to_cart_rate", "max_drop": 0.05}],
        )
    )
    exps.create(
        ExperimentSpec(
            name="odd-place",
            placement='<script>alert("x")</script>',
            arms=[{"name": "a", "share": 0.5}, {"name": "b", "share": 0.5}],
        )
    )
    served_arms: dict[str, int] = {}
    clicks = []
    for n in range(40):
        user = f"page-shopper-{n}"
        body = client.get(f"/v1/users/{user}/recommendations", params={"k": 4}).json()
        served_arms[body["arm"]] = served_arms.get(body["arm"], 0) + 1
        if body["arm"] == "treatment" or n % 3 == 0:
            item = body["items"][0]["item_id"]
            clicks.append(
                {"type": "click", "user_id": user, "item_id": item, "rec_id": body["rec_id"], "position": 1}
            )
    assert set(served_arms) == {"control", "treatment"}
    assert client.post("/v1/events", json={"events": clicks}, headers=ADMIN).status_code == 202
    assert svc.feedback.flush()

    assert client.get("/experiments", follow_redirects=False, headers={"X-API-Key": ""}).status_code in (
        303,
        401,
    )
    analyst, _ = svc.keys.create(Role.ANALYST, "tests")
    assert client.get("/experiments", headers={"X-API-Key": analyst}).status_code == 403
    page = client.get("/experiments", headers=ADMIN)
    assert page.status_code == 200
    html = page.text
    assert "home-split" in html and "treatment" in html and "Decision:" in html
    assert "guardrail add_to_cart_rate" in html and "95% interval" in html
    assert "<script>alert" not in html and "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html

    data = client.get("/experiments/api", headers=ADMIN).json()
    shown = {e["name"]: e for e in data["experiments"]}
    e = shown["home-split"]
    status = exps.status("home-split", persist=False)
    assert {a["arm"]: a["units"] for a in e["arms"]} == {a["arm"]: a["units"] for a in status["arms"]}
    assert sum(a["units"] for a in e["arms"]) == 40
    assert {a["arm"]: a["impressions"] for a in e["arms"]} == served_arms
    assert e["srm_flagged"] is status["srm"]["flagged"]
    (comparison,) = e["comparisons"]
    lifts = {m: (lift, interval) for m, lift, interval in comparison["lifts"]}
    ctr = status["comparisons"][0]["lifts"]["ctr"]
    assert lifts["ctr"][0] == f"{100 * ctr['lift']:+.2f}%" and lifts["ctr"][1].startswith("[")
    assert f"{100 * ctr['lift']:+.2f}%" in html
    assert e["decision"] and shown["odd-place"]["decision"].startswith("keep running")


def test_the_experiments_page_shows_an_interleaving_experiment_and_its_credits(client: TestClient) -> None:
    svc = _svc(client)
    svc.feedback.experiments.create(
        ExperimentSpec(
            name="inter-page",
            placement="<b>home</b>",
            kind="interleaving",
            arms=[{"name": "current", "share": 0.5}, {"name": "next", "share": 0.5, "version": "v-next"}],
        )
    )
    html = client.get("/experiments", headers=ADMIN).text
    assert "inter-page" in html and "interleaving current vs next" in html
    assert "inverse propensity (primary)" in html and "team draft" in html and "v-next" in html
    assert "keep running: no credible preference yet" in html
    assert "Examination curve (what the inverse-propensity credit divides by): assumed: 1/log2(r + 1)" in html
    assert "<b>home</b>" not in html and "&lt;b&gt;home&lt;/b&gt;" in html
    (e,) = [
        x
        for x in client.get("/experiments/api", headers=ADMIN).json()["experiments"]
        if x["name"] == "inter-page"
    ]
    assert e["kind"] == "interleaving" and e["units"] == 0 and e["arms"][1]["version"] == "v-next"


def test_a_search_interleaving_experiment_shows_its_index_versions_and_modes(client: TestClient) -> None:
    svc = _svc(client)
    svc.feedback.experiments.create(
        ExperimentSpec(
            name="search-page",
            placement="search",
            kind="interleaving",
            arms=[
                {"name": "current", "share": 0.5},
                {"name": "next", "share": 0.5, "index_version": "<i>idx-2</i>", "search_mode": "bm25"},
            ],
        )
    )
    html = client.get("/experiments", headers=ADMIN).text
    section = html[html.index("search-page") :]
    assert "<th>index version</th><th>search mode</th>" in section
    assert "&lt;i&gt;idx-2&lt;/i&gt;" in section and "<i>idx-2</i>" not in html
    assert "<td>bm25</td>" in section and "<td>its own</td>" in section
