"""Where a 1M-item worker spends its CPU per endpoint (``docs/scaling.md`` §4b): not a benchmark,
nothing timed, no lock needed (run it niced).

It starts ``shelfwise serve --workers 2`` on the shop ``bench_sizing`` measures (same settings),
drives one endpoint at a time with ``benchmarks/loadgen.py`` (closed loop, 16 connections, 10 s) and
meanwhile samples one worker with ``py-spy record`` (50 Hz, 6 s, collapsed stacks), then prints the
frames with the largest shares of the samples (leaf and inclusive; idle threads included).

    SHELFWISE_SIZING_VAR=/tmp/sizing/keep/1000000/var PY_SPY=/path/to/py-spy \\
        nice -n 10 python -m benchmarks.profile_sizing
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

from benchmarks import bench_sizing as b

ROOT = Path(__file__).resolve().parents[1]


def _shares(path: Path) -> tuple[int, list[tuple[str, float]], list[tuple[str, float]]]:
    leaf: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        frames, count = stack.split(";"), int(n)
        total += count
        leaf[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    top = [(f, round(c / max(total, 1), 3)) for f, c in leaf.most_common(8)]
    ours = [(f, round(c / max(total, 1), 3)) for f, c in inclusive.most_common(40) if "shelfwise" in f]
    return total, top, ours[:14]


def main() -> int:
    import psutil

    var = Path(os.environ["SHELFWISE_SIZING_VAR"])
    spy = os.environ.get("PY_SPY", "py-spy")
    port = b._port()
    proc, ready, settled = b._serve(b._env(var), port, var / "profile-serve.log")
    print(f"ready {ready} s, idle {settled} s", flush=True)
    shop, catalogue = b._shop_files(var)
    items, users = b._popular(shop, 20_000)
    queries = b._queries(catalogue, 40_000)
    auth = {"X-API-Key": (var / "api.key").read_text().strip()}
    workers = [
        p.pid
        for p in psutil.Process(proc.pid).children(recursive=True)
        if "spawn_main" in " ".join(p.cmdline())
    ]
    sets: dict[str, list[Any]] = {
        "search": [
            {"method": "GET", "path": f"/v1/search?q={urllib.parse.quote_plus(q)}&size=10"}
            for q in queries[1::2]
        ],
        "similar": [{"method": "GET", "path": f"/v1/items/{i}/similar?k=10"} for i in items[5000:]],
        "scored": [
            {"method": "GET", "path": f"/v1/users/{u}/recommendations?k=10", "headers": auth}
            for u in users[b.PRECOMPUTE :][1::2]
        ],
    }
    try:
        for name, requests in sets.items():
            spec = {"port": port, "requests": requests, "seconds": 10, "rate": None, "no_repeat": True}
            load = subprocess.Popen(
                [sys.executable, "-m", "benchmarks.loadgen"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                cwd=ROOT,
                text=True,
            )
            assert load.stdin is not None and load.stdout is not None
            load.stdin.write(json.dumps(spec))
            load.stdin.close()
            time.sleep(1)
            out = var / f"profile-{name}.txt"
            record = [spy, "record", "--pid", str(workers[0]), "-d", "6", "-r", "50", "--nonblocking"]
            subprocess.run([*record, "--format", "raw", "-o", str(out)], capture_output=True, check=False)
            result = json.loads(load.stdout.read())
            load.wait()
            total, top, ours = _shares(out)
            print(f"{name}: {result['rps']} rps, {total} samples", flush=True)
            print("  leaf:", top)
            print("  inclusive (shelfwise):", ours)
    finally:
        proc.terminate()
        proc.wait(60)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
