"""Facet counts (category tree, brand, price buckets, availability) over a set of matching items."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from shelfwise.data.schemas import Item


def price_buckets(prices: np.ndarray, n: int = 5) -> list[tuple[float, float]]:
    """Round-number bucket edges covering the catalogue's price spread (quantiles, rounded)."""
    known = prices[~np.isnan(prices)]
    if len(known) == 0:
        return []
    qs = np.quantile(known, np.linspace(0, 1, n + 1)[1:-1])
    edges: list[float] = []
    for q in qs:
        if q <= 0:
            continue
        magnitude = 10 ** max(math.floor(math.log10(q)), 0)
        edge = float(round(q / magnitude) * magnitude)
        if not edges or edge > edges[-1]:
            edges.append(edge)
    bounds = [0.0, *edges, math.inf]
    return list(itertools.pairwise(bounds))


def _bucket_label(low: float, high: float) -> str:
    if math.isinf(high):
        return f"{low:g}+"
    return f"{low:g}-{high:g}"


def facet_counts(
    items: Sequence[Item], *, buckets: Sequence[tuple[float, float]], top: int = 20
) -> dict[str, Any]:
    """Counts for the items that matched: every level of the category tree, brand, price, stock."""
    categories: Counter[str] = Counter()
    brands: Counter[str] = Counter()
    prices: Counter[str] = Counter()
    stock: Counter[str] = Counter()
    for item in items:
        if item.category:
            parts = item.category.split(" > ")
            for depth in range(1, min(len(parts), 3) + 1):
                categories[" > ".join(parts[:depth])] += 1
        if item.brand:
            brands[item.brand] += 1
        if item.price is not None:
            for low, high in buckets:
                if low <= item.price < high:
                    prices[_bucket_label(low, high)] += 1
                    break
        stock["in stock" if item.available else "out of stock"] += 1
    return {
        "category": [{"value": v, "count": c} for v, c in categories.most_common(top)],
        "brand": [{"value": v, "count": c} for v, c in brands.most_common(top)],
        "price": [
            {"value": _bucket_label(lo, hi), "min": lo, "max": None if math.isinf(hi) else hi, "count": c}
            for lo, hi in buckets
            if (c := prices.get(_bucket_label(lo, hi), 0))
        ],
        "availability": [{"value": v, "count": c} for v, c in stock.most_common()],
    }
