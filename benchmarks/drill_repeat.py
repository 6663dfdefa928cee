"""Is the drill dependable? Run ``shelfwise drill --scenario all`` N times in a row, each as its own
process (as an operator would), and log every run: passed, the scenarios that failed and why, the
run's seconds, the load average before and after, and each scenario's RTO and lost events. The log
is rewritten after every run, so a time-boxed series keeps what it measured.

    python -m benchmarks.drill_repeat --runs 20 --max-minutes 60
    # -> benchmarks/results/drill_repeat.json (and a markdown table on stdout)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
OUT = HERE / "results" / "drill_repeat.json"


def _loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def one_run(n: int, extra: list[str], lock: Path | None = None) -> dict[str, Any]:
    report = Path(tempfile.mkdtemp(prefix="shelfwise-drill-repeat-"))
    cmd = [sys.executable, "-m", "shelfwise.cli.main", "drill", "--scenario", "all", "--json"]
    cmd += ["--report", str(report), *extra]
    waited = 0.0
    if lock is not None:  # each run holds the shared benchmark lock, not the whole series
        started_at = time.time()
        cmd = ["flock", str(lock), "sh", "-c", 'echo "$(date +%s.%N)" >&2; exec "$@"', "sh", *cmd]
    before, t0 = _loadavg(), time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds, after = round(time.monotonic() - t0, 1), _loadavg()
    if lock is not None:
        try:
            waited = round(float(proc.stderr.split("\n", 1)[0]) - started_at, 1)
        except ValueError:
            waited = 0.0
        seconds = round(seconds - waited, 1)
    shutil.rmtree(report, ignore_errors=True)
    try:
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        result = {"passed": False, "scenarios": [], "error": proc.stderr.strip()[-600:]}
    scenarios = result.get("scenarios", [])
    return {
        "run": n,
        "passed": proc.returncode == 0 and bool(result.get("passed")),
        "exit_code": proc.returncode,
        "seconds": seconds,
        "lock_wait_seconds": waited,
        "loadavg_before": before,
        "loadavg_after": after,
        "failed": {
            s["name"]: s.get("error") or [c for c, ok in s.get("checks", {}).items() if not ok]
            for s in scenarios
            if not s.get("passed")
        },
        "hints": {s["name"]: s["hint"] for s in scenarios if not s.get("passed") and s.get("hint")},
        "scenarios": {
            s["name"]: {
                "passed": s.get("passed"),
                "rto_seconds": s.get("rto_seconds"),
                "lost_events": s.get("lost_events"),
                "error_rate": s.get("error_rate"),
                "p99_ms": s.get("p99_ms"),
                # the scenario's own timings (rollback by the replicas' stamps and as observed, boot…)
                **{
                    k: v
                    for k, v in s.items()
                    if k.endswith("_seconds") and k != "rto_seconds" and v is not None
                },
                **({"failed_requests": s["failed_requests"]} if s.get("failed_requests") else {}),
                **({"marks": s["marks"]} if not s.get("passed") and s.get("marks") else {}),
            }
            for s in scenarios
        },
        "topology": {k: v for k, v in result.get("topology", {}).items() if k.endswith("seconds")},
        **({"error": result["error"]} if "error" in result else {}),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--max-minutes", type=float, default=60.0, help="start no run after this")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--lock", type=Path, default=None, help="flock this file around each run")
    ap.add_argument("drill_args", nargs="*", help="more arguments for shelfwise drill (after --)")
    args = ap.parse_args(argv)
    started = time.monotonic()
    log: dict[str, Any] = {
        "name": "drill_repeat",
        "command": " ".join(["python -m shelfwise.cli.main drill --scenario all --json", *args.drill_args]),
        "runs_wanted": args.runs,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count()},
        "runs": [],
    }
    for n in range(1, args.runs + 1):
        if (time.monotonic() - started) / 60 > args.max_minutes:
            log["stopped"] = f"time box of {args.max_minutes:.0f} min reached after {n - 1} runs"
            break
        run = one_run(n, args.drill_args, args.lock)
        log["runs"].append(run)
        done = log["runs"]
        log["passed_runs"] = sum(r["passed"] for r in done)
        log["summary"] = f"{log['passed_runs']}/{len(done)} consecutive runs passed"
        log["seconds"] = round(time.monotonic() - started, 1)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(log, indent=2))
        print(
            f"run {n}: {'passed' if run['passed'] else 'FAILED ' + json.dumps(run['failed'])[:300]} "
            f"({run['seconds']} s, load {run['loadavg_before']} -> {run['loadavg_after']})",
            file=sys.stderr,
            flush=True,
        )
    print(log.get("summary", "no run"))
    return 0 if log["runs"] and all(r["passed"] for r in log["runs"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
