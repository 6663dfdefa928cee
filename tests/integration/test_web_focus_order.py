"""Keyboard use of the storefront in a real browser (Debian's Chromium via Playwright, the real
service on loopback over a slice of Online Retail): Tab walks the header's search box, the search
results and a product page in the order they are read, every stop shows where the focus is, and
the keyboard alone searches, opens a product and adds it to the cart."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest

from shelfwise.api.app import create_app
from tests.integration.api_fixtures import Served
from tests.live import chromium_page, live_server, screenshot

# what a person can Tab to, in document order (visible, not disabled, tabindex not negative)
TABBABLE = """() => [...document.querySelectorAll(
    'a[href], button, input:not([type=hidden]), select, textarea, [tabindex]')]
  .filter((e) => !e.disabled && e.tabIndex >= 0 && e.getClientRects().length > 0
                 && getComputedStyle(e).visibility !== 'hidden')
  .map((e) => e.dataset.focusKey || (e.dataset.focusKey = String(Math.random())))"""
# the focused element: its key, what it is, and whether its focus shows
ACTIVE = """() => {
  const e = document.activeElement;
  const s = getComputedStyle(e);
  const r = e.getBoundingClientRect();
  return {
    key: e.dataset.focusKey || null,
    tag: e.tagName.toLowerCase(), id: e.id, text: (e.textContent || e.value || '').trim().slice(0, 40),
    inResults: !!e.closest('#results'), inFacets: !!e.closest('#facets'), inHeader: !!e.closest('header'),
    inSimilar: !!e.closest('#similar'),
    outline: s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 1,
    onScreen: r.width > 0 && r.height > 0 && r.right > 0 && r.left < window.innerWidth,
    top: Math.round(r.top + window.scrollY), left: Math.round(r.left),
  };
}"""


@pytest.fixture
def site(served: Served) -> Iterator[tuple[str, Any]]:
    settings = served.settings(rate_limit_per_second=0, dashboard_on_start=False)
    app = create_app(settings, served.url, watch_interval=None)
    with live_server(app) as base, chromium_page() as page:
        yield base, page


def _walk(page: Any, stops: int) -> list[dict[str, Any]]:
    """Press Tab ``stops`` times from the top of the page; where the focus went each time."""
    # a start point before everything (Chrome goes on from the last focused element otherwise)
    page.evaluate(
        """() => {
      document.getElementById('focus-start')?.remove();
      const start = document.createElement('span');
      start.id = 'focus-start';
      start.tabIndex = -1;
      document.body.prepend(start);
      start.focus();
      window.scrollTo(0, 0);
    }"""
    )
    seen = []
    for _ in range(stops):
        page.keyboard.press("Tab")
        seen.append(page.evaluate(ACTIVE))
    return seen


def _check_order(page: Any, seen: list[dict[str, Any]]) -> None:
    """The Tab stops are the page's tabbable elements in document order, each with its focus shown."""
    order = page.evaluate(TABBABLE)
    keys = [s["key"] for s in seen]
    assert None not in keys, [s for s in seen if s["key"] is None]  # nothing outside the list got focus
    assert keys == order[: len(keys)], "Tab order is not the reading order"
    hidden = [s for s in seen if not (s["outline"] and s["onScreen"])]
    assert not hidden, f"focus not visible on {hidden}"
    assert (
        page.evaluate(
            "() => [...document.querySelectorAll('[tabindex]')].filter((e) => e.tabIndex > 0).length"
        )
        == 0
    )


def test_tab_walks_header_search_results_and_product_page_in_reading_order(site: tuple[str, Any]) -> None:
    base, page = site
    page.goto(f"{base}/")
    page.wait_for_selector("#recs .item")
    page.evaluate(TABBABLE)  # tag the tabbable elements
    header = _walk(page, 12)
    _check_order(page, header)
    # first the skip link, then the header: the brand, the navigation, the search box and its button
    assert header[0]["text"] == "Skip to content"
    search_at = next(i for i, s in enumerate(header) if s["id"] == "site-q")
    assert all(s["inHeader"] for s in header[1 : search_at + 2])
    assert header[search_at + 1]["tag"] == "button" and header[search_at + 1]["text"] == "Search"
    # the skip link moves the focus past the header
    _walk(page, 1)
    page.keyboard.press("Enter")
    assert page.evaluate("() => document.activeElement.id") == "main"
    page.keyboard.press("Tab")
    assert page.evaluate("() => !!document.activeElement.closest('main')")

    # the keyboard alone: Tab to the header's search box, type, Enter
    page.reload()
    page.wait_for_selector("#recs .item")
    _walk(page, search_at + 1)
    assert page.evaluate("() => document.activeElement.id") == "site-q"
    page.keyboard.type("lantern")
    page.keyboard.press("Enter")
    page.wait_for_url("**/search?*q=lantern*")
    page.wait_for_selector("#results .item a")
    page.wait_for_selector("#facets a.facet")
    n_results = page.locator("#results .item a").count()
    page.evaluate(TABBABLE)
    stops = len(page.evaluate(TABBABLE))
    seen = _walk(page, stops)
    _check_order(page, seen)
    # header, then the search form, then the facets, then the results: the order they are read in
    zones = [
        (
            "header"
            if s["inHeader"]
            else "facets"
            if s["inFacets"]
            else "results"
            if s["inResults"]
            else "main"
        )
        for s in seen
    ]
    first = {z: zones.index(z) for z in ("header", "facets", "results")}
    assert first["header"] < first["facets"] < first["results"], zones
    assert zones.index("main") < first["facets"]  # the page's own search form before the facets
    results = [s for s in seen if s["inResults"]]
    assert len(results) == n_results
    # results are read row by row, left to right
    positions = [(s["top"], s["left"]) for s in results]
    assert all(
        b[0] > a[0] + 5 or (abs(b[0] - a[0]) <= 5 and b[1] > a[1]) for a, b in itertools.pairwise(positions)
    ), positions
    screenshot(page, "focus-search-result")

    # Enter on the first result opens it; on the product page Tab reaches "Add to cart" after the
    # header and before the similar items; Enter adds it
    _walk(page, zones.index("results") + 1)
    assert page.evaluate("() => !!document.activeElement.closest('#results')")
    page.keyboard.press("Enter")
    page.wait_for_url("**/p/*")
    page.wait_for_selector("#similar .item a")
    stops = len(page.evaluate(TABBABLE))
    seen = _walk(page, stops)
    _check_order(page, seen)
    cart_at = next(i for i, s in enumerate(seen) if s["id"] == "add-to-cart")
    assert all(s["inHeader"] or s["text"] == "Skip to content" for s in seen[:cart_at])
    assert any(s["inSimilar"] for s in seen[cart_at + 1 :])
    _walk(page, cart_at + 1)
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.getElementById('added').textContent.trim().length > 0")
    screenshot(page, "focus-product-add-to-cart")
