"""The analytics dashboard in a real browser: Debian's Chromium, a real uvicorn server, a real
SQLite store filled from a slice of Online Retail."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import FastAPI

from shelfwise.core.access import KeyRing, Role
from shelfwise.web.access import PageAccess
from shelfwise.web.pages import mount_pages
from tests.integration.test_cli import run
from tests.live import chromium_page, live_server, screenshot


@pytest.fixture
def store_dir(tmp_path: Path, retail_slice: Path) -> Path:
    run("ingest", "events", str(retail_slice), "--format", "online-retail", cwd=tmp_path)
    return tmp_path


def test_dashboard_shows_the_report_and_a_live_funnel(store_dir: Path) -> None:
    app = FastAPI()
    var = store_dir / "var"
    ring = KeyRing(var / "keys.json")
    analyst, _ = ring.create(Role.ANALYST)
    dashboard = mount_pages(
        app,
        store_url=f"sqlite:///{var / 'shelfwise.db'}",
        var_dir=var,
        access=PageAccess.from_ring(ring, var),
    )
    with live_server(app) as base, chromium_page() as page:
        # the dashboard needs an analyst: the page sends a person to sign in, then back
        page.goto(f"{base}/analytics")
        page.wait_for_selector("#sign-in")
        page.fill("#key", "not-a-key")
        page.click("#sign-in")
        page.wait_for_selector("#sign-in-error")
        page.fill("#key", analyst)
        page.click("#sign-in")
        page.wait_for_url(f"{base}/analytics/")
        assert page.title().startswith("Analytics")
        assert "analyst" in page.text_content("#signed-in-as")
        assert not page.evaluate("document.cookie"), "the session cookie is HttpOnly"
        # the report builds in the background; the page polls and reloads when it is ready
        page.wait_for_selector("#report h2:has-text('Funnel')", timeout=120_000)
        assert dashboard.state["status"] == "ready"
        assert page.locator("#report img[alt='orders by hour']").evaluate("i => i.naturalWidth") > 100
        # the live explorer re-queries the store for the chosen dimension
        page.select_option("#funnel-by", "day")
        page.wait_for_selector("#funnel-table td:has-text('2010-12-01')")
        rows = page.locator("#funnel-table tr").count()
        assert rows >= 2
        page.wait_for_function(
            "() => { const i = document.getElementById('funnel-chart');"
            " return i.complete && i.naturalWidth > 100 && i.src.includes('by=day'); }"
        )
        screenshot(page, "analytics-dashboard")
        # a bad dimension is a clear 422, not a server error
        bad = page.request.get(f"{base}/analytics/api/funnel?by=colour")
        assert bad.status == 422 and "must be one of" in bad.json()["detail"]
        missing = page.request.get(f"{base}/analytics/..%2Fpseudonym.key")
        assert missing.status == 404
        # the session's cookie alone cannot rebuild (a cross-site POST carries no CSRF token)...
        assert page.request.post(f"{base}/analytics/api/rebuild").status == 403
        # ...the page's own button can
        page.click("#rebuild")
        page.wait_for_selector("#report-status[data-status='building']")
        dashboard.build(wait=True)
        assert dashboard.state["status"] == "ready"
    dashboard.close()
