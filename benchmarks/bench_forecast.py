"""The next 14 days of demand on Online Retail, with 80% prediction intervals, for the top 20 items
and the top categories (ingest's annotated departments), plus the back-test of the same method on
the last 14 days it did not see: WAPE against seasonal-naive and the intervals' coverage. Also the
purchase-only headline (revenue and orders by month, country, category; basket size; repeat rate).

    flock /tmp/shelfwise-bench.lock .venv/bin/python -m benchmarks.run forecast

Ingests Online Retail (not counted) into a temporary SQLite store unless ``SHELFWISE_BENCH_RETAIL_DB``
names an existing store URL. Writes ``results/forecast_ahead.json``, ``results/forecast_ahead.csv``
(every forecast row) and ``results/forecast_ahead.png``.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.bench_analytics import ONLINE_RETAIL, _ingest

RESULTS = Path(__file__).parent / "results"
HORIZON = 14
INTERVAL = 0.8


def _plot(result: Any, history: Any, path: Path, *, n: int = 6) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import polars as pl

    keys = result.forecasts["key"].unique(maintain_order=True).to_list()[:n]
    fig, axes = plt.subplots(2, 3, figsize=(13, 6), sharex=True)
    for ax, key in zip(axes.ravel(), keys, strict=False):
        past = history.filter(pl.col("key") == key).tail(42)
        ahead = result.forecasts.filter(pl.col("key") == key)
        ax.plot(past["period"].to_list(), past["units"].to_list(), color="0.4", lw=1, label="units sold")
        ax.plot(ahead["period"].to_list(), ahead["forecast"].to_list(), color="C0", label="forecast")
        ax.fill_between(
            ahead["period"].to_list(),
            ahead["lower"].to_list(),
            ahead["upper"].to_list(),
            color="C0",
            alpha=0.2,
            label=f"{INTERVAL:.0%} interval",
        )
        ax.set_title(str(key)[:32], fontsize=9)
        ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"Online Retail: next {HORIZON} days, top categories ({INTERVAL:.0%} intervals)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run() -> dict[str, Any]:
    os.environ.setdefault("SHELFWISE_PROGRESS", "0")
    import polars as pl

    from shelfwise.analytics.forecast import forecast_ahead, history
    from shelfwise.analytics.headline import purchase_headline
    from shelfwise.store.analytical import AnalyticalStore

    out: dict[str, Any] = {"name": "forecast_ahead", "horizon_days": HORIZON, "interval": INTERVAL}
    frames = []
    rows = []
    with tempfile.TemporaryDirectory() as tmp_dir:
        url = os.environ.get("SHELFWISE_BENCH_RETAIL_DB") or _ingest(
            Path(tmp_dir), ONLINE_RETAIL, "online-retail"
        )
        with AnalyticalStore.open(url) as db:
            started = time.perf_counter()
            headline = purchase_headline(db)
            out["headline_seconds"] = round(time.perf_counter() - started, 3)
            out["headline"] = headline
            for level in ("item", "category"):
                started = time.perf_counter()
                result = forecast_ahead(
                    db, level=level, freq="day", top=20, horizon=HORIZON, interval=INTERVAL
                )
                seconds = time.perf_counter() - started
                b = result.backtest
                out[level] = {**b, "seconds": round(seconds, 2)}
                frames.append(result.forecasts.with_columns(pl.lit(level).alias("level")))
                rows.append(
                    {
                        "level": level,
                        "series": b["series"],
                        "backtest": f"{b['test_start']}..{b['test_end']}",
                        "wape_model": round(b["wape_model"], 3),
                        "wape_naive": round(b["wape_naive"], 3),
                        "interval_coverage": round(b["interval_coverage"], 3),
                        "forecast_from": str(result.forecasts["period"].min()),
                        "seconds": round(seconds, 1),
                    }
                )
                if level == "category":
                    keys = result.forecasts["key"].unique(maintain_order=True).to_list()
                    past = history(db, level="category", freq="day", keys=keys)
                    _plot(result, past, RESULTS / "forecast_ahead.png")
    RESULTS.mkdir(exist_ok=True)
    forecasts = pl.concat(frames).select("level", "key", "period", "forecast", "lower", "upper", "naive")
    forecasts.with_columns(pl.col(c).round(2) for c in ("forecast", "lower", "upper", "naive")).write_csv(
        RESULTS / "forecast_ahead.csv"
    )
    out["forecasts_csv"] = "forecast_ahead.csv"
    out["rows"] = rows
    t = out["headline"]["totals"]
    cols = list(rows[0])
    out["table"] = "\n".join(
        [
            f"Online Retail, next {HORIZON} days for the top 20 items and categories, "
            f"{INTERVAL:.0%} intervals (LightGBM quantile models); back-test on the last 14 days. "
            "Forecasts: `forecast_ahead.csv`, plot `forecast_ahead.png`.",
            "",
            "| " + " | ".join(cols) + " |",
            "|" + "---|" * len(cols),
            *("| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows),
            "",
            f"Purchase-only headline: revenue {t['revenue']:,.0f} GBP over {t['orders']:,} orders (AOV "
            f"{t['aov']:.2f}), {t['customers']:,} known customers, repeat rate {t['repeat_rate']:.1%}, "
            f"median {t['basket_units']:g} units and {t['basket_lines']:.1f} lines per order.",
        ]
    )
    return out


if __name__ == "__main__":  # pragma: no cover
    import json

    res = run()
    (RESULTS / "forecast_ahead.json").write_text(json.dumps(res, indent=2, default=str))
    print(res["table"])
