"""Demand forecasting per item and per category, always next to a seasonal-naive baseline.

One global LightGBM model for all series forecasts every step of the horizon directly from
features known at the forecast origin (recent means, the same weekday's recent values, the
seasonal-naive value itself, the step and the target's weekday). It is trained on many past
origins and tested on the last ``horizon`` periods, which neither it nor the baseline has seen.

The baseline repeats the last season: ``y[t - m]`` (m = 7 days; for weekly series m = 1, since
Online Retail spans barely one year and a 52-week season has no history to repeat).
Metrics: WAPE = Σ|y − ŷ| / Σ|y| over all series, and MASE = mean |y − ŷ| scaled by the in-sample
mean |y_t − y_{t−m}| of each series, averaged over series.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from shelfwise.analytics.frames import frame
from shelfwise.store.analytical import AnalyticalStore, DemandLevel, Frequency

PARAMS: dict[str, Any] = {
    # WAPE is an L1 loss: Huber fits like L1 on spiky series (a bulk order moves it little) but
    # trains several times faster than LightGBM's exact L1 leaf renewal.
    "objective": "huber",
    "learning_rate": 0.1,
    "num_leaves": 31,
    "min_data_in_leaf": 50,
    "feature_fraction": 0.9,
    "verbose": -1,
    # One thread: with OpenMP spinning on a busy 2-core machine, two threads train ~10x slower.
    "num_threads": 1,
    "seed": 7,
    "deterministic": True,
}
FEATURES = (
    "step",
    "target_dow",
    "naive",
    "same_dow_mean4",
    "mean7",
    "mean28",
    "std28",
    "zero_share28",
    "mean_all",
    "last",
)


@dataclass
class ForecastResult:
    """Test-window forecasts and their scores against the seasonal-naive baseline."""

    level: str
    freq: str
    horizon: int
    metrics: dict[str, Any]  # wape/mase of model and baseline, series count
    per_series: pl.DataFrame  # key, wape_model, wape_naive, mase_model, mase_naive
    forecasts: pl.DataFrame  # key, period, actual, model, naive


def series_matrix(
    db: AnalyticalStore, *, level: DemandLevel, freq: Frequency, keys: list[str]
) -> tuple[np.ndarray, list[Any], list[str]]:
    """Units as a dense (series × period) matrix with zeros for periods without sales."""
    demand = frame(db.demand_series(level=level, freq=freq, keys=keys))
    if demand.is_empty():
        return np.zeros((0, 0)), [], []
    start, end = demand["period"].min(), demand["period"].max()
    periods = pl.date_range(start, end, interval="1d" if freq == "day" else "1w", eager=True)
    index = {p: i for i, p in enumerate(periods.to_list())}
    rows = {k: i for i, k in enumerate(keys)}
    matrix = np.zeros((len(keys), len(periods)))
    for key, period, units in demand.iter_rows():
        if key in rows and period in index:
            matrix[rows[key], index[period]] = units
    return matrix, periods.to_list(), keys


def _features(y: np.ndarray, origin: int, horizon: int, m: int, dows: np.ndarray) -> np.ndarray:
    """Feature rows for every series and step 1..horizon from data up to and including ``origin``."""
    n = y.shape[0]
    hist = y[:, : origin + 1]
    w7, w28 = hist[:, -7:], hist[:, -28:]
    rows = []
    for step in range(1, horizon + 1):
        t = origin + step
        back = t - m * int(np.ceil(step / m))  # the latest same-season period at or before origin
        same = [t - m * k for k in range(int(np.ceil(step / m)), int(np.ceil(step / m)) + 4)]
        same = [s for s in same if s >= 0]
        rows.append(
            np.column_stack(
                [
                    np.full(n, step),
                    np.full(n, dows[t] if t < len(dows) else -1),
                    y[:, back] if back >= 0 else hist[:, -1],
                    y[:, same].mean(axis=1) if same else hist[:, -1],
                    w7.mean(axis=1),
                    w28.mean(axis=1),
                    w28.std(axis=1),
                    (w28 == 0).mean(axis=1),
                    hist.mean(axis=1),
                    hist[:, -1],
                ]
            )
        )
    return np.stack(rows, axis=1)  # series × step × feature


_LEVEL_COLUMNS = [
    FEATURES.index(f) for f in ("naive", "same_dow_mean4", "mean7", "mean28", "std28", "mean_all", "last")
]


def _scale(x: np.ndarray) -> np.ndarray:
    return x[:, FEATURES.index("mean28")] + 1.0


def _relative(x: np.ndarray, scale: np.ndarray) -> np.ndarray:
    out = x.copy()
    out[:, _LEVEL_COLUMNS] = out[:, _LEVEL_COLUMNS] / scale[:, None]
    return out


def seasonal_naive(y: np.ndarray, origin: int, horizon: int, m: int) -> np.ndarray:
    """Forecasts ``y[t - m·k]`` for the steps after ``origin`` (k the fewest seasons back that are known)."""
    cols = [origin + s - m * int(np.ceil(s / m)) for s in range(1, horizon + 1)]
    return y[:, cols]


def forecast_demand(
    db: AnalyticalStore,
    *,
    level: DemandLevel = "item",
    freq: Frequency = "day",
    top: int = 100,
    horizon: int | None = None,
    rounds: int = 100,
) -> ForecastResult:
    """Forecast the ``top`` series of ``level`` and score the model and the baseline on the last
    ``horizon`` periods (default 28 days or 8 weeks)."""
    import lightgbm as lgb

    horizon = horizon or (28 if freq == "day" else 8)
    m = 7 if freq == "day" else 1
    keys = db.top_keys(level=level, n=top)
    y, periods, keys = series_matrix(db, level=level, freq=freq, keys=keys)
    span = db.time_range()
    if freq == "week" and periods and span is not None:
        last_day = dt.datetime.fromtimestamp(span[1] / 1000, tz=dt.UTC).date()
        if last_day < periods[-1] + dt.timedelta(days=6):  # the last week is not over: not a whole week
            y, periods = y[:, :-1], periods[:-1]
    n_periods = len(periods)
    min_history = 28 + horizon + m
    if n_periods < min_history + horizon:
        raise ValueError(f"too little history to forecast: {n_periods} {freq}s, need {min_history + horizon}")
    dows = np.array([p.weekday() for p in periods] + [(periods[-1].weekday() + i) % 7 for i in range(1, 60)])
    origin = n_periods - horizon - 1
    stride = 1 if freq == "week" else 7
    train_x, train_y = [], []
    for o in range(28, origin - horizon + 1, stride):
        feats = _features(y, o, horizon, m, dows)
        train_x.append(feats.reshape(-1, feats.shape[-1]))
        train_y.append(y[:, o + 1 : o + horizon + 1].reshape(-1))
    x, target = np.concatenate(train_x), np.concatenate(train_y)
    # One model for series of very different sizes: learn demand relative to the series' level.
    scale = _scale(x)
    model = lgb.train(
        PARAMS,
        lgb.Dataset(_relative(x, scale), target / scale, feature_name=list(FEATURES)),
        num_boost_round=rounds,
    )
    test_x = _features(y, origin, horizon, m, dows).reshape(-1, len(FEATURES))
    test_scale = _scale(test_x)
    pred = np.clip(model.predict(_relative(test_x, test_scale)) * test_scale, 0, None).reshape(
        len(keys), horizon
    )
    naive = seasonal_naive(y, origin, horizon, m)
    actual = y[:, origin + 1 : origin + horizon + 1]

    scale = np.abs(y[:, m : origin + 1] - y[:, : origin + 1 - m]).mean(axis=1)
    ok = scale > 0
    err_model = np.abs(actual - pred)
    err_naive = np.abs(actual - naive)
    total = np.abs(actual).sum()
    per_series = pl.DataFrame(
        {
            "key": keys,
            "actual_units": actual.sum(axis=1),
            "wape_model": _safe_div(err_model.sum(axis=1), np.abs(actual).sum(axis=1)),
            "wape_naive": _safe_div(err_naive.sum(axis=1), np.abs(actual).sum(axis=1)),
            "mase_model": _safe_div(err_model.mean(axis=1), scale),
            "mase_naive": _safe_div(err_naive.mean(axis=1), scale),
        }
    )
    metrics = {
        "series": len(keys),
        "horizon": horizon,
        "wape_model": float(err_model.sum() / total) if total else None,
        "wape_naive": float(err_naive.sum() / total) if total else None,
        "mase_model": float((err_model.mean(axis=1)[ok] / scale[ok]).mean()) if ok.any() else None,
        "mase_naive": float((err_naive.mean(axis=1)[ok] / scale[ok]).mean()) if ok.any() else None,
        "test_start": str(periods[origin + 1]),
        "test_end": str(periods[-1]),
        "train_rows": len(target),
    }
    if metrics["wape_model"] is not None and metrics["wape_naive"]:
        metrics["wape_improvement"] = 1 - metrics["wape_model"] / metrics["wape_naive"]
    test_periods = periods[origin + 1 : origin + horizon + 1]
    forecasts = pl.DataFrame(
        {
            "key": np.repeat(keys, horizon),
            "period": test_periods * len(keys),
            "actual": actual.reshape(-1),
            "model": pred.reshape(-1),
            "naive": naive.reshape(-1),
        }
    )
    return ForecastResult(level, freq, horizon, metrics, per_series, forecasts)


def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.full(a.shape, np.nan)
    np.divide(a, b, out=out, where=b > 0)
    return out


def history(db: AnalyticalStore, *, level: DemandLevel, freq: Frequency, keys: list[str]) -> pl.DataFrame:
    """The full (zero-filled) series of ``keys``, long form: key, period, units — for plots."""
    y, periods, keys = series_matrix(db, level=level, freq=freq, keys=keys)
    return pl.DataFrame(
        {
            "key": np.repeat(keys, len(periods)),
            "period": periods * len(keys),
            "units": y.reshape(-1),
        }
    )


# --- the days or weeks ahead, with prediction intervals --------------------------------------


@dataclass
class AheadResult:
    """Forecasts of the ``horizon`` periods after the data, with ``interval`` prediction intervals,
    and the same method's back-test on the last ``horizon`` periods it was not trained on."""

    level: str
    freq: str
    horizon: int
    interval: float
    backtest: dict[str, Any]  # wape model/naive, interval coverage and width, test window
    forecasts: pl.DataFrame  # key, period, forecast, lower, upper, naive
    backtest_forecasts: pl.DataFrame  # key, period, actual, forecast, lower, upper, naive


