"""Identity stitching, marketing lists and the HTML report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl

from shelfwise.analytics import churn, identity, marketing
from shelfwise.analytics.report import build_report
from shelfwise.store.analytical import AnalyticalStore


def test_guest_sessions_are_stitched_to_the_shopper_by_login_and_device(rees46: AnalyticalStore) -> None:
    result = identity.evaluate_stitching(rees46, n=20, seed=5)
    assert result == {"sessions": 60, "correct": 60, "wrong": 0, "accuracy": 1.0}
    injected, truth = identity.inject_logins(rees46, n=5, seed=6)
    stitched = identity.stitch_identities(injected)
    summary = identity.identity_summary(stitched).filter(pl.col("resolved_user").str.starts_with("stitch-"))
    assert summary.height == 5 and (summary["devices"] == 2).all() and (summary["via_device"] == 1).all()
    # Real sessions keep the user their events carry.
    real = stitched.filter(~pl.col("session_id").is_in(list(truth)))
    assert (real["resolved_user"] == real["user_id"]).all()


def test_marketing_lists_rank_by_risk_times_affinity(retail: AnalyticalStore) -> None:
    affinity = marketing.category_affinity(retail)
    sums = affinity.group_by("user_id").agg(pl.col("affinity").sum())["affinity"]
    assert (sums <= 1.0 + 1e-9).all() and (sums > 0.5).all()  # the prior keeps a little back
    result = churn.predict_churn(retail, rounds=50, bootstrap=50)
    lists = marketing.marketing_lists(result.scores, affinity, per_category=10, categories=5)
    assert lists["category"].n_unique() == 5 and lists.height <= 50
    assert (lists["churn_probability"] >= 0.3).all()
    assert ((lists["priority"] - lists["churn_probability"] * lists["affinity"]).abs() < 1e-12).all()
    for _, group in lists.group_by("category"):
        assert group.sort("rank")["priority"].is_sorted(descending=True)


def test_report_has_every_section_and_its_plots(retail: AnalyticalStore, tmp_path: Path) -> None:
    steps: list[str] = []
    summary = build_report(
        retail,
        tmp_path / "report",
        step=lambda s, d, t: steps.append(s),
        forecast_top=10,
        bootstrap=100,
        churn_rounds=40,
        forecast_rounds=30,
    )
    page = (tmp_path / "report" / "index.html").read_text()
    for title in ("Funnel", "Purchase behaviour", "Churn", "Demand forecast", "Anomalies", "Marketing lists"):
        assert f"<h2>{title}" in page
    images = re.findall(r'<img src="([^"]+)"', page)
    assert {"calibration.png", "cohorts.png", "forecast.png", "anomaly_eval.png"} <= set(images)
    for image in images:
        assert (tmp_path / "report" / image).read_bytes()[:4] == b"\x89PNG"
    assert len(steps) == 9 and not summary.get("skipped")
    stored = json.loads((tmp_path / "report" / "report.json").read_text())
    assert stored["churn"]["auc"] > 0.6
    assert {row["freq"] for row in stored["forecast"]} == {"day", "week"}
    assert (tmp_path / "report" / "marketing_lists.csv").exists()
