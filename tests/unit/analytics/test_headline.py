"""The purchase-only headline on Online Retail (a tenth of its customers, their whole year)."""

from __future__ import annotations

import polars as pl

from shelfwise.analytics.frames import frame
from shelfwise.analytics.headline import purchase_headline, purchase_only
from shelfwise.store.analytical import AnalyticalStore


def test_online_retail_is_purchase_only_and_rees46_is_not(
    retail: AnalyticalStore, rees46: AnalyticalStore
) -> None:
    assert purchase_only(retail)
    assert not purchase_only(rees46)


def test_headline_figures_add_up(retail: AnalyticalStore) -> None:
    h = purchase_headline(retail)
    t = h["totals"]
    months = h["by_month"]
    assert months[0]["key"] == "2010-12" and months[-1]["key"] == "2011-12"
    assert abs(sum(m["revenue"] for m in months) - t["revenue"]) < 1.0
    assert sum(m["orders"] for m in months) == t["orders"]
    assert h["by_country"][0]["key"] == "United Kingdom"  # a UK shop
    assert {c["key"] for c in h["by_category"]} >= {"lighting", "kitchen & dining"}
    assert 0 < t["repeat_rate"] < 1 and t["customers"] > 100
    assert t["aov"] == round(t["revenue"] / t["orders"], 2)
    # repeat rate checked against the order lines themselves
    lines = frame(retail.order_lines()).filter(pl.col("type") == "purchase")
    per = lines.group_by("user_id").agg(pl.col("order_id").n_unique().alias("n"))
    assert t["repeat_rate"] == round(per.filter(pl.col("n") >= 2).height / per.height, 4)
