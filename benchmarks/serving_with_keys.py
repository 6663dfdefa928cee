"""The serving benchmark with keys on (issue 13) against the code before them, measured as pairs.

Two servers run side by side, each from its own tree over its own var dir prepared by that tree
(the same Online Retail file, the same two model versions): the base commit (no roles:
recommendations need no key) and this tree (every recommendation request carries a ``read`` key
checked by the key ring; every answer gets the security headers). Saturation is measured in short
windows that alternate between the two servers (base first in even rounds, keys first in odd ones),
so a burst of other work on this shared machine lands on both sides of a pair rather than on one
side of the comparison. Per round and endpoint:

- ``throughput ratio`` = the endpoint's requests/s ÷ the trivial endpoint's (``/healthz``) on the
  same server in the same round (what ``bench_serving`` reports), and keys ÷ base of that ratio;
- ``direct``: keys requests/s ÷ base requests/s of the endpoint in the same round.

The medians over the rounds are reported with a bootstrap 95% interval of each median.

    git archive BASE | tar -x -C BASE_TREE
    flock /tmp/shelfwise-bench.lock .venv/bin/python benchmarks/serving_with_keys.py BASE_TREE BASE_COMMIT

Writes ``benchmarks/results/serving_keys.json``. ``SHELFWISE_BENCH_ROUNDS`` (default 12) and
``SHELFWISE_BENCH_WINDOW`` (seconds per endpoint per server per round, default 2) set the length;
``SHELFWISE_BENCH_KEEP=DIR`` keeps the two var dirs there for a re-run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_serving import (  # noqa: E402
    WORDS,
    _customers,
    _load_cpu,
    _port,
)
from benchmarks.bench_serving import (  # noqa: E402
    _serve as serve,
)

OUT = ROOT / "benchmarks" / "results" / "serving_keys.json"
ROUNDS = int(os.environ.get("SHELFWISE_BENCH_ROUNDS", "12"))
WINDOW = float(os.environ.get("SHELFWISE_BENCH_WINDOW", "2"))
WORKERS = 2
NAMES = ("recommend_uncached", "recommend_cached", "search")


# What this tree serves that the base commit did not, switched off on the keys side so the pair
# differs by the security work (keys, roles, headers) and not by features the base never had: the
# base searched with BM25 only (no dense encoder per query) and folded in nothing. The served
# defaults (hybrid search, fold-in) are measured by bench_served, not here. Both sides keep the
# precomputed top lists: the base precomputed them too (``precompute_users`` 20 000 by default at
# 0e473a6, ``registry/serving.py``), so its "uncached" answers came from them; switching them off on
# the keys side alone compared a model call with a list slice (the 0.28 of eb7f827).
SAME_FEATURES = {
    "SHELFWISE_SEARCH_MODE": "bm25",
    "SHELFWISE_FOLD_IN_TTL_SECONDS": "0",
}


def _env(tree: Path, var: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(tree / "src"),
        "SHELFWISE_VAR_DIR": str(var),
        "SHELFWISE_RATE_LIMIT_PER_SECOND": "0",
        "SHELFWISE_DASHBOARD_ON_START": "false",
    }
    if tree.resolve() == ROOT:
        env.update(SAME_FEATURES)
    env.pop("SHELFWISE_DB_URL", None)
    return env


def _prepare(tree: Path, var: Path) -> None:
    """The store and the two model versions, built by ``tree``'s own code (skipped when there)."""
    code = (
        "import sys; from pathlib import Path; sys.path.insert(0, '.'); "
        "from benchmarks import bench_serving as b; "
        f"b._prepare(Path({str(var)!r}), b.os.environ.copy())"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tree,
        env=_env(tree, var),
        text=True,
        capture_output=True,
        timeout=3600,
    )
    if done.returncode:
        raise RuntimeError(f"prepare in {tree} failed: {done.stderr[-3000:]}")


def _serve(tree: Path, var: Path, port: int) -> subprocess.Popen[str]:
    return serve(var, _env(tree, var), port, cwd=tree, timeout=900)


def _read_key(var: Path) -> str:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "shelfwise.cli.main",
            "keys",
            "create",
            "--role",
            "read",
            "--name",
            "bench",
            "--json",
        ],
        cwd=ROOT,
        env=_env(ROOT, var),
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode:
        raise RuntimeError(f"keys create failed: {done.stderr[-1000:]}")
    return str(json.loads(done.stdout)["key"])


def _median_ci(values: list[float], seed: int = 0) -> dict[str, Any]:
    arr = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    boot = np.median(rng.choice(arr, size=(4000, arr.size), replace=True), axis=1)
    return {
        "median": round(float(np.median(arr)), 3),
        "ci95": [round(float(np.quantile(boot, 0.025)), 3), round(float(np.quantile(boot, 0.975)), 3)],
        "rounds": [round(float(v), 3) for v in values],
    }


