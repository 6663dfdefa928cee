"""Run every ``benchmarks/bench_*.py`` (or those named on the command line) and collect the results.

Each module has ``run() -> dict`` returning at least ``{"name": str, "table": str (markdown)}``
plus its figures. The runner writes ``results/<name>.json`` and rebuilds ``results/README.md``
from every JSON file there, so a partial run keeps earlier figures.

    python -m benchmarks.run                 # all
    python -m benchmarks.run ingest search   # bench_ingest.py, bench_search.py
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
RESULTS = HERE / "results"


def _modules(names: list[str]) -> list[str]:
    found = sorted(p.stem for p in HERE.glob("bench_*.py"))
    if not names:
        return found
    wanted = [f"bench_{n.removeprefix('bench_')}" for n in names]
    missing = [w for w in wanted if w not in found]
    if missing:
        raise SystemExit(f"no such benchmark: {', '.join(missing)} (have: {', '.join(found)})")
    return wanted


def main(argv: list[str]) -> int:
    RESULTS.mkdir(exist_ok=True)
    for name in _modules(argv):
        print(f"== {name}", file=sys.stderr)
        started = time.perf_counter()
        result = importlib.import_module(f"benchmarks.{name}").run()
        result.setdefault("seconds", round(time.perf_counter() - started, 1))
        result.setdefault("machine", {"python": platform.python_version(), "cpus": os.cpu_count()})
        result["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        (RESULTS / f"{result['name']}.json").write_text(json.dumps(result, indent=2, default=str))
        print(result["table"])
    write_readme(RESULTS)
    return 0


def write_readme(results: Path) -> None:
    """Rebuild ``results/README.md`` from every bench JSON there (newest run of each)."""
    intro = "Written by `make bench`; one section per benchmark, newest run of each."
    sections = ["# Benchmark results", "", intro, ""]
    for path in sorted(p for p in results.glob("*.json") if not p.name.endswith(".raw.json")):
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or "name" not in data:
            continue  # a figure file written by a command (e.g. `experiment simulate --report`), not a bench
        sections += [
            f"## {data['name']} ({data.get('measured_at', '?')}, {data.get('seconds', '?')} s)",
            "",
            data.get("table") or f"(no table: see `{path.name}`)",
            "",
        ]
    (results / "README.md").write_text("\n".join(sections))


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
