"""Churn prediction: who stops buying, with a LightGBM model on behaviour features.

The split is temporal, so nothing from the future leaks in. For a ``cutoff`` and a ``window``:

- the model is trained on features up to ``cutoff - window``, labelled by whether the customer
  bought in ``[cutoff - window, cutoff)``;
- it is tested on features up to ``cutoff``, labelled by ``[cutoff, cutoff + window)``;
- customers at risk *now* are scored on features up to the last event, with a model retrained on
  the latest labelled window, and each gets the features that push their risk up the most
  (LightGBM's ``pred_contrib``: exact TreeSHAP values).

"Churned" means no purchase in the window, among customers with at least one purchase before it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from shelfwise.analytics.frames import DAY_MS, frame
from shelfwise.store.analytical import AnalyticalStore

FEATURES = (
    "recency_days",
    "frequency",
    "monetary",
    "aov",
    "tenure_days",
    "mean_gap_days",
    "gap_ratio",
    "orders_30d",
    "orders_90d",
    "orders_180d",
    "value_90d",
    "mean_lines",
    "distinct_items",
    "return_share",
)

PARAMS: dict[str, Any] = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_data_in_leaf": 30,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "verbose": -1,
    # One thread: with OpenMP spinning on a busy 2-core machine, two threads train ~10x slower.
    "num_threads": 1,
    "seed": 7,
    "deterministic": True,
}


def churn_features(orders: pl.DataFrame, lines: pl.DataFrame, *, asof: int) -> pl.DataFrame:
    """Behaviour features per customer from orders and order lines before ``asof`` (ms)."""
    orders = orders.filter(pl.col("ts") < asof).sort("user_id", "ts")
    lines = lines.filter(pl.col("ts") < asof)
    days_before = (asof - pl.col("ts")) / DAY_MS
    per_user = (
        orders.with_columns(gap=(pl.col("ts") - pl.col("ts").shift(1).over("user_id")) / DAY_MS)
        .group_by("user_id")
        .agg(
            last_ts=pl.col("ts").max(),
            first_ts=pl.col("ts").min(),
            frequency=pl.len(),
            monetary=pl.col("value").sum(),
            mean_gap_days=pl.col("gap").mean(),
            orders_30d=(days_before <= 30).sum(),
            orders_90d=(days_before <= 90).sum(),
            orders_180d=(days_before <= 180).sum(),
            value_90d=pl.when(days_before <= 90).then(pl.col("value")).otherwise(0.0).sum(),
            mean_lines=pl.col("lines").mean(),
        )
    )
    per_line = lines.group_by("user_id").agg(
        distinct_items=pl.col("item_id").n_unique(),
        return_share=(pl.col("type") == "return").mean(),
    )
    return (
        per_user.join(per_line, on="user_id", how="left")
        .with_columns(
            recency_days=(asof - pl.col("last_ts")) / DAY_MS,
            tenure_days=(asof - pl.col("first_ts")) / DAY_MS,
            aov=pl.col("monetary") / pl.col("frequency"),
        )
        .with_columns(gap_ratio=pl.col("recency_days") / pl.col("mean_gap_days"))
        .select("user_id", *FEATURES)
        .with_columns(pl.col(FEATURES).cast(pl.Float64))
        .sort("user_id")
    )


def churn_labels(orders: pl.DataFrame, features: pl.DataFrame, *, start: int, end: int) -> pl.DataFrame:
    """``features`` with ``churned`` = 1 when the customer placed no order in ``[start, end)``."""
    buyers = orders.filter((pl.col("ts") >= start) & (pl.col("ts") < end)).select("user_id").unique()
    return features.join(buyers.with_columns(bought=pl.lit(1)), on="user_id", how="left").with_columns(
        churned=pl.col("bought").is_null().cast(pl.Int8)
    )


def auc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve (Mann–Whitney, ties counted half)."""
    from scipy.stats import rankdata

    y = np.asarray(y)
    pos = int(y.sum())
    neg = len(y) - pos
    if pos == 0 or neg == 0:
        return float("nan")
    ranks = rankdata(p)
    return float((ranks[y == 1].sum() - pos * (pos + 1) / 2) / (pos * neg))


