"""Purchase behaviour: when people buy, how often, how much at a time, and whether they come back.

An order is a session with purchases (an invoice in Online Retail); guests are left out because
they cannot be followed from one order to the next.
"""

from __future__ import annotations

import polars as pl

from shelfwise.analytics.frames import DAY_MS, frame
from shelfwise.store.analytical import AnalyticalStore


def orders_frame(db: AnalyticalStore) -> pl.DataFrame:
    """One row per order of a known customer: user_id, order_id, ts, event_time, lines, units, value."""
    return frame(db.orders())


def purchase_timing(db: AnalyticalStore, *, tz: str = "UTC") -> pl.DataFrame:
    """Orders and their value by day of week (1 = Monday) and hour of day, in the shop's zone ``tz``."""
    orders = orders_frame(db)
    local = pl.col("event_time").dt.replace_time_zone("UTC").dt.convert_time_zone(tz)
    return (
        orders.with_columns(dow=local.dt.weekday(), hour=local.dt.hour())
        .group_by("dow", "hour")
        .agg(orders=pl.len(), value=pl.col("value").sum())
        .sort("dow", "hour")
    )


def inter_purchase_intervals(db: AnalyticalStore) -> pl.DataFrame:
    """Days between one order of a customer and their next (one row per gap)."""
    orders = orders_frame(db).sort("user_id", "ts")
    return (
        orders.with_columns(gap_days=(pl.col("ts") - pl.col("ts").shift(1).over("user_id")) / DAY_MS)
        .filter(pl.col("gap_days").is_not_null())
        .select("user_id", "order_id", "gap_days")
    )


def baskets(db: AnalyticalStore) -> pl.DataFrame:
    """Per order: distinct lines, units and value (the basket)."""
    return orders_frame(db).select("user_id", "order_id", "ts", "lines", "units", "value")


def behaviour_summary(db: AnalyticalStore) -> pl.DataFrame:
    """One row: customers, orders, repeat rate (share of customers with two or more orders), median
    days between orders, and basket size and value (mean and median)."""
    orders = orders_frame(db)
    per_user = orders.group_by("user_id").agg(n=pl.len())
    gaps = inter_purchase_intervals(db)
    customers = per_user.height
    repeat = per_user.filter(pl.col("n") >= 2).height
    return pl.DataFrame(
        {
            "customers": [customers],
            "orders": [orders.height],
            "repeat_customers": [repeat],
            "repeat_rate": [repeat / customers if customers else None],
            "orders_per_customer": [orders.height / customers if customers else None],
            "median_days_between_orders": [gaps["gap_days"].median() if gaps.height else None],
            "mean_basket_lines": [orders["lines"].mean()],
            "median_basket_lines": [orders["lines"].median()],
            "mean_basket_value": [orders["value"].mean()],
            "median_basket_value": [orders["value"].median()],
        }
    )


def repeat_rate_by_month(db: AnalyticalStore) -> pl.DataFrame:
    """Per calendar month: customers who ordered, and the share of them who had ordered before."""
    orders = orders_frame(db).with_columns(month=pl.col("event_time").dt.truncate("1mo").dt.date())
    first = orders.group_by("user_id").agg(first_month=pl.col("month").min())
    monthly = orders.select("user_id", "month").unique().join(first, on="user_id")
    return (
        monthly.group_by("month")
        .agg(customers=pl.len(), returning=(pl.col("month") > pl.col("first_month")).sum())
        .with_columns(repeat_rate=pl.col("returning") / pl.col("customers"))
        .sort("month")
    )
