"""The analytics pages a purchase-only shop needs, served by the real app (``mount_pages`` over a
real SQLite store filled with a tenth of Online Retail's customers, their whole year): the
dashboard leads with the purchase-only headline (browsing events never change it), and the
forecast page shows the next 14 days of the top 20 items and categories with intervals, a plot and
the back-test's interval coverage, behind the analyst credential."""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from shelfwise.core.access import KeyRing, Role
from shelfwise.core.settings import Settings
from shelfwise.data.readers import get_format
from shelfwise.data.schemas import Event, EventType
from shelfwise.store import open_store
from shelfwise.store.ingest import ingest_events
from shelfwise.web.access import PageAccess
from shelfwise.web.pages import mount_pages
from tests.conftest import TEST_KEY
from tests.integration.test_cli import one_json, run
from tests.unit.analytics.conftest import retail_customer_slice


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("purchase_only_shop")
    settings = Settings(var_dir=root / "var", pseudonym_key=TEST_KEY)
    with open_store(f"sqlite:///{root / 'store.db'}") as store:
        ingest_events(
            store, retail_customer_slice(root / "retail.csv"), get_format("online-retail"), settings
        )
    return root


@pytest.fixture(scope="module")
def site(shop: Path) -> Iterator[tuple[TestClient, Any, str]]:
    ring = KeyRing(shop / "var" / "keys.json")
    analyst, _ = ring.create(Role.ANALYST)
    app = FastAPI()
    dashboard = mount_pages(
        app,
        store_url=f"sqlite:///{shop / 'store.db'}",
        var_dir=shop / "var",
        access=PageAccess.from_ring(ring, shop / "var"),
        build_report=False,
    )
    with TestClient(app) as client:
        yield client, dashboard, analyst
    dashboard.close()


def _purchases(db: Path) -> tuple[float, int]:
    with sqlite3.connect(db) as conn:
        revenue, orders = conn.execute(
            "SELECT sum(price * quantity), count(DISTINCT coalesce(session_id, event_id)) "
            "FROM events WHERE type = 'purchase'"
        ).fetchone()
    return float(revenue), int(orders)


def test_the_dashboard_leads_with_the_purchase_only_headline(
    site: tuple[TestClient, Any, str], shop: Path
) -> None:
    client, dashboard, analyst = site
    key = {"X-API-Key": analyst}
    assert client.get("/analytics/api/headline").status_code == 401
    assert client.get("/analytics/", follow_redirects=False).status_code == 303  # to sign in

    # the page never waits for the snapshot: the first look may say the headline is being computed
    first = client.get("/analytics/", headers=key)
    assert first.status_code == 200 and first.text.index('id="headline"') < first.text.index(
        'id="funnel-explorer"'
    )
    before = client.get("/analytics/api/headline", headers=key).json()  # answers once computed
    page = client.get("/analytics/", headers=key)
    html = page.text
    assert 'id="headline-pending"' not in html
    # the headline comes first, before the funnel explorer, with its definition
    assert html.index('id="headline"') < html.index('id="funnel-explorer"')
    assert "From purchase events only" in html and "Repeat rate" in html
    revenue, orders = _purchases(shop / "store.db")
    shown = re.search(r'id="headline-revenue">([\d,.]+)<', html)
    assert shown is not None and abs(float(shown.group(1).replace(",", "")) - revenue) < 0.01
    assert re.search(r'id="headline-orders">([\d,]+)<', html).group(1).replace(",", "") == str(orders)  # type: ignore[union-attr]
    assert before["purchase_only"] and before["totals"]["orders"] == orders
    assert 0 < before["totals"]["repeat_rate"] < 1
    assert before["by_month"][0]["key"] == "2010-12" and "United Kingdom" in html

    # browsing events (views, clicks, carts; priced, in new sessions) join the store: the funnel
    # has them, the headline does not move
    first = int(dt.datetime(2011, 6, 1, tzinfo=dt.UTC).timestamp() * 1000)
    browsing = [
        Event(
            event_id=f"browse-{n}",
            type=t,
            ts=first + n * 60_000,
            user_id=f"browser-{n % 7}",
            session_id=f"browse-session-{n}",
            item_id="85123A",
            quantity=3,
            price=2.55,
        )
        for n, t in enumerate([EventType.VIEW, EventType.CLICK, EventType.CART] * 30)
    ]
    with open_store(f"sqlite:///{shop / 'store.db'}") as store:
        store.append_events(browsing)
    dashboard.store(max_age_s=0)  # the next request reads a fresh snapshot
    funnel = client.get("/analytics/api/funnel?by=total", headers=key).json()
    assert funnel["rows"][0][funnel["columns"].index("views")] >= 30
    after = client.get("/analytics/api/headline", headers=key).json()
    assert not after["purchase_only"]
    dashboard.headline_now()
    assert after["totals"] == before["totals"] and after["by_month"] == before["by_month"]
    assert "also has views, clicks or carts" in client.get("/analytics/", headers=key).text

    # the CLI says the same
    cli = one_json(run("analytics", "headline", "--db", f"sqlite:///{shop / 'store.db'}", "--json", cwd=shop))
    assert cli["totals"] == before["totals"]


def test_the_forecast_page_shows_14_days_with_intervals_and_backtest_coverage(
    site: tuple[TestClient, Any, str], shop: Path
) -> None:
    client, dashboard, analyst = site
    key = {"X-API-Key": analyst}
    assert client.get("/analytics/api/forecast").status_code == 401
    assert client.get("/analytics/forecast", follow_redirects=False).status_code == 303
    first = client.get("/analytics/forecast", headers=key)  # opening the page starts the forecast
    assert first.status_code == 200 and 'data-status="building"' in first.text
    state = dashboard.build_forecast(wait=True)
    assert state["status"] == "ready", state

    data = client.get("/analytics/api/forecast", headers=key).json()["forecast"]
    with sqlite3.connect(shop / "store.db") as conn:
        last_ms = conn.execute("SELECT max(ts) FROM events WHERE type = 'purchase'").fetchone()[0]
    last_day = dt.datetime.fromtimestamp(last_ms / 1000, tz=dt.UTC).date()
    html = client.get("/analytics/forecast", headers=key).text
    for level in ("item", "category"):
        f = data["levels"][level]
        assert f["horizon"] == 14 and len(f["keys"]) == 20 and len(f["forecasts"]) == 20 * 14
        periods = sorted({r["period"] for r in f["forecasts"]})
        assert periods[0] == str(last_day + dt.timedelta(days=1)) and len(periods) == 14
        assert all(r["lower"] <= r["forecast"] <= r["upper"] for r in f["forecasts"])
        coverage = f["backtest"]["interval_coverage"]
        # the back-test's coverage, counted again from its own rows
        rows = f["backtest_forecasts"]
        assert coverage == pytest.approx(
            sum(r["lower"] <= r["actual"] <= r["upper"] for r in rows) / len(rows), abs=0.01
        )
        assert f"{coverage:.1%}" in html
        section = html[html.index(f'id="forecast-{level}"') :]
        assert section.count("<tr><td>") >= 20
        chart = client.get(f"/analytics/chart/forecast-{level}.svg", headers=key)
        assert chart.status_code == 200 and chart.headers["content-type"].startswith("image/svg+xml")
        assert b"<svg" in chart.content[:500]
    assert 'src="/analytics/chart/forecast-item.svg"' in html
    assert client.get("/analytics/chart/forecast-brand.svg", headers=key).status_code == 422
    assert client.get("/analytics/chart/forecast-item.svg").status_code == 401