def _complete_periods(db: AnalyticalStore, y: np.ndarray, periods: list[Any], freq: Frequency) -> Any:
    span = db.time_range()
    if freq == "week" and periods and span is not None:
        last_day = dt.datetime.fromtimestamp(span[1] / 1000, tz=dt.UTC).date()
        if last_day < periods[-1] + dt.timedelta(days=6):  # the last week is not over: not a whole week
            return y[:, :-1], periods[:-1]
    return y, periods


def _fit_quantiles(
    y: np.ndarray,
    origin: int,
    *,
    horizon: int,
    m: int,
    dows: np.ndarray,
    stride: int,
    alphas: dict[str, float],
    rounds: int,
) -> dict[str, np.ndarray]:
    """Train on origins whose targets end at or before ``origin``; forecast the ``horizon`` periods
    after ``origin``: the point model (``PARAMS``) and one LightGBM quantile model per alpha."""
    import lightgbm as lgb

    train_x, train_y = [], []
    for o in range(28, origin - horizon + 1, stride):
        feats = _features(y, o, horizon, m, dows)
        train_x.append(feats.reshape(-1, feats.shape[-1]))
        train_y.append(y[:, o + 1 : o + horizon + 1].reshape(-1))
    x, target = np.concatenate(train_x), np.concatenate(train_y)
    scale = _scale(x)
    data = _relative(x, scale)
    test_x = _features(y, origin, horizon, m, dows).reshape(-1, len(FEATURES))
    test_scale = _scale(test_x)
    test = _relative(test_x, test_scale)
    out: dict[str, np.ndarray] = {}
    for name, params in {
        "forecast": PARAMS,
        **{k: {**PARAMS, "objective": "quantile", "alpha": a} for k, a in alphas.items()},
    }.items():
        model = lgb.train(
            params, lgb.Dataset(data, target / scale, feature_name=list(FEATURES)), num_boost_round=rounds
        )
        out[name] = np.clip(model.predict(test) * test_scale, 0, None).reshape(y.shape[0], horizon)
    # quantile models are fitted apart: keep lower <= forecast <= upper
    stacked = np.sort(np.stack([out["lower"], out["forecast"], out["upper"]]), axis=0)
    out["lower"], out["upper"] = stacked[0], stacked[2]
    out["forecast"] = np.clip(out["forecast"], out["lower"], out["upper"])
    return out


