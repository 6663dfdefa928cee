"""Differentially private aggregates on the analytics pages (issue 18): every release spends ε from
the store's ledger, the page shows what was spent and what is left, and a release past the budget
is refused with the reason — through the JSON endpoint and the page, on a real SQLite store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from shelfwise.core.access import KeyRing, Role
from shelfwise.core.settings import Settings
from shelfwise.data.readers import get_format
from shelfwise.store import open_store
from shelfwise.store.ingest import ingest_events
from shelfwise.store.ledger import PrivacyLedger
from shelfwise.web.access import PageAccess
from shelfwise.web.pages import mount_pages
from tests.conftest import TEST_KEY


@pytest.fixture
def shop(
    tmp_path: Path, retail_slice: Path
) -> Iterator[tuple[TestClient, str, dict[str, str], dict[str, str]]]:
    var = tmp_path / "var"
    url = f"sqlite:///{tmp_path / 'store.db'}"
    with open_store(url) as store:
        ingest_events(
            store, retail_slice, get_format("online-retail"), Settings(var_dir=var, pseudonym_key=TEST_KEY)
        )
        PrivacyLedger(store).set_budget(1.0)
    ring = KeyRing(var / "keys.json")
    analyst, _ = ring.create(Role.ANALYST)
    writer, _ = ring.create(Role.WRITE)
    app = FastAPI()
    dashboard = mount_pages(
        app, store_url=url, var_dir=var, access=PageAccess.from_ring(ring, var), build_report=False
    )
    with TestClient(app) as client:
        yield client, url, {"X-API-Key": analyst}, {"X-API-Key": writer}
    dashboard.close()


def _releases(url: str) -> int:
    with open_store(url) as store:
        return len(PrivacyLedger(store).releases())


def test_private_aggregates_need_an_analyst(
    shop: tuple[TestClient, str, dict[str, str], dict[str, str]],
) -> None:
    client, url, _, writer = shop
    ask = {"query": "category-popularity", "epsilon": 0.1}
    assert client.post("/analytics/api/private", json=ask).status_code == 401
    assert client.post("/analytics/api/private", json=ask, headers=writer).status_code == 403
    assert client.get("/analytics/api/private", headers=writer).status_code == 403
    page = client.get("/analytics/private", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/sign-in")
    assert _releases(url) == 0


def test_a_release_spends_epsilon_and_one_past_the_budget_is_refused(
    shop: tuple[TestClient, str, dict[str, str], dict[str, str]],
) -> None:
    client, url, analyst, _ = shop
    first = client.post(
        "/analytics/api/private", json={"query": "category-popularity", "epsilon": 0.6}, headers=analyst
    )
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["rows"] and "events" in body["columns"] and body["release_id"] is not None
    assert body["budget"]["spent_epsilon"] == pytest.approx(0.6)
    assert body["budget"]["remaining_epsilon"] == pytest.approx(0.4)
    refused = client.post("/analytics/api/private", json={"query": "funnel", "epsilon": 0.6}, headers=analyst)
    assert refused.status_code == 409
    why = refused.json()
    assert why["error"] == "privacy_budget_exhausted"
    assert "only 0.4 of 1 is left" in why["detail"] and why["budget"]["remaining_epsilon"] == pytest.approx(
        0.4
    )
    assert _releases(url) == 1  # the refused release recorded nothing
    ledger = client.get("/analytics/api/private", headers=analyst).json()
    assert ledger["spent_epsilon"] == pytest.approx(0.6) and len(ledger["ledger"]) == 1


def test_the_page_shows_noisy_counts_with_epsilon_spent_and_left(
    shop: tuple[TestClient, str, dict[str, str], dict[str, str]],
) -> None:
    client, url, analyst, _ = shop
    page = client.get("/analytics/private", headers=analyst)
    assert page.status_code == 200 and 'id="budget-left">1<' in page.text
    form = {"query": "funnel", "epsilon": "0.25", "by": "total", "top": "5"}
    shown = client.post("/analytics/private", data=form, headers=analyst)
    assert shown.status_code == 200, shown.text
    assert 'id="private-rows"' in shown.text and 'id="release-epsilon">0.25<' in shown.text
    assert 'id="release-left">0.75<' in shown.text and 'id="budget-spent">0.25<' in shown.text
    refused = client.post("/analytics/private", data={**form, "epsilon": "0.9"}, headers=analyst)
    assert refused.status_code == 409
    assert "privacy budget exhausted" in refused.text and "only 0.75 of 1 is left" in refused.text
    assert 'id="private-rows"' not in refused.text
    assert _releases(url) == 1


@pytest.mark.parametrize(
    "ask",
    [
        {"query": "everything", "epsilon": 0.1},
        {"query": "funnel", "epsilon": "lots"},
        {"query": "funnel", "epsilon": 0},
        {"query": "funnel", "epsilon": "nan"},
        {"query": "funnel", "epsilon": 0.1, "by": "shopper"},
        {"query": "funnel", "epsilon": 0.1, "top": 0},
    ],
)
def test_bad_requests_are_refused_before_any_epsilon_is_spent(
    shop: tuple[TestClient, str, dict[str, str], dict[str, str]], ask: dict[str, object]
) -> None:
    client, url, analyst, _ = shop
    assert client.post("/analytics/api/private", json=ask, headers=analyst).status_code == 422
    assert (
        client.post(
            "/analytics/private", data={k: str(v) for k, v in ask.items()}, headers=analyst
        ).status_code
        == 422
    )
    assert _releases(url) == 0
