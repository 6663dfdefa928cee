"""The storefront with merchandising, in a real browser (Debian's Chromium via Playwright) against the
real service (uvicorn on loopback, a SQLite store from a slice of Online Retail with its catalogue
annotated at ingest, a trained model): the header's search box on the home page leads to priced
results with facets from annotated attributes; a product page shows its attributes, similar and
bought-together items; a pin saved through the API shows at its position, and a blocked brand never
shows, on the next page load within a second; the pages work at phone width with labelled inputs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from shelfwise.api.app import create_app
from tests.integration.api_fixtures import API_KEY, Served
from tests.live import chromium_page, live_server, screenshot

ADMIN = {"X-API-Key": API_KEY}


@pytest.fixture
def site(served: Served) -> Iterator[tuple[str, Any]]:
    settings = served.settings(rate_limit_per_second=0, dashboard_on_start=False)
    app = create_app(settings, served.url, watch_interval=None)
    with live_server(app) as base, chromium_page() as page:
        yield base, page


def _unlabelled(page: Any) -> list[str]:
    """Ids of visible inputs with no label (a <label for>, a wrapping label or aria-label)."""
    return page.evaluate(
        """() => [...document.querySelectorAll('input:not([type=hidden]), select')]
              .filter((e) => !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
              .map((e) => e.id || e.name)"""
    )


def test_home_search_box_to_priced_results_with_facets_and_a_product_page(site: tuple[str, Any]) -> None:
    base, page = site
    page.goto(f"{base}/")
    page.wait_for_selector("#recs .item")
    assert _unlabelled(page) == []
    page.fill("#site-q", "lantern")
    page.wait_for_function("() => Number(document.getElementById('site-suggestions').dataset.count || 0) > 0")
    page.press("#site-q", "Enter")
    page.wait_for_url("**/search?*q=lantern*")
    page.wait_for_selector("#results .item")
    prices = page.locator("#results .item .price").all_text_contents()
    assert prices and all(any(ch.isdigit() for ch in p) for p in prices)
    assert page.locator("#results .item .category").count() >= 1
    assert page.locator("#results .item .availability").count() >= 1
    facets = page.locator("#facets a.facet").evaluate_all("(as) => as.map((a) => a.dataset.facet)")
    assert "product_type" in facets, facets  # annotated at ingest, shown as a facet
    assert _unlabelled(page) == []
    screenshot(page, "storefront-search-header")

    # an attribute facet narrows the results to it
    total = int(page.text_content("#search-meta").split()[0])
    page.locator("#facets a.facet[data-facet='product_type']").first.click()
    page.wait_for_selector("#active-filters")
    assert int(page.text_content("#search-meta").split()[0]) <= total

    page.locator("#results .item a").first.click()
    page.wait_for_selector("#similar .item")
    assert page.locator("#attributes dd").count() >= 1
    assert any(ch.isdigit() for ch in page.text_content("#price"))
    page.wait_for_selector("#together .item, #together p.note")
    screenshot(page, "storefront-product-attributes")

    # phone width: the header search box stays, nothing scrolls sideways
    page.set_viewport_size({"width": 375, "height": 800})
    page.reload()
    page.wait_for_selector("#similar .item")
    assert page.is_visible("#site-q")
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth + 1")
    screenshot(page, "storefront-product-phone")


def test_a_pin_and_a_blocked_brand_hold_on_the_page_within_a_second(site: tuple[str, Any]) -> None:
    base, page = site
    page.goto(f"{base}/")
    page.wait_for_selector("#recs .item")
    shown = [e.get_attribute("data-item") for e in page.locator("#recs .item").all()]
    pinned, branded = shown[-1], shown[0]
    item = page.request.get(f"{base}/v1/items/{branded}").json()
    body = {k: item[k] for k in ("title", "category", "price", "currency")}
    assert page.request.put(f"{base}/v1/items/{branded}", data={**body, "brand": "Acme"}, headers=ADMIN).ok
    rules = {
        "rules": [
            {"kind": "pin", "item_id": pinned, "position": 2, "name": "hero"},
            {"kind": "block", "brands": ["acme"], "name": "no acme"},
        ]
    }
    saved = page.request.put(f"{base}/v1/placements/home/rules", data=rules, headers=ADMIN)
    assert saved.ok, saved.text()
    started = time.monotonic()
    served_now = page.request.get(f"{base}/v1/recommendations?k=12&scenario=home").json()
    assert time.monotonic() - started < 1.0
    assert [i["item_id"] for i in served_now["items"]][1] == pinned
    page.reload()
    page.wait_for_selector("#recs .item")
    now = [e.get_attribute("data-item") for e in page.locator("#recs .item").all()]
    assert now[1] == pinned and branded not in now
    assert 'pinned at 2 by rule "hero"' in page.locator("#recs .item .why").nth(1).text_content()
    screenshot(page, "storefront-merchandised-home")
