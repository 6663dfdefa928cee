"""The headline a shop with only purchases can lead with: revenue and orders by month, country and
category, basket size and repeat rate.

A funnel needs views and carts; an orders export (Online Retail, a Shopify orders CSV) has neither,
and its funnel is one bar of purchases with empty conversion columns. ``purchase_only`` says when
the store is like that, so a dashboard shows this headline first.

>>> h = purchase_headline(db)                      # doctest: +SKIP
>>> h["totals"]["repeat_rate"]                     # doctest: +SKIP
0.65
"""

from __future__ import annotations

from typing import Any

import polars as pl

from shelfwise.analytics.frames import frame
from shelfwise.store.analytical import AnalyticalStore

_BEHAVIOUR = ("view", "click", "cart")
DEFINITION = (
    "From purchase events only (views, clicks and carts are never counted). Revenue: the sum of "
    "price × quantity of purchase lines, returns not netted. Orders: invoices (a session with "
    "purchases; one purchase event when there is no session). AOV: revenue / orders. Repeat rate: "
    "known customers with two or more orders / known customers with an order (guests cannot repeat)."
)


def purchase_only(db: AnalyticalStore) -> bool:
    """True when the store has purchases and no views, clicks or carts to build a funnel from."""
    counts = db.counts()
    return counts.get("purchase", 0) > 0 and not any(counts.get(t, 0) for t in _BEHAVIOUR)


def _rows(df: pl.DataFrame) -> list[dict[str, Any]]:
    return [
        {k: (round(v, 2) if isinstance(v, float) else v) for k, v in row.items()}
        for row in df.iter_rows(named=True)
    ]


def purchase_headline(db: AnalyticalStore, *, top: int = 15) -> dict[str, Any]:
    """Totals, basket size, repeat rate and revenue/orders by month, country and category.

    Orders are invoices (a session with purchases; one event when there is no session). Basket size
    and repeat rate count known customers' orders only (a guest cannot repeat); revenue counts all.
    ``aov`` is revenue per order. Returns are not netted (see the returns line)."""
    by_month = frame(db.sales_by("month"))
    by_country = frame(db.sales_by("country", top=top))
    by_category = frame(db.sales_by("category", top=top))
    orders = frame(db.orders())
    totals_row = by_month.select(
        pl.col("revenue").sum(), pl.col("orders").sum(), pl.col("units").sum(), pl.col("lines").sum()
    )
    revenue = float(totals_row["revenue"][0] or 0.0)
    n_orders = int(totals_row["orders"][0] or 0)
    customers = orders["user_id"].n_unique() if orders.height else 0
    per_customer = orders.group_by("user_id").len() if orders.height else pl.DataFrame({"len": []})
    repeaters = int((per_customer["len"] >= 2).sum()) if orders.height else 0
    returns = db.counts().get("return", 0)
    totals = {
        "revenue": round(revenue, 2),
        "orders": n_orders,
        "units": int(totals_row["units"][0] or 0),
        "aov": round(revenue / n_orders, 2) if n_orders else None,
        "customers": int(customers),
        "repeat_rate": round(repeaters / customers, 4) if customers else None,
        "orders_per_customer": round(orders.height / customers, 3) if customers else None,
        "basket_lines": round(float(orders["lines"].mean()), 2) if orders.height else None,  # type: ignore[arg-type]
        "basket_units": round(float(orders["units"].median()), 1) if orders.height else None,  # type: ignore[arg-type]
        "return_lines": int(returns),
    }
    return {
        "purchase_only": purchase_only(db),
        "totals": totals,
        "by_month": _rows(by_month),
        "by_country": _rows(by_country),
        "by_category": _rows(by_category),
        "definition": DEFINITION,
        "notes": [
            "orders are invoices; basket size and repeat rate count known customers only",
            "basket_units is the median units per order (bulk orders make the mean misleading)",
        ],
    }
