"""Drift between two windows of real events (Online Retail slice), and the retrain command a cron
runs: train, gate on the freshest held-out period, activate or keep."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from shelfwise.core.settings import Settings
from shelfwise.data.readers import get_format
from shelfwise.evaluation.drift import drift_report, drift_samples, psi, score_drift
from shelfwise.store import Store
from shelfwise.store.ingest import ingest_events
from shelfwise.store.retention import latest_event_ts
from tests.integration.test_cli import one_json, run

WEEK = 7 * 86_400_000


def _shifted(store: Store, *, rename_items: bool = False) -> int:
    """Copy every stored event one week later (optionally onto new item ids); returns the new 'now'."""
    events = list(store.iter_events())
    newest = max(e.ts for e in events)
    oldest = min(e.ts for e in events)
    assert newest - oldest < WEEK
    copies = [
        dataclasses.replace(
            e,
            event_id=f"{e.event_id}-next",
            ts=e.ts + WEEK,
            item_id=(f"new-{e.item_id}" if rename_items and e.item_id else e.item_id),
        )
        for e in events
    ]
    store.append_events(copies)
    return oldest + 2 * WEEK


def test_no_drift_between_a_window_and_its_copy(store: Store, retail_slice: Path, settings: Settings) -> None:
    ingest_events(store, retail_slice, get_format("online-retail"), settings)
    now = _shifted(store)
    report = drift_report(store, window_days=7, now=now)
    assert report["reference"]["events"] == report["current"]["events"] > 1_000
    assert report["alerts"] == []
    assert report["checks"]["event_mix"]["value"] == pytest.approx(0.0, abs=1e-9)
    assert report["checks"]["new_item_share"]["value"] == 0.0
    assert {s[0] for s in drift_samples(report)} == {"shelfwise_drift", "shelfwise_drift_alert"}


def test_catalogue_churn_is_flagged(store: Store, retail_slice: Path, settings: Settings) -> None:
    ingest_events(store, retail_slice, get_format("online-retail"), settings)
    now = _shifted(store, rename_items=True)
    assert latest_event_ts(store) == max(e.ts for e in store.iter_events())
    report = drift_report(store, window_days=7, now=now)
    assert report["checks"]["new_item_share"]["value"] == 1.0
    assert report["checks"]["gone_item_share"]["value"] == 1.0
    assert {"new_item_share", "gone_item_share", "item_popularity"} <= set(report["alerts"])


def test_psi_and_score_drift() -> None:
    assert psi({"view": 80, "cart": 20}, {"view": 80, "cart": 20}) == 0.0
    assert psi({"view": 80, "cart": 20}, {"view": 20, "cart": 80}) > 0.25
    assert not score_drift([0.1 * i for i in range(200)], [0.1 * i for i in range(200)])["alert"]
    assert score_drift([0.1 * i for i in range(200)], [0.1 * i + 5 for i in range(200)])["alert"]


def test_models_drift_and_retrain_commands(tmp_path: Path, retail_slice: Path) -> None:
    run("ingest", "events", str(retail_slice), "-f", "online-retail", cwd=tmp_path)
    drift = one_json(run("models", "drift", "--window-days", "0.5", "--json", cwd=tmp_path))
    assert set(drift["checks"]) >= {"event_mix", "item_popularity", "new_item_share", "user_activity"}
    first = one_json(run("models", "retrain", "--model", "popular", "--json", cwd=tmp_path))
    assert first["action"] == "activated" and first["active"] == first["version"]
    # it went active with every shopper's top lists, as `models train` leaves them
    assert first["top_lists"]["users"] > 0 and first["top_lists"]["k"] == 50
    second = one_json(run("models", "retrain", "--model", "popular", "--json", cwd=tmp_path))
    # the same data and model: the candidate ties the active one on the same held-out period
    assert second["action"] == "activated" and second["gate"]["candidate"] == pytest.approx(
        second["gate"]["active"]
    )
    skipped = run(
        "models",
        "retrain",
        "--model",
        "popular",
        "--if-drift",
        "--window-days",
        "0.5",
        "--json",
        cwd=tmp_path,
    )
    out = json.loads(skipped.stdout)
    assert out["action"] in ("skipped", "activated", "kept")
    assert out["action"] != "skipped" or out["drift_alerts"] == []
