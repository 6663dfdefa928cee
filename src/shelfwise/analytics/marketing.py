"""Personalised marketing lists: whom to win back, with what — churn risk × category affinity."""

from __future__ import annotations

import polars as pl

from shelfwise.analytics.frames import frame
from shelfwise.store.analytical import AnalyticalStore


def category_affinity(db: AnalyticalStore, *, prior: float = 1.0) -> pl.DataFrame:
    """Per customer and category: share of their events (purchases count triple) in the category,
    smoothed with ``prior`` events spread over all categories so one click is not a passion."""
    counts = frame(db.user_category_counts()).with_columns(weight=pl.col("events") + 2 * pl.col("purchases"))
    n_categories = max(counts["category"].n_unique(), 1)
    return counts.with_columns(
        affinity=(pl.col("weight") + prior / n_categories) / (pl.col("weight").sum().over("user_id") + prior)
    ).select("user_id", "category", "affinity", "events", "purchases")


def marketing_lists(
    scores: pl.DataFrame,
    affinity: pl.DataFrame,
    *,
    per_category: int = 50,
    min_risk: float = 0.3,
    categories: int = 10,
) -> pl.DataFrame:
    """For the ``categories`` categories with the most customers at risk, the ``per_category``
    customers to contact first: priority = churn probability × affinity for the category.
    ``scores`` is ``ChurnResult.scores`` (user_id, churn_probability, …)."""
    risky = scores.filter(pl.col("churn_probability") >= min_risk).select("user_id", "churn_probability")
    joined = affinity.join(risky, on="user_id").with_columns(
        priority=pl.col("churn_probability") * pl.col("affinity")
    )
    biggest = (
        joined.group_by("category")
        .agg(at_risk=pl.len(), total=pl.col("priority").sum())
        .sort("total", descending=True)
        .head(categories)["category"]
    )
    return (
        joined.filter(pl.col("category").is_in(biggest.to_list()))
        .sort("priority", descending=True)
        .with_columns(rank=pl.col("priority").rank("ordinal", descending=True).over("category"))
        .filter(pl.col("rank") <= per_category)
        .sort("category", "rank")
        .select("category", "rank", "user_id", "churn_probability", "affinity", "priority")
    )
