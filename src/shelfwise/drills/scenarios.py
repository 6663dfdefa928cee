"""The faults a drill injects, each measured against what it must meet (see ``shelfwise drill``).

Every scenario returns a ``dict`` with at least ``name``, ``passed``, ``acknowledged_events``,
``lost_events``, ``rto_seconds``, ``error_rate``, ``requests``, ``p99_ms``, plus ``checks``
(each requirement and whether it held) and the figures behind them.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from shelfwise.drills.load import Load, Record, summarise
from shelfwise.drills.topology import (
    DrillError,
    Topology,
    create_database,
    db_url,
    drop_database,
    slice_csv,
)

SCENARIOS = (
    "replica-kill",
    "store-outage",
    "cache-outage",
    "corrupt-model",
    "bad-model",
    "restore",
    "crash-during-ingest",
)
NEEDS_TOPOLOGY = {"replica-kill", "store-outage", "cache-outage", "corrupt-model", "bad-model"}

MAX_ERROR_RATE = 0.001
MAX_RTO = 5.0
MAX_ROLLBACK = 1.0


@dataclass
class Drill:
    """Shared state of one drill run: the topology, the clock, every request and every fault."""

    topology: Topology | None
    rate: float = 30.0
    say: Callable[[str], None] = lambda _m: None
    origin: float = field(default_factory=time.monotonic)
    records: list[Record] = field(default_factory=list)
    faults: list[tuple[float, str]] = field(default_factory=list)
    users: list[str] = field(default_factory=list)
    items: list[str] = field(default_factory=list)

    def mark(self, label: str) -> float:
        t = time.monotonic()
        self.faults.append((t - self.origin, label))
        self.say(f"  {label}")
        return t

    def load(self) -> Load:
        topo = self._topo()
        if not self.users:
            self.users, self.items = _users_items(topo.root / "online_retail_slice.csv")
        return Load(url=topo.url, api_key=topo.api_key, users=self.users, items=self.items, rate=self.rate)

    def _topo(self) -> Topology:
        if self.topology is None:
            raise DrillError("this scenario needs the topology")
        return self.topology


def _users_items(path: Path) -> tuple[list[str], list[str]]:
    users, items = set(), set()
    with path.open(newline="", encoding="utf-8", errors="replace") as fh:
        for row in csv.DictReader(fh):
            customer = row.get("CustomerID", "").strip().removesuffix(".0")  # as the reader does
            if customer:
                users.add(customer)
            code = row.get("StockCode", "").strip()
            if code and code[0].isdigit():
                items.add(code)
    return sorted(users), sorted(items)


def stored_ids(url: str, ids: set[str]) -> set[str]:
    """Which of ``ids`` the store holds (read directly, not through the drill's proxy)."""
    import psycopg

    from shelfwise.drills.topology import _conninfo

    if not ids:
        return set()
    with psycopg.connect(_conninfo(url), connect_timeout=3) as conn:
        rows = conn.execute("SELECT event_id FROM events WHERE event_id = ANY(%s)", (list(ids),)).fetchall()
    return {r[0] for r in rows}


def _wait_stored(url: str, ids: set[str], timeout: float) -> tuple[set[str], float]:
    started = time.monotonic()
    found: set[str] = set()
    while True:
        try:
            found = stored_ids(url, ids)
        except Exception:
            found = set()
        if found >= ids or time.monotonic() - started > timeout:
            return found, time.monotonic() - started
        time.sleep(0.1)


def _result(
    name: str,
    drill: Drill,
    load: Load | None,
    start: float,
    end: float,
    *,
    checks: dict[str, bool],
    rto: float | None,
    lost: int = 0,
    **extra: Any,
) -> dict[str, Any]:
    stats = summarise(load.records, start, end) if load is not None else summarise([], start, end)
    if load is not None:
        drill.records.extend(load.records)
    return {
        "name": name,
        "passed": all(checks.values()),
        "acknowledged_events": len(load.acked) if load is not None else extra.pop("acknowledged", 0),
        "lost_events": lost,
        "rto_seconds": None if rto is None else round(rto, 3),
        **stats,
        "started_s": round(start - drill.origin, 2),
        "ended_s": round(end - drill.origin, 2),
        "checks": checks,
        **extra,
    }


def _service_rto(records: list[Record], fault: float, end: float) -> float:
    """Fault → the last failed request (0 when none failed): when the service was healthy again."""
    failed = [r.t + r.ms / 1000 for r in records if fault <= r.t < end and not r.ok]
    return max(0.0, max(failed) - fault) if failed else 0.0


def _finish_events(drill: Drill, load: Load, timeout: float = 15.0) -> int:
    topo = drill._topo()
    found, _ = _wait_stored(topo.direct_db_url, set(load.acked), timeout)
    return len(load.acked - found)


# --- replica kill ---------------------------------------------------------------------------------
def replica_kill(drill: Drill) -> dict[str, Any]:
    topo = drill._topo()
    victim = topo.replicas[0]
    load = drill.load().start()
    start = time.monotonic()
    try:
        time.sleep(4)
        fault = drill.mark(f"SIGKILL {victim.name}")
        victim.kill9()
        detected = topo.wait_state(victim.name, "DOWN", timeout=10)
        victim.start()
        boot = victim.wait_healthy()
        back = topo.wait_state(victim.name, "UP", timeout=30)
        restored = drill.mark(f"{victim.name} restarted, UP in HAProxy")
        time.sleep(3)
    finally:
        load.stop()
    end = time.monotonic()
    lost = _finish_events(drill, load)
    rto = _service_rto(load.records, fault, end)
    stats = summarise(load.records, start, end)
    checks = {
        "error_rate_below_0.1%": stats["error_rate"] < MAX_ERROR_RATE,
        "rto_at_most_5s": rto <= MAX_RTO,
        "no_acknowledged_event_lost": lost == 0,
        "replica_restarted": victim.alive(),
    }
    return _result(
        "replica-kill",
        drill,
        load,
        start,
        end,
        checks=checks,
        rto=rto,
        lost=lost,
        haproxy_detected_down_seconds=round(detected, 3),
        replica_boot_seconds=round(boot, 3),
        capacity_restored_seconds=round(restored - fault, 3),
        haproxy_marked_up_after_boot_seconds=round(back, 3),
    )


# --- store outage ---------------------------------------------------------------------------------
def store_outage(drill: Drill, *, outage: float = 5.0) -> dict[str, Any]:
    topo = drill._topo()
    load = drill.load().start()
    start = time.monotonic()
    try:
        time.sleep(3)
        cut = drill.mark("PostgreSQL unreachable")
        topo.pg_proxy.cut()
        time.sleep(outage)
        back = drill.mark("PostgreSQL back")
        topo.pg_proxy.restore()
        acked_at_return = set(load.acked)
        found, replay = _wait_stored(topo.direct_db_url, acked_at_return, timeout=30)
        drill.mark(f"journal replayed ({replay:.2f} s)")
        time.sleep(2)
    finally:
        topo.pg_proxy.restore()
        load.stop()
    end = time.monotonic()
    lost = _finish_events(drill, load)
    during = [r for r in load.records if cut <= r.t < back]
    reads = [r for r in during if r.kind != "event"]
    writes = [r for r in during if r.kind == "event"]
    read_errors = sum(1 for r in reads if not r.ok)
    journaled = sum(1 for r in writes if r.journaled and r.ok)
    checks = {
        "reads_served_during_outage": bool(reads) and read_errors / len(reads) < MAX_ERROR_RATE,
        "writes_acknowledged_via_journal": journaled > 0,
        "no_acknowledged_event_lost": lost == 0,
        "rto_at_most_5s": replay <= MAX_RTO and found >= acked_at_return,
    }
    return _result(
        "store-outage",
        drill,
        load,
        start,
        end,
        checks=checks,
        rto=replay,
        lost=lost,
        outage_seconds=outage,
        reads_during_outage=len(reads),
        read_errors_during_outage=read_errors,
        writes_during_outage=len(writes),
        journaled_during_outage=journaled,
        write_errors_during_outage=sum(1 for r in writes if not r.ok),
    )


# --- cache outage ---------------------------------------------------------------------------------
def cache_outage(drill: Drill, *, outage: float = 4.0) -> dict[str, Any]:
    topo = drill._topo()
    load = drill.load().start()
    start = time.monotonic()
    try:
        time.sleep(3)
        cut = drill.mark("Redis unreachable")
        topo.redis_proxy.cut()
        time.sleep(outage)
        drill.mark("Redis back")
        topo.redis_proxy.restore()
        time.sleep(3)
    finally:
        topo.redis_proxy.restore()
        load.stop()
    end = time.monotonic()
    lost = _finish_events(drill, load)
    stats = summarise(load.records, start, end)
    rto = _service_rto(load.records, cut, end)
    server_errors = int(stats["server_errors"])
    checks = {
        "no_5xx_storm": server_errors / max(int(stats["requests"]), 1) < MAX_ERROR_RATE,
        "no_acknowledged_event_lost": lost == 0,
    }
    return _result(
        "cache-outage", drill, load, start, end, checks=checks, rto=rto, lost=lost, outage_seconds=outage
    )


# --- model releases -------------------------------------------------------------------------------
def _admin(topo: Topology, path: str) -> httpx.Response:
    return httpx.post(f"{topo.url}{path}", headers=topo.headers(), timeout=30)


def _served_versions(topo: Topology) -> dict[str, str | None]:
    out = {}
    for rep in topo.replicas:
        try:
            out[rep.name] = httpx.get(f"{rep.url}/readyz", timeout=2).json().get("model_version")
        except (httpx.HTTPError, ValueError):
            out[rep.name] = None
    return out


def _copy_version(topo: Topology, *, gate: dict[str, Any] | None = None, models: Any = None) -> str:
    """Register a new version from the active one's models (or ``models``), with a gate record."""
    from shelfwise.registry import ModelRegistry

    registry = ModelRegistry(topo.models_dir)
    active = registry.active
    assert active is not None
    info = registry.info(active)
    loaded = registry.load(active)
    evaluation = dict(info.evaluation)
    if gate is not None:
        evaluation["gate"] = gate
    new = registry.register(
        models or loaded.models, metrics=info.metrics, evaluation=evaluation, parent=active
    )
    return new.version


def corrupt_model(drill: Drill) -> dict[str, Any]:
    from shelfwise.registry import ModelRegistry

    topo = drill._topo()
    registry = ModelRegistry(topo.models_dir)
    before = registry.active
    version = _copy_version(topo)
    load = drill.load().start()
    start = time.monotonic()
    try:
        time.sleep(2)
        path = max((registry.root / version).rglob("*.npy"), key=lambda p: p.stat().st_size)
        data = bytearray(path.read_bytes())
        mid = len(data) // 2
        data[mid : mid + 16] = bytes(b ^ 0xFF for b in data[mid : mid + 16])
        path.write_bytes(bytes(data))
        drill.mark(f"corrupt {path.name} of {version}; activate it")
        resp = _admin(topo, f"/v1/admin/models/{version}/activate")
        time.sleep(3)
    finally:
        load.stop()
    end = time.monotonic()
    served = _served_versions(topo)
    lost = _finish_events(drill, load)
    stats = summarise(load.records, start, end)
    checks = {
        "activation_refused": resp.status_code == 409 and "corrupt" in resp.text,
        "active_unchanged": registry.active == before,
        "every_replica_serves_active": all(v == before for v in served.values()),
        "error_rate_below_0.1%": stats["error_rate"] < MAX_ERROR_RATE,
        "no_acknowledged_event_lost": lost == 0,
    }
    return _result(
        "corrupt-model",
        drill,
        load,
        start,
        end,
        checks=checks,
        rto=0.0,
        lost=lost,
        refused_with=resp.status_code,
        refusal=resp.json().get("detail")
        if resp.headers.get("content-type", "").startswith("application/json")
        else resp.text[:200],
        served_versions=served,
    )


def _personalised_rate(
    topo: Topology, users: list[str], n: int, rng: np.random.Generator
) -> tuple[float, set[str]]:
    hits, versions = 0, set()
    with httpx.Client(base_url=topo.url, timeout=5, headers=topo.headers()) as client:
        for user in rng.choice(users, size=n):
            resp = client.get(f"/v1/users/{user}/recommendations", params={"k": 10, "scenario": "home"})
            if resp.status_code == 200:
                body = resp.json()
                versions.add(body["model_version"])
                hits += body["source"] == "personalised"
    return hits / n, versions


def bad_model(drill: Drill, *, health_window: int = 30, drop: float = 0.5) -> dict[str, Any]:
    """Two bad releases: one the gate refuses; one that passes the gate but stops personalising
    (fitted on 5% of the shoppers), caught by the online health check and rolled back."""
    from shelfwise.features.dataset import Dataset
    from shelfwise.recommend.registry import model_from_config
    from shelfwise.registry import ModelRegistry
    from shelfwise.store import open_store

    topo = drill._topo()
    registry = ModelRegistry(topo.models_dir)
    good = registry.active
    assert good is not None
    gate = dict(registry.info(good).evaluation.get("gate") or {})
    value = float(gate.get("candidate", 0.1))
    worse = _copy_version(
        topo,
        gate={**gate, "candidate": value * 0.5, "active": value, "active_version": good, "tolerance": 0.0},
    )
    with open_store(topo.direct_db_url) as store:
        ds = Dataset.from_store(store)
    rows = np.flatnonzero(ds.users % 20 == 0)  # 5% of the shoppers: the rest are unknown to it
    few = Dataset.from_events(
        users=ds.user_map.to_external(ds.users[rows]),
        items=ds.item_map.to_external(ds.items[rows]),
        ts=ds.ts[rows],
        types=[ds.type_names[t] for t in ds.types[rows]],
        quantity=ds.weight[rows].astype(np.int64),
    )
    loaded = registry.load(good)
    broken_models = {name: model_from_config(m.config).fit(few) for name, m in loaded.models.items()}
    broken = _copy_version(
        topo, gate={**gate, "candidate": value, "active": value, "active_version": good}, models=broken_models
    )
    rng = np.random.default_rng(7)
    users = drill.users or drill.load().users
    load = drill.load().start()
    start = time.monotonic()
    try:
        baseline, _ = _personalised_rate(topo, users, health_window, rng)
        drill.mark("release a version the gate refuses")
        refused = _admin(topo, f"/v1/admin/models/{worse}/activate")
        drill.mark("release a version that passes the gate but stops personalising")
        released = time.monotonic()
        activated = _admin(topo, f"/v1/admin/models/{broken}/activate")
        # the online health check: personalised share of answers for known shoppers, on the new version
        detected_at, rate = None, baseline
        while time.monotonic() - released < 20:
            rate, versions = _personalised_rate(topo, users, health_window, rng)
            if versions == {broken} and rate < baseline * drop:
                detected_at = time.monotonic()
                break
        rollback_seconds, api_seconds = None, None
        if detected_at is not None:
            drill.mark(f"health check: personalised {rate:.0%} (was {baseline:.0%}); roll back")
            t0 = time.monotonic()
            resp = _admin(topo, "/v1/admin/rollback")
            api_seconds = resp.json().get("seconds") if resp.status_code == 200 else None
            while time.monotonic() - t0 < 10:
                if all(v == good for v in _served_versions(topo).values()):
                    rollback_seconds = time.monotonic() - t0
                    break
                time.sleep(0.02)
        time.sleep(2)
    finally:
        load.stop()
    end = time.monotonic()
    lost = _finish_events(drill, load)
    checks = {
        "gate_refused_worse_version": refused.status_code == 409 and "Gate" in refused.text,
        "broken_version_passed_gate": activated.status_code == 200,
        "health_check_detected_it": detected_at is not None,
        "rolled_back_within_1s": rollback_seconds is not None and rollback_seconds <= MAX_ROLLBACK,
        "active_is_good_again": registry.active == good,
        "no_acknowledged_event_lost": lost == 0,
    }
    return _result(
        "bad-model",
        drill,
        load,
        start,
        end,
        checks=checks,
        rto=None if detected_at is None else (detected_at - released) + (rollback_seconds or 0.0),
        lost=lost,
        baseline_personalised=round(baseline, 3),
        broken_personalised=round(rate, 3),
        detection_seconds=None if detected_at is None else round(detected_at - released, 3),
        rollback_seconds=None if rollback_seconds is None else round(rollback_seconds, 3),
        rollback_api_seconds=api_seconds,
    )


# --- backup and restore ---------------------------------------------------------------------------
def restore(drill: Drill, *, work: Path, events: int = 20_000) -> dict[str, Any]:
    import secrets

    from shelfwise.core.settings import Settings
    from shelfwise.data.readers import get_format
    from shelfwise.store import open_store
    from shelfwise.store.backup import backup, table_fingerprints
    from shelfwise.store.backup import restore as restore_backup
    from shelfwise.store.ingest import ingest_events

    tag = secrets.token_hex(4)
    source, target = f"shelfwise_drill_{tag}_shop", f"shelfwise_drill_{tag}_restored"
    path = work / "online_retail_slice.csv"
    if not path.exists():
        slice_csv(path, events)
    settings = Settings(var_dir=work / "var", pseudonym_key=secrets.token_hex(24))  # type: ignore[arg-type]
    start = time.monotonic()
    created: list[str] = []
    try:
        create_database(source)
        created.append(source)
        with open_store(db_url(source)) as store:
            ingest_events(store, path, get_format("online-retail"), settings)
            before = table_fingerprints(store)
            t0 = time.monotonic()
            manifest = backup(store, work / f"backup-{tag}")
            backup_s = time.monotonic() - t0
        drill.mark(f"DROP DATABASE {source}")
        drop_database(source)
        created.remove(source)
        t0 = time.monotonic()
        create_database(target)
        created.append(target)
        with open_store(db_url(target)) as store:
            restore_backup(store, work / f"backup-{tag}")
            after = table_fingerprints(store)
        restore_s = time.monotonic() - t0
        drill.mark(f"restored into {target} ({restore_s:.1f} s)")
    finally:
        for name in created:
            drop_database(name)
    end = time.monotonic()
    rows = sum(v["rows"] for v in before.values())
    checks = {
        "row_counts_identical": all(before[t]["rows"] == after[t]["rows"] for t in before),
        "checksums_identical": before == after,
        "manifest_matches_source": all(
            manifest["tables"][t]["checksum"] == before[t]["checksum"] for t in before
        ),
    }
    return _result(
        "restore",
        drill,
        None,
        start,
        end,
        checks=checks,
        rto=restore_s,
        lost=int(before["events"]["rows"] - after["events"]["rows"]),
        acknowledged=int(before["events"]["rows"]),
        backup_seconds=round(backup_s, 3),
        restore_seconds=round(restore_s, 3),
        rows=rows,
        tables={t: {"rows": before[t]["rows"], "checksum_identical": before[t] == after[t]} for t in before},
    )


# --- crash during ingest (embedded SQLite) --------------------------------------------------------
def crash_during_ingest(
    drill: Drill, *, work: Path, events: int = 20_000, batch: int = 1_000
) -> dict[str, Any]:
    import secrets
    import sqlite3

    path = work / "online_retail_slice.csv"
    if not path.exists():
        slice_csv(path, events)
    db = work / f"crash-{secrets.token_hex(3)}.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHELFWISE_")}
    env.update(
        {
            "SHELFWISE_CONFIG": str(work / "none.toml"),
            "SHELFWISE_VAR_DIR": str(work / "var-crash"),
            "SHELFWISE_PSEUDONYM_KEY": secrets.token_hex(24),
            "SHELFWISE_INGEST_BATCH_SIZE": str(batch),
        }
    )
    cmd = [
        sys.executable, "-m", "shelfwise.cli.main", "ingest", "events", str(path),
        "--format", "online-retail", "--db", f"sqlite:///{db}", "--json",
    ]  # fmt: skip

    def committed() -> set[str]:
        if not db.exists():
            return set()
        try:
            conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.2)
            try:
                return {r[0] for r in conn.execute("SELECT event_id FROM events")}
            finally:
                conn.close()
        except sqlite3.Error:
            return set()

    start = time.monotonic()
    child = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True
    )
    acked: set[str] = set()
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and child.poll() is None:
            acked = committed()  # what a reader saw committed: acknowledged batches
            if len(acked) >= 3 * batch:
                break
            time.sleep(0.02)
        finished_early = child.poll() is not None
        drill.mark(f"kill -9 ingest after {len(acked):,} committed events")
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait(timeout=10)
    conn = sqlite3.connect(str(db))  # the restart: opening recovers the WAL
    try:
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
        present = {r[0] for r in conn.execute("SELECT event_id FROM events")}
    finally:
        conn.close()
    t0 = time.monotonic()
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    resume_s = time.monotonic() - t0
    import json

    report = json.loads(rerun.stdout) if rerun.returncode == 0 and rerun.stdout.strip() else {}
    final = committed()
    end = time.monotonic()
    lost = len(acked - present)
    checks = {
        "killed_mid_ingest": not finished_early,
        "integrity_check_ok": integrity == "ok",
        "every_committed_batch_present": lost == 0,
        "rerun_completes_without_duplicates": rerun.returncode == 0
        and report.get("accepted", -1) + len(present) == len(final),
    }
    return _result(
        "crash-during-ingest",
        drill,
        None,
        start,
        end,
        checks=checks,
        rto=resume_s,
        lost=lost,
        acknowledged=len(acked),
        present_after_crash=len(present),
        integrity_check=integrity,
        rerun_accepted=report.get("accepted"),
        rerun_duplicates=report.get("duplicates"),
        final_events=len(final),
        resume_seconds=round(resume_s, 3),
    )


RUNNERS: dict[str, Callable[..., dict[str, Any]]] = {
    "replica-kill": replica_kill,
    "store-outage": store_outage,
    "cache-outage": cache_outage,
    "corrupt-model": corrupt_model,
    "bad-model": bad_model,
    "restore": restore,
    "crash-during-ingest": crash_during_ingest,
}
