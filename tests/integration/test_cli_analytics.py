"""`shelfwise analytics …` and `shelfwise report` as a user runs them, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from shelfwise.analytics import funnel, identity, segments
from shelfwise.core.settings import Settings
from shelfwise.data.readers import get_format
from shelfwise.data.schemas import Event, EventType
from shelfwise.store import open_store
from shelfwise.store.analytical import AnalyticalStore
from shelfwise.store.ingest import ingest_events
from tests.integration.test_cli import one_json, run


@pytest.fixture
def ingested(tmp_path: Path, retail_slice: Path) -> Path:
    run("ingest", "events", str(retail_slice), "--format", "online-retail", cwd=tmp_path)
    return tmp_path


def test_funnel_and_rfm_print_one_json_object(ingested: Path) -> None:
    result = one_json(run("analytics", "funnel", "--by", "day", "--json", cwd=ingested))
    assert result["by"] == "day" and result["rows"][0]["key"] == "2010-12-01"
    assert result["rows"][0]["purchases"] > 50 and result["rows"][0]["views"] == 0
    rfm = one_json(run("analytics", "rfm", "--json", cwd=ingested))
    assert rfm["customers"] == sum(s["customers"] for s in rfm["segments"]) > 50
    human = run("analytics", "rfm", cwd=ingested).stdout
    assert "12-month CLV total" in human


def test_what_the_data_cannot_support_is_one_line_not_a_traceback(ingested: Path, tmp_path: Path) -> None:
    proc = run("analytics", "churn", cwd=ingested, check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "too little history" in proc.stderr
    missing = run(
        "analytics", "funnel", "--db", f"sqlite:///{tmp_path / 'none.db'}", cwd=tmp_path, check=False
    )
    assert missing.returncode == 3 and missing.stderr.startswith("shelfwise: error: no store")
    bad = run("analytics", "funnel", "--by", "colour", cwd=ingested, check=False)
    assert bad.returncode == 2 and "--by" in bad.stderr


def test_report_writes_html_and_says_what_it_skipped(ingested: Path) -> None:
    out = ingested / "report"
    summary = one_json(run("report", "--out", str(out), "--json", cwd=ingested))
    page = (out / "index.html").read_text()
    assert "<h2>Funnel" in page and "timing.png" in page
    # One day of invoices: no churn window, no forecast history — said in the page, not a crash.
    assert set(summary["skipped"]) >= {"Churn", "Demand forecast"}
    assert "Not available for this data" in page
    assert summary["anomalies"][0]["detector"] == "bot users"


@pytest.mark.postgres
def test_the_same_analytics_run_on_postgresql(fresh_pg_url: str, tmp_path: Path, retail_slice: Path) -> None:
    settings = Settings(var_dir=tmp_path / "var", pseudonym_key="test-pseudonym-key-0123456789abcdef")
    sqlite_url = f"sqlite:///{tmp_path / 'store.db'}"
    # A shopper who browses as a guest on a phone, then logs in: the device id lives in the JSON context.
    login = [
        Event(
            event_id="g1",
            type=EventType.VIEW,
            ts=1291190000000,
            session_id="s-phone",
            item_id="85123A",
            context={"device_id": "phone-1"},
        ),
        Event(
            event_id="g2",
            type=EventType.LOGIN,
            ts=1291190060000,
            session_id="s-phone",
            user_id="u-1",
            context={"device_id": "phone-1"},
        ),
        Event(
            event_id="g3",
            type=EventType.VIEW,
            ts=1291290000000,
            session_id="s-phone-2",
            item_id="85123A",
            context={"device_id": "phone-1"},
        ),
    ]
    for url in (fresh_pg_url, sqlite_url):
        with open_store(url) as store:
            ingest_events(store, retail_slice, get_format("online-retail"), settings)
            store.append_events(login)
    with AnalyticalStore.open(fresh_pg_url) as pg, AnalyticalStore.open(sqlite_url) as lite:
        assert pg.counts() == lite.counts()
        assert funnel.funnel(pg, by="day").equals(funnel.funnel(lite, by="day"))
        rfm_pg = segments.rfm(pg).sort("user_id")
        rfm_lite = segments.rfm(lite).sort("user_id")
        assert rfm_pg.select("user_id", "frequency", "segment").equals(
            rfm_lite.select("user_id", "frequency", "segment")
        )
        assert (rfm_pg["monetary"] - rfm_lite["monetary"]).abs().max() < 1e-6
        stitched = {r["session_id"]: r for r in identity.stitch_identities(pg).to_dicts()}
        assert stitched["s-phone"]["via"] == "login" and stitched["s-phone-2"]["via"] == "device"
        assert (
            stitched["s-phone-2"]["resolved_user"] == "u-1" and stitched["s-phone-2"]["device"] == "phone-1"
        )
        assert (
            identity.stitch_identities(lite)
            .sort("session_id")
            .equals(identity.stitch_identities(pg).sort("session_id"))
        )
        cohorts = segments.cohort_retention(pg)
        assert cohorts.filter(pl.col("m0") == 1.0).height == cohorts.height
    cli = one_json(run("analytics", "rfm", "--db", fresh_pg_url, "--json", cwd=tmp_path))
    assert cli["customers"] == rfm_pg.height
