"""Facets, filters and sorting over the real 1k catalogue, as a shop's listing page uses them."""

from __future__ import annotations

import math

from shelfwise.data.schemas import Item
from shelfwise.search.engine import Filters, SearchEngine


def test_facet_counts_match_the_results(keyword_engine: SearchEngine) -> None:
    result = keyword_engine.search("watch", k=500, mode="bm25")
    facets = result.facets
    brands = {f["value"]: f["count"] for f in facets["brand"]}
    for brand, count in list(brands.items())[:5]:
        assert count == sum(1 for h in result.hits if h.item.brand == brand)
    assert sum(f["count"] for f in facets["availability"]) == result.total
    assert sum(f["count"] for f in facets["price"]) == sum(1 for h in result.hits if h.item.price is not None)
    top = {f["value"]: f["count"] for f in facets["category"]}
    assert top.get("watches", 0) >= top.get("watches > wrist watches", 0) > 0


def test_price_buckets_cover_the_catalogue(keyword_engine: SearchEngine) -> None:
    buckets = keyword_engine._buckets
    assert buckets[0][0] == 0 and math.isinf(buckets[-1][1])
    assert all(lo < hi for lo, hi in buckets)


def test_sort_by_price_and_popularity(keyword_engine: SearchEngine) -> None:
    up = keyword_engine.search("shirt", k=30, mode="bm25", sort="price_asc")
    prices = [h.item.price for h in up.hits if h.item.price is not None]
    assert prices == sorted(prices) and len(prices) >= 20
    down = keyword_engine.search("shirt", k=30, mode="bm25", sort="price_desc")
    prices = [h.item.price for h in down.hits if h.item.price is not None]
    assert prices == sorted(prices, reverse=True)
    relevance = keyword_engine.search("shirt", k=30, mode="bm25")
    assert set(up.item_ids) != set(relevance.item_ids[:30]) or up.item_ids != relevance.item_ids
    pop = keyword_engine.search("watch", k=20, mode="bm25", sort="popularity")
    assert pop.hits[0].item.attributes.get("rating") is not None


def test_explicit_filters_category_brand_availability(
    keyword_engine: SearchEngine, flipkart_1k: list[Item]
) -> None:
    result = keyword_engine.search(
        "casual", k=100, mode="bm25", filters=Filters(category="footwear > womens footwear")
    )
    assert result.hits and all(
        (h.item.category or "").startswith("footwear > womens footwear") for h in result.hits
    )
    result = keyword_engine.search(
        "watch", k=100, mode="bm25", filters=Filters(price_min=1000, price_max=3000)
    )
    assert result.hits and all(1000 <= (h.item.price or 0) <= 3000 for h in result.hits)
    assert keyword_engine.search("watch", k=10, mode="bm25", filters=Filters(available=False)).hits == []
