"""Run drill scenarios and write the report."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shelfwise.drills import report
from shelfwise.drills.scenarios import NEEDS_TOPOLOGY, RUNNERS, SCENARIOS, Drill
from shelfwise.drills.topology import DrillError, Topology


def _failed(name: str, exc: BaseException) -> dict[str, Any]:
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
    }


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
    results: list[dict[str, Any]] = []
    work = Path(tempfile.mkdtemp(prefix="shelfwise-drill-work-"))
    drill = Drill(topology=None, rate=rate, say=say)
    topo_info: dict[str, Any] = {}
    try:
        needs = [n for n in names if n in NEEDS_TOPOLOGY]
        with _maybe_topology(bool(needs), replicas=replicas, events=events, say=say) as topo:
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
            for name in names:
                say(f"scenario {name}")
                try:
                    if name in NEEDS_TOPOLOGY:
                        results.append(RUNNERS[name](drill))
                    else:
                        results.append(RUNNERS[name](drill, work=work, events=events))
                except Exception as exc:  # one failed scenario is reported; the others still run
                    results.append(_failed(name, exc))
                say(f"  {'passed' if results[-1]['passed'] else 'FAILED'}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {
        "started_at": started_at,
        "seconds": round(time.monotonic() - started, 1),
        "passed": all(r["passed"] for r in results),
        "scenarios": results,
        "topology": topo_info,
    }
    if report_dir is not None:
        report.write(result, drill.records, drill.faults, drill.origin, report_dir)
    for r in results:
        r.pop("traceback", None) if r.get("passed") else None
    return result


@contextlib.contextmanager
def _maybe_topology(needed: bool, **kwargs: Any) -> Iterator[Topology | None]:
    if not needed:
        yield None
        return
    with Topology.start(**kwargs) as topo:
        yield topo
