"""Run drill scenarios and write the report."""

from __future__ import annotations

import contextlib
import shutil
import signal
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shelfwise.drills import report
from shelfwise.drills.scenarios import NEEDS_REPLICATED, NEEDS_TOPOLOGY, RUNNERS, SCENARIOS, Drill
from shelfwise.drills.topology import DrillError, Topology


def _failed(name: str, exc: BaseException) -> dict[str, Any]:
    hint = getattr(exc, "hint", None)
    return {
        "name": name,
        "passed": False,
        "acknowledged_events": 0,
        "lost_events": None,
        "rto_seconds": None,
        "error_rate": None,
        "requests": 0,
        "p99_ms": None,
        "checks": {"ran_to_the_end": False},
        "error": f"{type(exc).__name__}: {exc}".splitlines()[0][:300],
        "traceback": traceback.format_exc()[-2000:],
        # what the failing part left to look at (e.g. the Sentinels' logs), as it goes with the topology
        **({"hint": str(hint)[-4000:]} if hint else {}),
    }


@contextlib.contextmanager
def _stopped_cleanly_on_sigterm() -> Iterator[None]:
    """SIGTERM (a time box, ``kill``) ends the drill through its ``finally`` blocks, so the servers
    it started (PostgreSQL primary and standby, Redis, Sentinels, HAProxy, replicas) are stopped;
    by default SIGTERM ends Python at once and left them running. Main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    before = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def run_drill(
    scenarios: Sequence[str],
    *,
    report_dir: Path | None = None,
    replicas: int = 2,
    events: int = 20_000,
    rate: float = 30.0,
    say: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run ``scenarios`` (names from ``SCENARIOS``; "all" for every one) and return the result
    (``scenarios``: one dict per scenario); with ``report_dir``, write JSON, markdown and a PNG."""
    say = say or (lambda _m: None)
    names = list(SCENARIOS) if "all" in scenarios else list(dict.fromkeys(scenarios))
    unknown = [n for n in names if n not in RUNNERS]
    if unknown:
        raise DrillError(f"unknown scenario {unknown[0]!r}", hint=f"one of: all, {', '.join(SCENARIOS)}")
    started = time.monotonic()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    results: dict[str, dict[str, Any]] = {}
    work = Path(tempfile.mkdtemp(prefix="shelfwise-drill-work-"))
    drill = Drill(topology=None, rate=rate, say=say)
    topo_info: dict[str, Any] = {}
    stack = contextlib.ExitStack()

    def run(name: str, *args: Any, **kwargs: Any) -> None:
        say(f"scenario {name}")
        try:
            results[name] = RUNNERS[name](*args, **kwargs)
        except Exception as exc:  # one failed scenario is reported; the others still run
            results[name] = _failed(name, exc)
        say(f"  {'passed' if results[name]['passed'] else 'FAILED'}")

    def topology_failed(group: list[str], exc: BaseException) -> None:
        # a topology that did not start fails its scenarios (reported), not the whole drill
        for name in group:
            results[name] = _failed(name, exc)
            say(f"scenario {name}\n  FAILED (the topology did not start)")

    try:
        stack.enter_context(_stopped_cleanly_on_sigterm())
        # one topology at a time: the replicated one starts after the first has stopped
        main = [n for n in names if n in NEEDS_TOPOLOGY]
        try:
            with _maybe_topology(bool(main), replicas=replicas, events=events, say=say) as topo:
                drill.topology = topo
                if topo is not None:
                    topo_info = {
                        "load_balancer": f"haproxy {topo.url}",
                        "replicas": [f"{r.name} {r.url}" for r in topo.replicas],
                        "store": f"postgresql database {topo.db_name} (through a drill-controlled proxy)",
                        "redis_prefix": topo.redis_prefix,
                        "rate_rps": rate,
                        **topo.timings,
                    }
                    shutil.copy(topo.root / "online_retail_slice.csv", work / "online_retail_slice.csv")
                for name in main:
                    run(name, drill)
        except Exception as exc:
            topology_failed([n for n in main if n not in results], exc)
        drill.topology = None
        replicated = [n for n in names if n in NEEDS_REPLICATED]
        try:
            with _maybe_topology(
                bool(replicated), replicas=replicas, events=events, say=say, replicated=True
            ) as rtopo:
                drill.replicated = rtopo
                if rtopo is not None:
                    topo_info["replicated"] = {
                        "load_balancer": f"haproxy {rtopo.url}",
                        "replicas": [f"{r.name} {r.url}" for r in rtopo.replicas],
                        "store": f"postgresql primary :{rtopo.pg_cluster.primary.port} + synchronous "
                        f"standby :{rtopo.pg_cluster.standby.port}, database {rtopo.db_name}",
                        "cache": f"redis primary :{rtopo.sentinels.primary_port} + replica "
                        f":{rtopo.sentinels.replica_port}, sentinels {rtopo.sentinels.sentinel_ports}",
                        **rtopo.timings,
                    }
                for name in replicated:
                    run(name, drill)
        except Exception as exc:
            topology_failed([n for n in replicated if n not in results], exc)
        drill.replicated = None
        for name in names:
            if name not in results:
                run(name, drill, work=work, events=events)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        stack.close()
    ordered = [results[n] for n in names]
    result = {
        "started_at": started_at,
        "seconds": round(time.monotonic() - started, 1),
        "passed": all(r["passed"] for r in ordered),
        "scenarios": ordered,
        "topology": topo_info,
    }
    if report_dir is not None:
        report.write(result, drill.records, drill.faults, drill.origin, report_dir)
    for r in ordered:
        r.pop("traceback", None) if r.get("passed") else None
    return result


@contextlib.contextmanager
def _maybe_topology(needed: bool, **kwargs: Any) -> Iterator[Topology | None]:
    if not needed:
        yield None
        return
    with Topology.start(**kwargs) as topo:
        yield topo
