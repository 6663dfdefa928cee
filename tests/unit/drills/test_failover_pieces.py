"""The pieces the failover scenarios rest on, without the drill: a Redis Sentinel URL, the consent
view with Redis unreachable (a real client on a port nothing listens on), and the replica boot
wait that judges progress by CPU time rather than by a wall clock."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import redis

from shelfwise.core.errors import ConfigError
from shelfwise.drills.topology import DrillError, Replica, _conninfo, free_port
from shelfwise.serving.state import redis_from_url
from shelfwise.store import open_store
from shelfwise.trust.consent_sync import ConsentView, set_consent_everywhere


def test_sentinel_url_names_the_service_and_db() -> None:
    client = redis_from_url("redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/shop-cache/3")
    pool = client.connection_pool
    assert pool.service_name == "shop-cache"
    assert pool.connection_kwargs["db"] == 3
    assert [(s.connection_pool.connection_kwargs["port"]) for s in pool.sentinel_manager.sentinels] == [
        26379,
        26380,
    ]
    plain = redis_from_url("redis://127.0.0.1:6379/2")
    assert plain.connection_pool.connection_kwargs["db"] == 2


@pytest.mark.parametrize("url", ["redis+sentinel://127.0.0.1:26379", "redis+sentinel://h:port/svc"])
def test_bad_sentinel_url_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError):
        redis_from_url(url)


def test_multi_host_url_becomes_libpq_conninfo() -> None:
    info = _conninfo(
        "postgresql://postgres@/shop?host=127.0.0.1:5433&host=127.0.0.1:5434&target_session_attrs=read-write"
    )
    assert "host=127.0.0.1,127.0.0.1" in info and "port=5433,5434" in info
    assert "dbname=shop" in info and "target_session_attrs=read-write" in info


def test_consent_view_serves_and_switches_with_redis_unreachable(tmp_path: Path) -> None:
    down = redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5)  # nothing listens
    with open_store(f"sqlite:///{tmp_path / 'shop.db'}") as store:
        view = ConsentView(store, redis=down, prefix="t:", poll_seconds=0.0)
        assert view.personalise("u1")  # before: redis.ConnectionError, a 500 on every recommendation
        assert view.redis_failures >= 1
        view.set("u1", no_personalisation=True)  # the store took it; the stamp could not be moved
        other = ConsentView(store, redis=down, prefix="t:", poll_seconds=0.0)
        assert not other.personalise("u1")
        set_consent_everywhere(store, "u2", redis=down, prefix="t:", no_personalisation=True)
        assert not other.personalise("u2")


def _replica(tmp_path: Path, code: str) -> Replica:
    rep = Replica(name="r", port=free_port(), env={}, log=tmp_path / "r.log")
    rep.log.write_text("")
    rep.proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    return rep


def test_boot_wait_gives_up_on_a_hung_replica_by_its_progress(tmp_path: Path) -> None:
    rep = _replica(tmp_path, "import time; time.sleep(60)")
    try:
        with pytest.raises(DrillError, match="no progress"):
            rep.wait_healthy(stall=1.5, cpu_budget=60, ceiling=30)
    finally:
        rep.kill9()


def test_boot_wait_gives_up_on_a_replica_that_burns_its_cpu_budget(tmp_path: Path) -> None:
    rep = _replica(tmp_path, "while True: pass")
    try:
        with pytest.raises(DrillError, match="CPU seconds"):
            rep.wait_healthy(stall=30, cpu_budget=0.5, ceiling=60)
    finally:
        rep.kill9()


def test_sigterm_ends_a_drill_through_its_finally_blocks(tmp_path: Path) -> None:
    """A drill stopped by SIGTERM (a time box, ``kill``) must stop what it started: its cleanup runs
    in ``finally`` blocks, which Python's default SIGTERM skips."""
    done = tmp_path / "cleaned"
    code = (
        "import os, signal, time\n"
        "from shelfwise.drills.run import _stopped_cleanly_on_sigterm\n"
        "with _stopped_cleanly_on_sigterm():\n"
        "    try:\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "        time.sleep(30)\n"
        "    finally:\n"
        f"        open({str(done)!r}, 'w').write('stopped')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], timeout=60, capture_output=True)
    assert proc.returncode == 128 + 15
    assert done.read_text() == "stopped"
