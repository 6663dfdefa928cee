"""Charts for the analytics report (and later the web dashboard): each takes a frame, returns a
matplotlib ``Figure`` drawn with the Agg backend, and never touches the store."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import polars as pl
from matplotlib.figure import Figure

P = ParamSpec("P")
R = TypeVar("R")

# pyplot and matplotlib's text layout are not thread-safe; a server draws charts from several
# threads (a report building in the background while a page asks for a chart), so drawing is serial.
RENDER_LOCK = threading.RLock()


def _serial(fn: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(fn)
    def locked(*args: P.args, **kwargs: P.kwargs) -> R:
        with RENDER_LOCK:
            return fn(*args, **kwargs)

    return locked


DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _figure(width: float = 7.0, height: float = 3.6) -> tuple[Figure, Any]:
    fig, ax = plt.subplots(figsize=(width, height), dpi=100)
    return fig, ax


@_serial
def funnel_chart(funnel: pl.DataFrame, *, title: str = "Funnel") -> Figure:
    """Sessions at each step per group (first 12 groups), with the view → purchase rate."""
    data = funnel.head(12)
    fig, ax = _figure(8, 3.8)
    x = np.arange(data.height)
    for offset, column in zip((-0.27, 0, 0.27), ("views", "carts", "purchases"), strict=True):
        ax.bar(x + offset, data[column].to_numpy(), width=0.27, label=column)
    ax.set_xticks(x, [str(k)[:16] for k in data["key"].to_list()], rotation=35, ha="right", fontsize=8)
    ax.set_ylabel("sessions")
    ax.set_yscale("symlog")
    ax.legend(fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    return fig


@_serial
def timing_heatmap(timing: pl.DataFrame) -> Figure:
    """Orders by day of week × hour of day."""
    grid = np.zeros((7, 24))
    for dow, hour, orders in timing.select("dow", "hour", "orders").iter_rows():
        grid[int(dow) - 1, int(hour)] = orders
    fig, ax = _figure(8, 3)
    im = ax.imshow(grid, aspect="auto", cmap="viridis")
    ax.set_yticks(range(7), DAYS)
    ax.set_xlabel("hour of day")
    ax.set_title("Orders by day and hour")
    fig.colorbar(im, ax=ax, label="orders")
    fig.tight_layout()
    return fig


@_serial
def histogram(values: pl.Series, *, title: str, xlabel: str, bins: int = 40, log: bool = False) -> Figure:
    """A histogram of ``values`` (nulls dropped)."""
    data = values.drop_nulls().to_numpy()
    fig, ax = _figure()
    if log:
        data = data[data > 0]
        edges = (
            np.logspace(np.log10(max(data.min(), 1e-3)), np.log10(data.max() + 1), bins)
            if len(data)
            else bins
        )
        ax.hist(data, bins=edges)
        ax.set_xscale("log")
    else:
        ax.hist(data, bins=bins)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    fig.tight_layout()
    return fig


@_serial
def segment_bars(summary: pl.DataFrame) -> Figure:
    """Customers and revenue share per RFM segment."""
    fig, ax = _figure(8, 3.8)
    y = np.arange(summary.height)
    revenue = summary["revenue"].to_numpy()
    ax.barh(y - 0.2, summary["share"].to_numpy(), height=0.4, label="customers")
    ax.barh(y + 0.2, revenue / max(revenue.sum(), 1e-9), height=0.4, label="revenue")
    ax.set_yticks(y, summary["segment"].to_list(), fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("share")
    ax.legend(fontsize=8)
    ax.set_title("RFM segments")
    fig.tight_layout()
    return fig


@_serial
def cohort_heatmap(cohorts: pl.DataFrame) -> Figure:
    """Share of each first-order cohort ordering again N months later."""
    columns = [c for c in cohorts.columns if c.startswith("m")]
    grid = cohorts.select(columns).to_numpy().astype(float)
    fig, ax = _figure(8, 4)
    im = ax.imshow(
        grid, aspect="auto", cmap="Blues", vmin=0, vmax=np.nanmax(grid[:, 1:]) if grid.shape[1] > 1 else 1
    )
    ax.set_yticks(range(cohorts.height), [str(c)[:7] for c in cohorts["cohort"].to_list()], fontsize=8)
    ax.set_xticks(range(len(columns)), columns, fontsize=8)
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            if not np.isnan(grid[i, j]) and j > 0:
                ax.text(j, i, f"{grid[i, j]:.0%}", ha="center", va="center", fontsize=6)
    ax.set_xlabel("months after first order")
    ax.set_title("Cohort retention")
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    return fig


@_serial
def calibration_plot(calibration: pl.DataFrame, metrics: dict[str, Any]) -> Figure:
    """Predicted vs observed churn rate per bin, with the test AUC and its interval."""
    fig, ax = _figure(4.5, 4.2)
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1)
    ax.plot(calibration["predicted"], calibration["observed"], marker="o")
    lo, hi = metrics["auc_ci95"]
    ax.set_title(f"Churn calibration (AUC {metrics['auc']:.3f} [{lo:.3f}, {hi:.3f}])", fontsize=9)
    ax.set_xlabel("predicted churn probability")
    ax.set_ylabel("observed churn rate")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    fig.tight_layout()
    return fig


@_serial
def importance_bars(importance: pl.DataFrame) -> Figure:
    """Feature importance (gain) of the churn model."""
    fig, ax = _figure(6, 3.8)
    ax.barh(importance["feature"].to_list(), importance["gain"].to_numpy())
    ax.invert_yaxis()
    ax.set_xlabel("gain")
    ax.set_title("What drives churn")
    fig.tight_layout()
    return fig


@_serial
def forecast_lines(history: pl.DataFrame, forecasts: pl.DataFrame, *, keys: list[str], title: str) -> Figure:
    """History and test window of a few series: actual, model and seasonal-naive forecasts."""
    fig, axes = plt.subplots(len(keys), 1, figsize=(8, 2.2 * len(keys)), dpi=100, squeeze=False)
    for ax, key in zip(axes[:, 0], keys, strict=True):
        h = history.filter(pl.col("key") == key).tail(120)
        f = forecasts.filter(pl.col("key") == key)
        ax.plot(h["period"].to_list(), h["units"].to_numpy(), color="black", lw=0.8, label="actual")
        ax.plot(f["period"].to_list(), f["model"].to_numpy(), color="tab:blue", label="LightGBM")
        ax.plot(
            f["period"].to_list(), f["naive"].to_numpy(), color="tab:orange", ls="--", label="seasonal naive"
        )
        ax.set_title(str(key), fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


@_serial
def forecast_ahead_chart(payload: dict[str, Any], *, series: int = 6) -> Figure:
    """Small multiples of a forecast ahead (``analytics.forecast.ahead_payload``): recent actual
    units, the forecast and its prediction interval as a band."""
    import datetime as dt

    keys = payload["keys"][:series]
    cols = 2
    rows = max(1, (len(keys) + cols - 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(9, 2.3 * rows), dpi=100, squeeze=False)
    day = dt.date.fromisoformat
    for ax, key in zip(axes.flat, keys, strict=False):
        h = [r for r in payload["history"] if r["key"] == key]
        f = [r for r in payload["forecasts"] if r["key"] == key]
        ax.plot([day(r["period"]) for r in h], [r["units"] for r in h], color="black", lw=0.8, label="actual")
        periods = [day(r["period"]) for r in f]
        ax.fill_between(
            periods,
            [r["lower"] for r in f],
            [r["upper"] for r in f],
            color="tab:blue",
            alpha=0.25,
            label=f"{payload['interval']:.0%} interval",
        )
        ax.plot(periods, [r["forecast"] for r in f], color="tab:blue", label="forecast")
        ax.set_title(str(key)[:40], fontsize=8)
        ax.tick_params(labelsize=6)
        ax.tick_params(axis="x", rotation=30)
    for ax in list(axes.flat)[len(keys) :]:
        ax.set_visible(False)
    axes[0, 0].legend(fontsize=6)
    b = payload["backtest"]
    fig.suptitle(
        f"Next {payload['horizon']} {payload['freq']}s, top {payload['level']} series "
        f"(back-test interval coverage {b['interval_coverage']:.0%})",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


@_serial
def detection_bars(evaluation: pl.DataFrame) -> Figure:
    """Precision and recall of each anomaly detector on injected anomalies."""
    fig, ax = _figure(7, 3.2)
    x = np.arange(evaluation.height)
    ax.bar(x - 0.2, evaluation["precision"].fill_null(0).to_numpy(), width=0.4, label="precision")
    ax.bar(x + 0.2, evaluation["recall"].fill_null(0).to_numpy(), width=0.4, label="recall")
    ax.axhline(0.9, color="grey", ls="--", lw=1)
    ax.set_xticks(x, evaluation["detector"].to_list(), fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)
    ax.set_title("Anomaly detectors on injected anomalies")
    fig.tight_layout()
    return fig


@_serial
def save(fig: Figure, path: Any, *, format: str | None = None) -> None:
    """Write ``fig`` (PNG unless ``format`` or the file name says otherwise) and free it."""
    fig.savefig(path, format=format)
    plt.close(fig)
