"""The analytics report: every analysis of this package on one store, as an HTML page with plots
(``index.html``), the figures as JSON (``report.json``) and the marketing list as CSV.

A step that the data cannot support (no views for a funnel, too little history for churn) says so
in its section instead of failing the report.
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

from shelfwise.analytics import (
    anomalies,
    behaviour,
    churn,
    forecast,
    funnel,
    identity,
    marketing,
    plots,
    segments,
)
from shelfwise.store.analytical import AnalyticalStore, shown_url

StepFn = Callable[[str, int, int], None]


def _table(df: pl.DataFrame, *, limit: int = 15) -> str:
    head = df.head(limit)
    cells = []
    for row in head.iter_rows():
        tds = []
        for v in row:
            if isinstance(v, float):
                text = f"{v:,.3f}" if abs(v) < 10 else f"{v:,.0f}"
            elif isinstance(v, list):
                text = "; ".join(map(str, v))
            else:
                text = str(v)
            tds.append(f"<td>{html.escape(text[:60])}</td>")
        cells.append("<tr>" + "".join(tds) + "</tr>")
    header = "".join(f"<th>{html.escape(c)}</th>" for c in head.columns)
    more = f"<p class=note>{df.height - limit:,} more rows</p>" if df.height > limit else ""
    return f"<table><tr>{header}</tr>{''.join(cells)}</table>{more}"


def _metrics(d: dict[str, Any]) -> str:
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(_fmt(v))}</td></tr>" for k, v in d.items())
    return f"<table class=kv>{rows}</table>"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return str(v)


class _Report:
    def __init__(self, out: Path, step: StepFn | None, total: int) -> None:
        self.out = out
        self.sections: list[str] = []
        self.summary: dict[str, Any] = {"timings": {}}
        self.step = step
        self.total = total
        self.done = 0

    def section(self, title: str, body: Callable[[], list[str]]) -> None:
        if self.step:
            self.step(title, self.done, self.total)
        started = time.perf_counter()
        try:
            parts = body()
        except ValueError as exc:  # the data cannot support this analysis
            parts = [f"<p class=note>Not available for this data: {html.escape(str(exc))}</p>"]
            self.summary.setdefault("skipped", {})[title] = str(exc)
        self.summary["timings"][title] = round(time.perf_counter() - started, 2)
        self.sections.append(f"<section><h2>{html.escape(title)}</h2>{''.join(parts)}</section>")
        self.done += 1

    def plot(self, fig: Any, name: str, alt: str) -> str:
        plots.save(fig, self.out / f"{name}.png")
        return f'<img src="{name}.png" alt="{html.escape(alt)}">'


def build_report(
    db: AnalyticalStore,
    out_dir: Path,
    *,
    tz: str = "UTC",
    step: StepFn | None = None,
    churn_window_days: int = 90,
    forecast_top: int = 100,
    bootstrap: int = 1000,
    churn_rounds: int = 200,
    forecast_rounds: int = 100,
) -> dict[str, Any]:
    """Run every analysis on ``db`` and write the report into ``out_dir`` (created). ``step`` is
    called with each section's title, the sections done and the total; ``*_rounds`` are the
    models' boosting rounds. Returns the summary that ``report.json``
    holds."""
    started = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    r = _Report(out_dir, step, total=9)
    counts = db.counts()
    span = db.time_range()
    r.summary["counts"] = counts
    r.summary["source"] = shown_url(db.url)  # never the password
    state: dict[str, Any] = {}

    def overview() -> list[str]:
        info = {**counts, "load_seconds": round(db.load_seconds, 2)}
        if span:
            info["from"] = str(pl.Series([span[0]]).cast(pl.Datetime("ms"))[0])
            info["to"] = str(pl.Series([span[1]]).cast(pl.Datetime("ms"))[0])
        return [_metrics(info)]

    def funnels() -> list[str]:
        parts = []
        total = funnel.funnel(db, by="total")
        r.summary["funnel"] = total.to_dicts()[0] if total.height else {}
        parts.append(_table(total))
        if counts.get("view", 0) == 0:
            parts.append("<p class=note>No view or cart events: only the purchase step can be shown.</p>")
        for by in ("category", "brand"):
            f = funnel.funnel(db, by=by)
            if f.height > 1:
                parts.append(
                    f"<h3>by {by}</h3>"
                    + r.plot(plots.funnel_chart(f, title=f"Funnel by {by}"), f"funnel_{by}", by)
                )
                parts.append(_table(f, limit=10))
        daily = funnel.funnel(db, by="day")
        parts.append(
            "<h3>by day</h3>"
            + r.plot(plots.funnel_chart(daily.tail(12), title="Funnel, last 12 days"), "funnel_day", "day")
        )
        return parts

    def purchase_behaviour() -> list[str]:
        summary = behaviour.behaviour_summary(db)
        r.summary["behaviour"] = summary.to_dicts()[0]
        gaps = behaviour.inter_purchase_intervals(db)
        baskets = behaviour.baskets(db)
        return [
            _table(summary),
            r.plot(plots.timing_heatmap(behaviour.purchase_timing(db, tz=tz)), "timing", "orders by hour"),
            r.plot(
                plots.histogram(gaps["gap_days"], title="Days between orders", xlabel="days"), "gaps", "gaps"
            ),
            r.plot(
                plots.histogram(baskets["value"], title="Basket value", xlabel="value", log=True),
                "baskets",
                "baskets",
            ),
            "<h3>Repeat rate by month</h3>",
            _table(behaviour.repeat_rate_by_month(db), limit=24),
        ]

    def rfm_section() -> list[str]:
        rfm = segments.rfm(db)
        if rfm.is_empty():
            raise ValueError("no orders from known customers")
        summary = segments.segment_summary(rfm)
        value = segments.clv(rfm)
        state["clv"] = value
        r.summary["segments"] = {row["segment"]: row["customers"] for row in summary.to_dicts()}
        r.summary["clv_total_12m"] = float(value["clv"].sum())
        cohorts = segments.cohort_retention(db)
        return [
            r.plot(plots.segment_bars(summary), "segments", "segments"),
            _table(summary),
            "<h3>Customer lifetime value (next 12 months)</h3>",
            _table(value, limit=10),
            "<h3>Cohort retention</h3>",
            r.plot(plots.cohort_heatmap(cohorts), "cohorts", "cohort retention"),
        ]

    def churn_section() -> list[str]:
        result = churn.predict_churn(
            db, window_days=churn_window_days, bootstrap=bootstrap, rounds=churn_rounds
        )
        state["churn"] = result
        r.summary["churn"] = result.metrics
        m = result.metrics
        shift = (
            f"<p class=note>The model learns from the window before the test window: there "
            f"{m['train_churn_rate']:.0%} churned, in the test window {m['test_churn_rate']:.0%}. "
            "Where the two differ (a season, a campaign), the probabilities are off by about as much "
            "— see the calibration plot — while the ranking (AUC) holds.</p>"
        )
        return [
            _metrics(result.metrics),
            shift,
            r.plot(plots.calibration_plot(result.calibration, result.metrics), "calibration", "calibration"),
            r.plot(plots.importance_bars(result.importance), "churn_importance", "importance"),
            "<h3>Customers at risk, with what drives their risk</h3>",
            _table(churn.at_risk(result), limit=20),
        ]

    def forecast_section() -> list[str]:
        parts = []
        rows = []
        for level, freq, top in (
            ("item", "day", forecast_top),
            ("item", "week", forecast_top),
            ("category", "day", 20),
            ("category", "week", 20),
        ):
            result = forecast.forecast_demand(db, level=level, freq=freq, top=top, rounds=forecast_rounds)
            rows.append({"level": level, "freq": freq, **result.metrics})
            if level == "item" and freq == "day":
                keys = result.per_series.sort("actual_units", descending=True)["key"].head(3).to_list()
                hist = forecast.history(db, level="item", freq="day", keys=keys)
                parts.append(
                    r.plot(
                        plots.forecast_lines(
                            hist, result.forecasts, keys=keys, title="Daily units, top items"
                        ),
                        "forecast",
                        "forecast",
                    )
                )
        table = pl.DataFrame(rows).select(
            "level",
            "freq",
            "series",
            "horizon",
            "wape_model",
            "wape_naive",
            "mase_model",
            "mase_naive",
            "wape_improvement",
            "test_start",
            "test_end",
        )
        r.summary["forecast"] = table.to_dicts()
        verdict = []
        for row in table.to_dicts():
            better = row["wape_model"] < row["wape_naive"]
            verdict.append(
                f"<li>{row['level']}/{row['freq']} (top {row['series']}): "
                f"LightGBM WAPE {row['wape_model']:.3f} vs "
                f"seasonal-naive {row['wape_naive']:.3f} — "
                + ("beats the baseline" if better else "<b>does not beat the baseline</b>")
                + f" ({abs(row['wape_improvement']):.1%} {'better' if better else 'worse'})</li>"
            )
        return [_table(table), f"<ul>{''.join(verdict)}</ul>", *parts]

    def anomaly_section() -> list[str]:
        evaluation = anomalies.evaluate_detectors(db)
        r.summary["anomalies"] = evaluation.to_dicts()
        bots = anomalies.bot_users(db).filter("flagged")
        fraud = anomalies.fraud_orders(db)
        returns = anomalies.return_abusers(db).filter("flagged")
        spikes = anomalies.demand_spikes(db).filter("flagged")
        r.summary["anomalies_in_data"] = {
            "bot_users": bots.height,
            "fraud_burst_orders": fraud.filter("flagged").height,
            "amount_outlier_orders": fraud.filter("amount_outlier").height,
            "return_abusers": returns.height,
            "demand_spike_item_days": spikes.height,
            "rating_burst_item_days": anomalies.rating_bursts(db).filter("flagged").height,
        }
        return [
            r.plot(plots.detection_bars(evaluation), "anomaly_eval", "detector evaluation"),
            _table(evaluation),
            "<p class=note>Precision counts every flag raised on the real data as a false positive "
            "(the real data has no labels), so it is a lower bound. Online Retail is a wholesaler's "
            "shop: its real demand spikes (bulk orders) are many, so spike precision against the "
            "injected spikes is low by construction.</p>",
            "<h3>In the stored data</h3>",
            _metrics(r.summary["anomalies_in_data"]),
            "<h3>Bot-like users</h3>",
            _table(
                bots.select("user_id", "events", "max_per_minute", "actions_per_session", "score", "reason")
            ),
            "<h3>Fraud-like orders</h3>",
            _table(
                fraud.filter(pl.col("flagged") | pl.col("amount_outlier")).select(
                    "user_id", "order_id", "value", "reason"
                )
            ),
            "<h3>Many returns</h3>",
            _table(returns),
            "<h3>Demand spikes</h3>",
            _table(spikes.sort("z", descending=True).select("key", "period", "units", "baseline", "z")),
        ]

    def identity_section() -> list[str]:
        stitched = identity.stitch_identities(db)
        evaluation = identity.evaluate_stitching(db)
        via = stitched.group_by("via").agg(sessions=pl.len()).sort("sessions", descending=True)
        r.summary["identity"] = {"sessions": stitched.height, "evaluation": evaluation}
        summary = identity.identity_summary(stitched)
        multi = summary.filter(pl.col("devices") >= 2).height
        return [
            "<p>Sessions linked to a shopper, and how:</p>",
            _table(via),
            f"<p>Shoppers seen on two or more devices: {multi:,}.</p>",
            "<p>On synthetic shoppers with a guest session, a login on a second device and a later guest "
            "session on the first device:</p>",
            _metrics(evaluation),
        ]

    def marketing_section() -> list[str]:
        if "churn" not in state:
            raise ValueError("needs the churn scores, which this data could not give")
        lists = marketing.marketing_lists(state["churn"].scores, marketing.category_affinity(db))
        lists.write_csv(out_dir / "marketing_lists.csv")
        r.summary["marketing_lists"] = {"rows": lists.height, "categories": lists["category"].n_unique()}
        return [
            "<p>Customers to win back first per category: churn probability × category affinity "
            "(the full list is in <a href=marketing_lists.csv>marketing_lists.csv</a>). It names shoppers "
            "by pseudonym: the <code>admin</code> role gets it with the shop's own customer ids by sending "
            "them (<code>POST /analytics/api/marketing-list</code>, or "
            "<code>shelfwise analytics marketing-list --ids FILE</code>).</p>",
            _table(lists, limit=20),
        ]

    for title, body in (
        ("Overview", overview),
        ("Funnel", funnels),
        ("Purchase behaviour", purchase_behaviour),
        ("Segments, lifetime value and cohorts", rfm_section),
        ("Churn", churn_section),
        ("Demand forecast", forecast_section),
        ("Anomalies", anomaly_section),
        ("Identity stitching", identity_section),
        ("Marketing lists", marketing_section),
    ):
        r.section(title, body)
    r.summary["seconds"] = round(time.perf_counter() - started, 2)
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>shelfwise analytics report</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;color:#222}}
table{{border-collapse:collapse;font-size:12px;margin:.5em 0}}
td,th{{border:1px solid #ddd;padding:2px 6px;text-align:left}}
img{{max-width:100%;display:block;margin:.5em 0}}.note{{color:#666;font-size:12px}}
section{{margin-bottom:2em}}</style>
</head><body><h1>Shopper-behaviour analytics</h1>
<p class=note>{html.escape(shown_url(db.url))} · built in {r.summary["seconds"]} s</p>
{"".join(r.sections)}</body></html>"""
    (out_dir / "index.html").write_text(page, encoding="utf-8")
    # the sections alone, for pages that embed the report (the web app's analytics dashboard)
    (out_dir / "sections.html").write_text("".join(r.sections), encoding="utf-8")
    (out_dir / "report.json").write_text(json.dumps(r.summary, indent=2, default=str), encoding="utf-8")
    return r.summary
