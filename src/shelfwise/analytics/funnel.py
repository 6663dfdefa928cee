"""View → cart → purchase funnels, with the share of sessions lost at each step."""

from __future__ import annotations

import polars as pl

from shelfwise.analytics.frames import frame
from shelfwise.store.analytical import AnalyticalStore, FunnelDimension


def funnel(
    db: AnalyticalStore,
    *,
    by: FunnelDimension = "total",
    top: int | None = 50,
    exclude_bots: bool = True,
    closed: bool | None = None,
) -> pl.DataFrame:
    """Sessions that viewed, carted and bought, per ``by`` (category, brand, day or total).

    ``view_to_cart`` is carts / views; ``drop_off_*`` is one minus the step's rate. A rate is null
    when its step had no sessions (a dataset with purchases only, such as Online Retail, has no
    views to convert). ``closed`` (default: when the store has views) counts a step only for
    sessions that took the steps before it, so the rates stay within 0–1; otherwise each step is
    counted alone.

    >>> funnel(db, by="category").columns   # doctest: +SKIP
    ['key', 'views', 'carts', 'purchases', 'view_to_cart', 'cart_to_purchase', 'view_to_purchase', ...]
    """
    if closed is None:
        closed = db.counts().get("view", 0) > 0
    counts = frame(db.funnel_counts(by=by, top=top, exclude_bots=exclude_bots, closed=closed))

    def rate(num: str, den: str) -> pl.Expr:
        return pl.when(pl.col(den) > 0).then(pl.col(num) / pl.col(den)).otherwise(None)

    return counts.with_columns(
        view_to_cart=rate("carts", "views"),
        cart_to_purchase=rate("purchases", "carts"),
        view_to_purchase=rate("purchases", "views"),
    ).with_columns(
        drop_off_view_to_cart=1 - pl.col("view_to_cart"),
        drop_off_cart_to_purchase=1 - pl.col("cart_to_purchase"),
    )