def bootstrap_auc(y: np.ndarray, p: np.ndarray, *, n: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95% percentile bootstrap interval of the AUC (customers resampled with replacement)."""
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n):
        idx = rng.integers(0, len(y), len(y))
        value = auc(y[idx], p[idx])
        if not np.isnan(value):
            values.append(value)
    lo, hi = np.percentile(values, [2.5, 97.5])
    return float(lo), float(hi)


def calibration(y: np.ndarray, p: np.ndarray, *, bins: int = 10) -> pl.DataFrame:
    """Predicted vs observed churn rate in ``bins`` equal-count bins of the predicted probability."""
    order = np.argsort(p, kind="stable")
    rows = []
    for chunk in np.array_split(order, bins):
        if len(chunk):
            rows.append(
                {"predicted": float(p[chunk].mean()), "observed": float(y[chunk].mean()), "n": len(chunk)}
            )
    return pl.DataFrame(rows)


@dataclass
class ChurnResult:
    """What ``predict_churn`` found: test metrics, calibration, and scores for every customer now."""

    metrics: dict[str, Any]
    calibration: pl.DataFrame
    scores: pl.DataFrame  # user_id, churn_probability, top drivers, features
    importance: pl.DataFrame
    test: pl.DataFrame = field(repr=False)  # user_id, churned, churn_probability on the test window


def _train(data: pl.DataFrame, *, rounds: int) -> Any:
    import lightgbm as lgb

    x = data.select(FEATURES).to_numpy()
    y = data["churned"].to_numpy()
    return lgb.train(PARAMS, lgb.Dataset(x, y, feature_name=list(FEATURES)), num_boost_round=rounds)


def predict_churn(
    db: AnalyticalStore,
    *,
    window_days: int = 90,
    cutoff: int | None = None,
    rounds: int = 200,
    top_drivers: int = 3,
    bootstrap: int = 1000,
) -> ChurnResult:
    """Train, test and score churn (see the module's docstring). ``cutoff`` defaults to
    ``window_days`` before the last event, so the test window is the most recent one."""
    span = db.time_range()
    if span is None:
        raise ValueError("no events in the store")
    last = span[1] + 1
    window = window_days * DAY_MS
    cutoff = cutoff if cutoff is not None else last - window
    orders = frame(db.orders())
    lines = frame(db.order_lines()).select("user_id", "item_id", "type", "ts")

    train = churn_labels(
        orders, churn_features(orders, lines, asof=cutoff - window), start=cutoff - window, end=cutoff
    )
    test = churn_labels(orders, churn_features(orders, lines, asof=cutoff), start=cutoff, end=cutoff + window)
    if train.height < 50 or train["churned"].n_unique() < 2 or test["churned"].n_unique() < 2:
        raise ValueError(
            f"too little history for churn: {train.height} customers before {window_days} days "
            "ahead of the cutoff; need at least 50 with both outcomes"
        )
    model = _train(train, rounds=rounds)
    y = test["churned"].to_numpy()
    p = model.predict(test.select(FEATURES).to_numpy())
    recency_auc = auc(y, test["recency_days"].to_numpy())
    lo, hi = bootstrap_auc(y, p, n=bootstrap)
    metrics: dict[str, Any] = {
        "auc": auc(y, p),
        "auc_ci95": [lo, hi],
        "auc_recency_only": recency_auc,
        "brier": float(np.mean((p - y) ** 2)),
        "train_customers": train.height,
        "test_customers": test.height,
        "test_churn_rate": float(y.mean()),
        "train_churn_rate": float(train["churned"].mean() or 0.0),
        "window_days": window_days,
        "cutoff_ms": cutoff,
    }

    # Score everyone now with a model that has seen the latest labelled window.
    latest = churn_labels(orders, churn_features(orders, lines, asof=cutoff), start=cutoff, end=last)
    final = _train(latest, rounds=rounds)
    now = churn_features(orders, lines, asof=last)
    x_now = now.select(FEATURES).to_numpy()
    prob = final.predict(x_now)
    contrib = final.predict(x_now, pred_contrib=True)[:, : len(FEATURES)]
    order = np.argsort(-contrib, axis=1)[:, :top_drivers]
    names = np.array(FEATURES)
    drivers = [
        [f"{names[j]}={x_now[i, j]:.4g} (+{contrib[i, j]:.2f})" for j in order[i] if contrib[i, j] > 0]
        for i in range(len(order))
    ]
    scores = now.with_columns(
        churn_probability=pl.Series(prob),
        drivers=pl.Series(drivers, dtype=pl.List(pl.String)),
    ).sort("churn_probability", descending=True)
    gain = final.feature_importance(importance_type="gain")
    importance = pl.DataFrame({"feature": list(FEATURES), "gain": gain.astype(float)}).sort(
        "gain", descending=True
    )
    return ChurnResult(
        metrics=metrics,
        calibration=calibration(y, p),
        scores=scores.select("user_id", "churn_probability", "drivers", *FEATURES),
        importance=importance,
        test=test.select("user_id", "churned").with_columns(churn_probability=pl.Series(p)),
    )


def at_risk(result: ChurnResult, *, threshold: float = 0.5, limit: int = 100) -> pl.DataFrame:
    """Customers whose churn probability is at least ``threshold``, most at risk first, with the
    features that raise their risk the most."""
    return (
        result.scores.filter(pl.col("churn_probability") >= threshold)
        .select("user_id", "churn_probability", "drivers", "recency_days", "frequency", "monetary")
        .head(limit)
    )
