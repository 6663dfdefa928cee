"""The storefront and operations pages in a real browser (Debian's Chromium via Playwright) against
the real service (uvicorn on loopback, a SQLite store from a slice of Online Retail, a trained model):
the search flow, the product page, the cart, and a rollback from the operations page."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from shelfwise.api.app import create_app
from shelfwise.features.dataset import Dataset
from shelfwise.registry import GateRefusedError, ModelRegistry, TrainingConfig, train_version
from shelfwise.store import open_store
from tests.integration.api_fixtures import API_KEY, KNOWN_USER, Served
from tests.live import chromium_page, live_server, screenshot


@pytest.fixture
def site(served: Served) -> Iterator[tuple[str, Any]]:
    settings = served.settings(rate_limit_per_second=0, dashboard_on_start=False, demo_users=[KNOWN_USER])
    app = create_app(settings, served.url, watch_interval=None)
    with live_server(app) as base, chromium_page() as page:
        yield base, page


def test_search_flow_product_page_and_cart(site: tuple[str, Any]) -> None:
    base, page = site
    page.goto(f"{base}/search")
    page.fill("#q", "heart")
    page.wait_for_function("() => Number(document.getElementById('suggestions').dataset.count || 0) > 0")
    page.press("#q", "Enter")
    page.wait_for_selector("#results .item")
    assert "results" in page.text_content("#search-meta")
    assert page.locator("#facets .card").count() >= 1
    screenshot(page, "storefront-search")

    # a misspelt query is corrected, and the page says so
    page.fill("#q", "hart holdr")
    page.press("#q", "Enter")
    page.wait_for_selector("#corrected-query")
    assert "holder" in page.text_content("#corrected-query")
    page.wait_for_selector("#results .item")

    # a facet narrows the results
    total = int(page.text_content("#search-meta").split()[0])
    page.locator("#facets a.facet").last.click()
    page.wait_for_selector("#active-filters")
    assert int(page.text_content("#search-meta").split()[0]) <= total

    # the product page: details, similar items with a reason each, bought together
    page.locator("#results .item a").first.click()
    page.wait_for_selector("#similar .item")
    assert page.text_content("#details")
    reasons = page.locator("#similar .item .why").all_text_contents()
    assert reasons and all(r.strip() for r in reasons)
    page.wait_for_selector("#together .item, #together p.note")
    screenshot(page, "storefront-product")
    item = page.get_attribute("#product", "data-item")
    page.click("#add-to-cart")
    page.wait_for_selector("#added:has-text('in your cart')")

    # the cart suggests what completes the basket, never what is already in it
    page.goto(f"{base}/cart")
    page.wait_for_selector("#bundle .item")
    suggested = [e.get_attribute("data-item") for e in page.locator("#bundle .item").all()]
    assert item not in suggested
    assert "model" in page.text_content("#bundle-meta")
    screenshot(page, "storefront-cart")

    # the home page for a known shopper: personalised, with the model version and reasons
    page.goto(f"{base}/?user={KNOWN_USER}")
    page.wait_for_selector("#recs .item")
    assert "model" in page.text_content("#rec-meta")
    screenshot(page, "storefront-home")


def test_rollback_from_the_operations_page(site: tuple[str, Any], served: Served) -> None:
    base, page = site
    registry = ModelRegistry(served.models)
    first = registry.active
    with open_store(served.url) as store:
        ds = Dataset.from_store(store)
    with pytest.raises(GateRefusedError):  # registered, refused by the gate
        train_version(ds, registry, TrainingConfig(recommender={"model": "popular"}, bought_together=None))
    worse = next(v for v in registry.versions() if v != first)

    page.goto(f"{base}/ops")  # sends a person to sign in; the admin key is not kept in the browser
    page.fill("#key", API_KEY)
    page.click("#sign-in")
    page.wait_for_url(f"{base}/ops")
    page.wait_for_selector(f"tr[data-version='{worse}'] button.activate")
    assert page.text_content("#active") == first
    # the page cannot push a release past the gate
    page.click(f"tr[data-version='{worse}'] button.activate")
    page.wait_for_selector("#ops-status:has-text('gate')")
    assert page.text_content("#active") == first

    # an operator forced the worse version live; the page rolls it back
    forced = page.request.post(
        f"{base}/v1/admin/models/{worse}/activate?force=true", headers={"X-API-Key": API_KEY}
    )
    assert forced.ok
    page.reload()
    page.wait_for_selector(f"#active:has-text('{worse}')")
    page.click("#rollback")
    page.wait_for_selector(f"#active:has-text('{first}')")
    status = page.text_content("#ops-status")
    assert f"active {first}" in status and " ms" in status
    mine = page.request.get(f"{base}/v1/users/{KNOWN_USER}/recommendations", headers={"X-API-Key": API_KEY})
    assert mine.json()["model_version"] == first
    screenshot(page, "operations-rollback")


def test_demo_sign_in_gives_the_storefront_a_shopper_token(site: tuple[str, Any]) -> None:
    """The home page signs in by shopper id (a demo shopper) and sends that shopper's token, never
    an API key; the token is kept in no storage; a shopper who is not a demo shopper gets popular
    items and the reason."""
    base, page = site
    if page.request.post(f"{base}/v1/demo/sign-in", data={"user_id": KNOWN_USER}).status == 404:
        pytest.skip("this API has no demo sign-in yet (issue-13-keys adds POST /v1/demo/sign-in)")
    sent: list[tuple[str, str | None]] = []
    page.on("request", lambda r: sent.append((r.url, r.headers.get("authorization"))))
    page.goto(f"{base}/?user={KNOWN_USER}")
    page.wait_for_selector("#recs .item")
    assert f"signed in as shopper {KNOWN_USER}" in page.text_content("#signed-in")
    personal = [auth for url, auth in sent if f"/v1/users/{KNOWN_USER}/recommendations" in url]
    assert personal and all(a and a.startswith("Bearer v1.") for a in personal)
    assert not any("X-API-Key" in str(a) for _, a in sent)
    stored = page.evaluate("() => JSON.stringify({...sessionStorage}) + JSON.stringify({...localStorage})")
    assert "v1." not in stored
    # the personal search sends the same token
    sent.clear()
    page.goto(f"{base}/search?q=heart&user={KNOWN_USER}")
    page.wait_for_selector("#results .item")
    searched = [auth for url, auth in sent if "/v1/search?" in url]
    assert searched and all(a and a.startswith("Bearer v1.") for a in searched)
    assert "not personalised" not in page.text_content("#search-meta")
    # not a demo shopper: no token, popular items, and the page says why
    page.goto(f"{base}/?user=someone-else")
    page.wait_for_selector("#recs .item")
    assert "could not sign in as someone-else" in page.text_content("#signed-in")
