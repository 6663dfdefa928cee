"""Personal re-ranking: a shopper's brand and price-band affinity, learnt from what they viewed,
carted and bought, nudges *matching* results up. It never adds a result: only items the query
already retrieved are re-ordered, and the boost is bounded so relevance still dominates.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from shelfwise.data.schemas import Event, EventType, Item

_EVENT_WEIGHT = {
    EventType.VIEW: 1.0,
    EventType.CLICK: 1.0,
    EventType.WISHLIST: 2.0,
    EventType.CART: 3.0,
    EventType.PURCHASE: 5.0,
    EventType.RATE: 1.0,
    EventType.RETURN: -3.0,
}


@dataclass
class UserAffinity:
    """Shares in [0, 1] of a shopper's weighted activity per brand, and their typical price."""

    brands: dict[str, float] = field(default_factory=dict)
    price_center: float | None = None  # geometric mean of prices they engaged with
    price_spread: float = 0.5  # in log-price units

    @classmethod
    def from_events(cls, events: Iterable[Event], items: Mapping[str, Item]) -> UserAffinity:
        brands: dict[str, float] = {}
        log_prices: list[tuple[float, float]] = []
        for event in events:
            weight = _EVENT_WEIGHT.get(event.type)
            item = items.get(event.item_id or "")
            if weight is None or item is None:
                continue
            if item.brand:
                key = item.brand.lower()
                brands[key] = brands.get(key, 0.0) + weight
            price = event.price if event.price is not None else item.price
            if price and price > 0 and weight > 0:
                log_prices.append((math.log(price), weight))
        total = sum(v for v in brands.values() if v > 0)
        shares = {b: v / total for b, v in brands.items() if v > 0} if total else {}
        center = spread = None
        if log_prices:
            wsum = sum(w for _, w in log_prices)
            mean = sum(p * w for p, w in log_prices) / wsum
            var = sum(w * (p - mean) ** 2 for p, w in log_prices) / wsum
            center, spread = math.exp(mean), max(math.sqrt(var), 0.35)
        return cls(brands=shares, price_center=center, price_spread=spread or 0.5)

    def brand_affinity(self, item: Item) -> float:
        return self.brands.get((item.brand or "").lower(), 0.0)

    def price_fit(self, item: Item) -> float:
        """1 at the shopper's usual price, falling off with log-price distance."""
        if self.price_center is None or not item.price:
            return 0.0
        z = (math.log(item.price) - math.log(self.price_center)) / self.price_spread
        return math.exp(-0.5 * z * z)

    def boost(self, item: Item, *, strength: float = 0.3) -> float:
        """A multiplier in [1, 1 + strength]."""
        return 1.0 + strength * (0.7 * self.brand_affinity(item) + 0.3 * self.price_fit(item))
