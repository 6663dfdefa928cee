"""Funnels and purchase behaviour on real events, checked against the store's own rows."""

from __future__ import annotations

import polars as pl
import sqlalchemy as sa

from shelfwise.analytics import behaviour
from shelfwise.analytics.funnel import funnel
from shelfwise.store.analytical import AnalyticalStore


def test_funnel_totals_match_distinct_sessions_in_the_store(rees46: AnalyticalStore, rees46_url: str) -> None:
    engine = sa.create_engine(rees46_url)
    with engine.connect() as conn:
        per_type = dict(
            conn.exec_driver_sql(
                "SELECT type, count(DISTINCT session_id) FROM events GROUP BY type"
            ).fetchall()
        )
        viewed_and_carted = conn.exec_driver_sql(
            "SELECT count(*) FROM (SELECT session_id FROM events GROUP BY session_id "
            "HAVING sum(type = 'view') > 0 AND sum(type = 'cart') > 0)"
        ).scalar()
    opened = funnel(rees46, by="total", closed=False).row(0, named=True)
    assert (opened["views"], opened["carts"], opened["purchases"]) == (
        per_type["view"],
        per_type["cart"],
        per_type["purchase"],
    )
    # The closed funnel (the default with views) counts a step only after the steps before it.
    closed = funnel(rees46, by="total").row(0, named=True)
    assert closed["views"] == per_type["view"] and closed["carts"] == viewed_and_carted
    assert closed["purchases"] <= closed["carts"] <= closed["views"]
    assert abs(closed["drop_off_view_to_cart"] - (1 - closed["carts"] / closed["views"])) < 1e-12
    brands = funnel(rees46, by="brand")
    assert brands["cart_to_purchase"].drop_nulls().is_between(0, 1).all()


def test_funnel_by_category_splits_the_sessions_and_is_ordered(rees46: AnalyticalStore) -> None:
    by_cat = funnel(rees46, by="category", top=None)
    total = funnel(rees46, by="total").row(0, named=True)
    # A session may touch several categories, so groups add up to at least the total.
    assert by_cat["views"].sum() >= total["views"]
    assert "electronics" in by_cat["key"].to_list()
    weight = (by_cat["views"] + by_cat["purchases"]).to_list()
    assert weight == sorted(weight, reverse=True)
    assert by_cat.filter(pl.col("views") > 0)["view_to_cart"].is_between(0, 1).all()


def test_purchase_only_data_has_no_conversion_rates(retail: AnalyticalStore) -> None:
    total = funnel(retail, by="total").row(0, named=True)
    assert total["views"] == 0 and total["purchases"] > 0
    assert total["view_to_purchase"] is None


def test_behaviour_adds_up_to_the_orders(retail: AnalyticalStore) -> None:
    orders = behaviour.orders_frame(retail)
    timing = behaviour.purchase_timing(retail, tz="Europe/London")
    assert timing["orders"].sum() == orders.height
    assert timing["dow"].is_between(1, 7).all() and timing["hour"].is_between(0, 23).all()
    # A wholesaler's shop trades in office hours: most orders fall between 8:00 and 17:59.
    office = timing.filter(pl.col("hour").is_between(8, 17))["orders"].sum()
    assert office / orders.height > 0.8
    summary = behaviour.behaviour_summary(retail).row(0, named=True)
    per_user = orders.group_by("user_id").len()
    assert summary["repeat_customers"] == per_user.filter(pl.col("len") >= 2).height
    gaps = behaviour.inter_purchase_intervals(retail)
    assert gaps.height == orders.height - per_user.height
    assert (gaps["gap_days"] >= 0).all()
    assert summary["median_basket_value"] > 0