def forecast_ahead(
    db: AnalyticalStore,
    *,
    level: DemandLevel = "item",
    freq: Frequency = "day",
    top: int = 20,
    horizon: int = 14,
    interval: float = 0.8,
    rounds: int = 100,
) -> AheadResult:
    """Forecast the next ``horizon`` days (or weeks) of the ``top`` series, with ``interval``
    prediction intervals from LightGBM quantile models (the same features as ``forecast_demand``).

    The back-test fits the same models on data up to ``horizon`` periods before the end and scores
    the last ``horizon`` periods: WAPE against seasonal-naive, and the share of actual values inside
    their interval (it should be near ``interval``)."""
    if not 0 < interval < 1:
        raise ValueError(f"interval must be between 0 and 1, not {interval}")
    if not 1 <= horizon <= 56:
        raise ValueError(f"horizon must be 1 to 56 periods, not {horizon}")
    m = 7 if freq == "day" else 1
    keys = db.top_keys(level=level, n=top)
    y, periods, keys = series_matrix(db, level=level, freq=freq, keys=keys)
    y, periods = _complete_periods(db, y, periods, freq)
    n = len(periods)
    need = 28 + 2 * horizon + m + 1
    if n < need:
        raise ValueError(f"too little history to forecast: {n} {freq}s, need {need}")
    dows = np.array([p.weekday() for p in periods] + [(periods[-1].weekday() + i) % 7 for i in range(1, 60)])
    stride = 1 if freq == "week" else 7
    alphas = {"lower": (1 - interval) / 2, "upper": 1 - (1 - interval) / 2}
    fit = {"horizon": horizon, "m": m, "dows": dows, "stride": stride, "alphas": alphas, "rounds": rounds}

    origin = n - horizon - 1
    back = _fit_quantiles(y, origin, **fit)  # type: ignore[arg-type]
    actual = y[:, origin + 1 :]
    naive = seasonal_naive(y, origin, horizon, m)
    inside = (actual >= back["lower"]) & (actual <= back["upper"])
    total = np.abs(actual).sum()
    backtest = {
        "series": len(keys),
        "test_start": str(periods[origin + 1]),
        "test_end": str(periods[-1]),
        "wape_model": float(np.abs(actual - back["forecast"]).sum() / total) if total else None,
        "wape_naive": float(np.abs(actual - naive).sum() / total) if total else None,
        "interval": interval,
        "interval_coverage": float(inside.mean()),
        "mean_interval_width": float((back["upper"] - back["lower"]).mean()),
    }
    test_periods = periods[origin + 1 :]
    backtest_forecasts = pl.DataFrame(
        {
            "key": np.repeat(keys, horizon),
            "period": test_periods * len(keys),
            "actual": actual.reshape(-1),
            **{k: back[k].reshape(-1) for k in ("forecast", "lower", "upper")},
            "naive": naive.reshape(-1),
        }
    )

    ahead = _fit_quantiles(y, n - 1, **fit)  # type: ignore[arg-type]
    step = dt.timedelta(days=1 if freq == "day" else 7)
    future = [periods[-1] + step * s for s in range(1, horizon + 1)]
    forecasts = pl.DataFrame(
        {
            "key": np.repeat(keys, horizon),
            "period": future * len(keys),
            **{k: ahead[k].reshape(-1) for k in ("forecast", "lower", "upper")},
            "naive": seasonal_naive(
                np.concatenate([y, np.zeros((len(keys), horizon))], axis=1), n - 1, horizon, m
            ).reshape(-1),
        }
    )
    return AheadResult(level, freq, horizon, interval, backtest, forecasts, backtest_forecasts)


