"""Demand forecasts against the seasonal-naive baseline, and anomaly detectors on injected anomalies."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from shelfwise.analytics import anomalies, forecast
from shelfwise.store.analytical import AnalyticalStore


def test_seasonal_naive_repeats_last_week() -> None:
    y = np.arange(30, dtype=float).reshape(1, -1)  # a series whose value is its day number
    got = forecast.seasonal_naive(y, origin=20, horizon=9, m=7)
    # Steps 1–7 repeat days 14–20; steps 8–9 go back two weeks' worth to stay before the origin.
    assert got.tolist() == [[14, 15, 16, 17, 18, 19, 20, 14, 15]]


def test_forecast_reports_both_model_and_baseline(retail: AnalyticalStore) -> None:
    result = forecast.forecast_demand(retail, level="item", freq="day", top=15, rounds=60)
    m = result.metrics
    assert m["series"] == 15 and result.per_series.height == 15
    assert m["wape_model"] >= 0 and m["wape_naive"] >= 0 and m["mase_naive"] > 0
    assert result.forecasts.height == 15 * m["horizon"]
    assert (result.forecasts["model"] >= 0).all()
    # The baseline column is exactly last week's actual units.
    hist = forecast.history(retail, level="item", freq="day", keys=[result.per_series["key"][0]])
    key = result.per_series["key"][0]
    first = result.forecasts.filter(pl.col("key") == key).row(0, named=True)
    import datetime as dt

    week_before = hist.filter(pl.col("period") == first["period"] - dt.timedelta(days=7))
    assert week_before["units"][0] == first["naive"]


def test_category_weekly_forecast_uses_annotated_departments(retail: AnalyticalStore) -> None:
    result = forecast.forecast_demand(retail, level="category", freq="week", top=8, rounds=60)
    assert result.metrics["horizon"] == 8
    keys = result.per_series["key"].to_list()
    assert "lighting" in keys and "kitchen & dining" in keys  # ingest's annotation, from titles


def test_forecast_ahead_gives_intervals_and_backtest_coverage(retail: AnalyticalStore) -> None:
    result = forecast.forecast_ahead(
        retail, level="item", freq="day", top=10, horizon=14, interval=0.8, rounds=60
    )
    f = result.forecasts
    assert f.height == 10 * 14
    last_day = retail.time_range()[1]  # type: ignore[index]
    import datetime as dt

    end = dt.datetime.fromtimestamp(last_day / 1000, tz=dt.UTC).date()
    assert f["period"].min() == end + dt.timedelta(days=1)  # the days after the data, not a back-test
    assert (f["lower"] <= f["forecast"]).all() and (f["forecast"] <= f["upper"]).all()
    assert (f["lower"] >= 0).all() and (f["upper"] > f["lower"]).any()
    b = result.backtest
    assert b["wape_model"] is not None and b["wape_naive"] is not None
    assert 0.5 <= b["interval_coverage"] <= 1.0  # nominal 0.8; the figure is reported, not tuned
    assert result.backtest_forecasts.height == 10 * 14
    with pytest.raises(ValueError, match="interval"):
        forecast.forecast_ahead(retail, interval=1.5)


@pytest.mark.parametrize("dataset", ["retail", "rees46"])
def test_injected_bots_and_fraud_bursts_are_found(dataset: str, request: pytest.FixtureRequest) -> None:
    db = request.getfixturevalue(dataset)
    evaluation = {row["detector"]: row for row in anomalies.evaluate_detectors(db, n=20, seed=3).to_dicts()}
    for name in ("bot users", "fraud bursts (orders)"):
        assert evaluation[name]["precision"] >= 0.9, evaluation[name]
        assert evaluation[name]["recall"] >= 0.9, evaluation[name]


def test_real_shoppers_are_not_bots_and_a_crawler_is(rees46: AnalyticalStore) -> None:
    assert anomalies.bot_users(rees46).filter("flagged").height == 0
    with_bots, bots = anomalies.inject_bots(rees46, n=3, seed=1)
    flagged = anomalies.bot_users(with_bots).filter("flagged")
    assert set(flagged["user_id"]) == bots
    assert all(r.split(" ")[0] in anomalies.BOT_FEATURES for r in flagged["reason"])


def test_return_abusers_really_return_a_lot(retail: AnalyticalStore) -> None:
    abusers = anomalies.return_abusers(retail).filter("flagged")
    assert abusers.height > 0
    assert (abusers["returns"] >= 5).all() and (abusers["return_share"] >= 0.3).all()


def test_injected_demand_spikes_are_mostly_found(retail: AnalyticalStore) -> None:
    with_spikes, pairs = anomalies.inject_spikes(retail, n=10, top=50, seed=2)
    spikes = anomalies.demand_spikes(with_spikes, top=50).filter("flagged")
    found = {(k, str(d)) for k, d in zip(spikes["key"], spikes["period"], strict=True)}
    assert len(found & pairs) >= 3


def test_shilling_bursts_stand_out_from_organic_ratings(rees46: AnalyticalStore) -> None:
    assert anomalies.rating_bursts(rees46).is_empty()  # the real data has no ratings
    with_ratings, bursts = anomalies.inject_ratings(rees46, n=15, seed=4)
    found = anomalies.rating_bursts(with_ratings).filter("flagged")
    flagged = set(found.select("key", "window").iter_rows())
    assert len(flagged & bursts) / len(bursts) >= 0.9
    assert len(flagged & bursts) / len(flagged) >= 0.9
    assert (found["mean_value"] >= 4.5).all()  # pushed items: (nearly) all five stars
