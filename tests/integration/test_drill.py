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


def test_primary_and_cache_primary_loss_lose_nothing_acknowledged(tmp_path: Path) -> None:
    """PostgreSQL primary + synchronous standby and Redis + replica + 3 Sentinels, started by the
    drill from Debian's binaries; the primary of each is killed under load and a replica promoted."""
    from shelfwise.drills.replicated import replicated_available

    why = replicated_available()
    if why:
        pytest.skip(why)
    result = run_drill(["primary-loss", "cache-primary-loss"], events=3_000, rate=20)
    pg, cache = result["scenarios"]
    assert pg["name"] == "primary-loss" and cache["name"] == "cache-primary-loss"
    for s in (pg, cache):
        assert s.get("error") is None, s.get("traceback")
        assert s["acknowledged_events"] > 0 and s["lost_events"] == 0, s
        assert s["rto_seconds"] is not None and s["rto_seconds"] <= 30, s
    assert pg["checks"]["standby_was_synchronous"], pg
    assert pg["journaled_during_failover"] + pg["acknowledged_before_kill"] > 0, pg
    assert cache["consent_switches_acknowledged"] > 0 and cache["consent_switches_lost"] == 0, cache
    assert pg["passed"] and cache["passed"], result
    # nothing the drill started is left running
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    rep = result["topology"]["replicated"]
    for line in rep["replicas"]:
        assert f"--port {line.rsplit(':', 1)[1]}" not in ps
    for port in rep["cache"].split("sentinels")[1].strip(" []").split(", "):
        assert f"127.0.0.1:{port}" not in ps