def ahead_payload(db: AnalyticalStore, result: AheadResult, *, history_periods: int = 42) -> dict[str, Any]:
    """``result`` as plain JSON: the forecasts, the back-test (figures and rows) and the last
    ``history_periods`` actual periods of each series (what a plot draws before the forecast)."""
    keys = list(dict.fromkeys(result.forecasts["key"].to_list()))
    past = history(db, level=result.level, freq=result.freq, keys=keys)  # type: ignore[arg-type]
    if past.height:
        past = past.filter(
            pl.col("period")
            > past["period"].max() - dt.timedelta(days=history_periods * (1 if result.freq == "day" else 7))
        )  # type: ignore[operator]

    def rows(df: pl.DataFrame) -> list[dict[str, Any]]:
        out = []
        for r in df.iter_rows(named=True):
            out.append(
                {
                    k: (str(v) if k == "period" else round(v, 3) if isinstance(v, float) else v)
                    for k, v in r.items()
                }
            )
        return out

    return {
        "level": result.level,
        "freq": result.freq,
        "horizon": result.horizon,
        "interval": result.interval,
        "keys": keys,
        "backtest": result.backtest,
        "forecasts": rows(result.forecasts),
        "backtest_forecasts": rows(result.backtest_forecasts),
        "history": rows(past),
    }