def main() -> int:
    base_tree, base_commit = Path(sys.argv[1]).resolve(), sys.argv[2]
    keep = os.environ.get("SHELFWISE_BENCH_KEEP")
    tmp = None if keep else tempfile.TemporaryDirectory(prefix="shelfwise-bench-keys-")
    top = Path(keep or tmp.name)  # type: ignore[union-attr]
    trees = {"base": base_tree, "keys": ROOT}
    vars_ = {side: top / side for side in trees}
    load_before = [round(x, 2) for x in os.getloadavg()]
    for side, tree in trees.items():
        _prepare(tree, vars_[side])
    read = {"X-API-Key": _read_key(vars_["keys"])}
    users = _customers()
    ports = {side: _port() for side in trees}
    servers: dict[str, subprocess.Popen[str]] = {}
    try:
        for side, tree in trees.items():
            servers[side] = _serve(tree, vars_[side], ports[side])

        def personal(path: str) -> dict[str, Any]:
            return {"method": "GET", "path": path, "headers": read}

        cached = [personal(f"/v1/users/{u}/recommendations?k=10") for u in users[:40]]
        search = [f"GET /v1/search?q={w}&size=10" for w in WORDS]
        trivial = ["GET /healthz"]
        for side in trees:  # warm caches and code paths of both
            _load_cpu(servers[side].pid, ports[side], cached, seconds=2.0)
            _load_cpu(servers[side].pid, ports[side], search + trivial, seconds=1.0)

        windows: list[dict[str, dict[str, Any]]] = []
        for r in range(ROUNDS):
            # a (k, scenario) no earlier round asked for: every request is a cache miss
            k = 6 + r % 10
            scenario = ("home", "store", "promotion")[r // 10 % 3]
            uncached = [personal(f"/v1/users/{u}/recommendations?k={k}&scenario={scenario}") for u in users]
            order = ("base", "keys") if r % 2 == 0 else ("keys", "base")
            one: dict[str, dict[str, Any]] = {side: {} for side in trees}
            for name, requests, extra in (
                ("trivial", trivial, {}),
                ("recommend_uncached", uncached, {"no_repeat": True}),
                ("recommend_cached", cached, {}),
                ("search", search, {}),
            ):
                for side in order:
                    one[side][name] = _load_cpu(
                        servers[side].pid, ports[side], requests, seconds=WINDOW, **dict(extra)
                    )
            windows.append(one)
            print(
                f"round {r + 1}/{ROUNDS}: "
                + ", ".join(
                    f"{n} {one['keys'][n]['rps'] / max(one['base'][n]['rps'], 1e-9):.3f}" for n in NAMES
                ),
                file=sys.stderr,
            )
    finally:
        for proc in servers.values():
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        if tmp is not None:
            tmp.cleanup()

    def to_trivial(one: dict[str, Any], side: str, name: str) -> float:
        return float(one[side][name]["rps"]) / max(float(one[side]["trivial"]["rps"]), 1e-9)

    ratio = {
        n: _median_ci([to_trivial(w, "keys", n) / to_trivial(w, "base", n) for w in windows]) for n in NAMES
    }
    direct = {
        n: _median_ci([w["keys"][n]["rps"] / max(w["base"][n]["rps"], 1e-9) for w in windows])
        for n in (*NAMES, "trivial")
    }
    per_side = {
        side: {
            "ratio_to_trivial": {
                n: round(float(np.median([to_trivial(w, side, n) for w in windows])), 3) for n in NAMES
            },
            "rps": {
                n: round(float(np.median([w[side][n]["rps"] for w in windows])), 1)
                for n in ("trivial", *NAMES)
            },
            "server_cpu_ms_per_request": {
                n: round(float(np.median([w[side][n]["server_cpu_ms_per_request"] for w in windows])), 3)
                for n in ("trivial", *NAMES)
            },
        }
        for side in trees
    }
    result = {
        "name": "serving_with_keys",
        "base_commit": base_commit,
        "design": (
            f"two servers ({WORKERS} workers each) side by side; {ROUNDS} rounds; per round and endpoint a "
            f"{WINDOW:g} s saturation window on each server, the order alternating by round; medians over "
            "rounds with a bootstrap 95% interval"
        ),
        "keys_side_settings": SAME_FEATURES,
        "keys_over_base_ratio_to_trivial": {n: v["median"] for n, v in ratio.items()},
        # the point: keys must not cost throughput; a keys side that is faster than the base passes
        "within_5_percent": {n: v["median"] >= 0.95 for n, v in ratio.items()},
        "within_5_percent_meaning": "keys ÷ base median >= 0.95 (no more than 5% lower; faster passes)",
        "ratio_to_trivial_keys_over_base": ratio,
        "direct_rps_keys_over_base": direct,
        "per_side": per_side,
        "load_before": load_before,
        "load_after": [round(x, 2) for x in os.getloadavg()],
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
