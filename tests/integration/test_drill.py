"""A short disaster-recovery drill through the real topology (HAProxy, two uvicorn replicas,
PostgreSQL, Redis): the store goes away for a few seconds; reads keep being served and every
acknowledged event is in the store after it returns. The full drill runs in ``make bench``."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from shelfwise.drills import run_drill

pytestmark = pytest.mark.skipif(
    shutil.which("haproxy") is None and not Path("/usr/sbin/haproxy").exists(),
    reason="HAProxy is installed by `make system`",
)


def test_store_outage_drill_loses_no_acknowledged_event(tmp_path: Path) -> None:
    result = run_drill(["store-outage"], report_dir=tmp_path / "report", events=5_000, rate=20)
    (s,) = result["scenarios"]
    assert s["name"] == "store-outage"
    assert s.get("error") is None, s.get("traceback")
    assert s["checks"]["writes_acknowledged_via_journal"], s
    assert s["acknowledged_events"] > 0 and s["lost_events"] == 0, s
    assert s["read_errors_during_outage"] == 0, s
    assert s["rto_seconds"] <= 5, s
    assert s["passed"], s
    assert (tmp_path / "report" / "timeline.png").stat().st_size > 10_000
    assert json.loads((tmp_path / "report" / "drill.json").read_text())["scenarios"][0]["lost_events"] == 0
    assert "store-outage" in (tmp_path / "report" / "drill.md").read_text()
    # every process and key the drill made is gone
    prefix = result["topology"]["redis_prefix"]
    assert not list(redis.Redis.from_url("redis://127.0.0.1:6379/0").scan_iter(match=f"{prefix}*"))
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    for line in result["topology"]["replicas"]:
        port = line.rsplit(":", 1)[1]
        assert f"--port {port}" not in ps


def test_drill_cli_rejects_an_unknown_scenario() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "shelfwise.cli.main", "drill", "--scenario", "meteor", "--json"],
        capture_output=True,
        text=True,
    )
    assert out.returncode != 0
    assert "unknown scenario" in out.stderr and "Traceback" not in out.stderr
