"""The serving benchmark with keys on (issue 13) against the same benchmark before them, in one run.

Runs ``benchmarks/bench_serving.py`` twice over one prepared var dir (the same store and model
versions): once from a checkout of the base commit (no roles: recommendations need no key), once
from this tree (every recommendation request carries a ``read`` key, checked by the key ring; every
answer gets the security headers). Each run's figures are ratios to its own trivial endpoint
(``/healthz``), so the two are comparable on a shared machine; the table is new ÷ base.

    flock /tmp/shelfwise-bench.lock .venv/bin/python benchmarks/serving_with_keys.py BASE_TREE BASE_COMMIT

``BASE_TREE`` is an extracted copy of the base commit (``git archive BASE | tar -x -C BASE_TREE``).
Writes ``benchmarks/results/serving_keys.json``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "serving_keys.json"
KEEP = (
    "ratio_to_trivial",
    "ratio_rounds",
    "saturation",
    "server_cpu_ms_per_request",
    "load_before",
    "load_after",
)


def _one(tree: Path, var: str) -> dict[str, Any]:
    code = (
        "import json, sys; sys.path.insert(0, '.'); from benchmarks import bench_serving as b; "
        "out = b.run(); "
        f"print(json.dumps({{k: out[k] for k in {KEEP!r}}}))"
    )
    env = {**os.environ, "SHELFWISE_BENCH_VAR": var, "PYTHONPATH": str(tree / "src")}
    done = subprocess.run([sys.executable, "-c", code], cwd=tree, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"bench in {tree} failed: {done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> int:
    base_tree, base_commit = Path(sys.argv[1]).resolve(), sys.argv[2]
    with tempfile.TemporaryDirectory(prefix="shelfwise-bench-keys-") as var:
        base = _one(base_tree, var)  # also builds the store and both model versions
        keys = _one(ROOT, var)
    names = ("recommend_uncached", "recommend_cached", "search")
    ratio = {n: round(keys["ratio_to_trivial"][n] / base["ratio_to_trivial"][n], 3) for n in names}
    result = {
        "name": "serving_with_keys",
        "base_commit": base_commit,
        "keys_over_base_ratio_to_trivial": ratio,
        "within_5_percent": {n: abs(r - 1) <= 0.05 for n, r in ratio.items()},
        "base": base,
        "keys": keys,
        "command": "flock /tmp/shelfwise-bench.lock .venv/bin/python benchmarks/serving_with_keys.py "
        f"BASE_TREE {base_commit}",
    }
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    print(
        json.dumps({k: result[k] for k in ("keys_over_base_ratio_to_trivial", "within_5_percent")}, indent=1)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
