"""RFM, lifetime value, cohorts and churn on a tenth of Online Retail's customers (a whole year)."""

from __future__ import annotations

import polars as pl
import pytest

from shelfwise.analytics import churn, segments
from shelfwise.store.analytical import AnalyticalStore


def test_rfm_segments_tell_best_from_lapsed_customers(retail: AnalyticalStore) -> None:
    rfm = segments.rfm(retail)
    assert rfm["user_id"].n_unique() == rfm.height > 300
    assert set(rfm["segment"].unique()) <= {name for _, name in segments.SEGMENTS}
    # Quintile scores hold a fifth of the customers each.
    sizes = rfm.group_by("r_score").len()["len"]
    assert sizes.max() - sizes.min() <= 1
    summary = segments.segment_summary(rfm)
    by = {row["segment"]: row for row in summary.to_dicts()}
    assert by["champions"]["recency_days"] < by["hibernating"]["recency_days"]
    assert by["champions"]["frequency"] > by["hibernating"]["frequency"]
    value = segments.clv(rfm)
    assert (value["clv"] >= 0).all()
    mean_clv = value.group_by("segment").agg(pl.col("clv").mean())
    clv = dict(mean_clv.iter_rows())
    assert clv["champions"] > 5 * clv["hibernating"]


def test_cohort_matrix_starts_at_one_and_stays_a_share(retail: AnalyticalStore) -> None:
    cohorts = segments.cohort_retention(retail)
    assert cohorts["m0"].to_list() == [1.0] * cohorts.height
    shares = cohorts.select([c for c in cohorts.columns if c.startswith("m")]).to_numpy()
    assert (shares[~pl.Series(shares.ravel()).is_nan().to_numpy().reshape(shares.shape)] <= 1).all()
    assert cohorts["cohort"].is_sorted()
    # The first cohort (December 2010) has the full year; later cohorts have fewer months.
    assert cohorts.row(0, named=True)["m11"] is not None and cohorts.row(-1, named=True)["m1"] is None


def test_churn_model_beats_chance_on_a_temporal_split(retail: AnalyticalStore) -> None:
    result = churn.predict_churn(retail, rounds=100, bootstrap=200)
    m = result.metrics
    lo, hi = m["auc_ci95"]
    assert 0.6 < m["auc"] <= 1 and lo < m["auc"] < hi
    assert 0.1 < m["test_churn_rate"] < 0.9
    assert result.calibration["n"].sum() == m["test_customers"]
    risky = churn.at_risk(result, threshold=0.5)
    assert risky.height > 0 and (risky["churn_probability"] >= 0.5).all()
    # Every at-risk customer gets at least one named driver, as "feature=value (+contribution)".
    assert all(d and "=" in d[0] for d in risky["drivers"].to_list())
    # Those scored most at risk have not bought for longer than those scored safest.
    scores = result.scores
    assert scores.head(50)["recency_days"].median() > scores.tail(50)["recency_days"].median()


def test_churn_on_one_day_of_data_says_why_it_cannot(rees46: AnalyticalStore) -> None:
    with pytest.raises(ValueError, match="too little history"):
        churn.predict_churn(rees46)
