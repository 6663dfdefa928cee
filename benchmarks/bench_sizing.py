"""QPS per replica at 1M items, for each public endpoint (issue 19, ``docs/scaling.md`` §4).

One replica = ``shelfwise serve --workers 2`` (the default) over the 1M-item synthetic shop of
``bench_serve_scale`` (seed 19: 1,000,000 items, 200,000 events, 60,000 shoppers), in its steady
state: the default model (``--model auto``: ALS at this size) trained and active, each worker's
precomputed top lists built (``SHELFWISE_SIZING_PRECOMPUTE`` most active shoppers, default 2,000:
the default 20,000 ranks 1M items for each, ~10 minutes per worker here), and a keyword search index
of the whole catalogue active. Shopper recommendations are measured both ways: shoppers with a
precomputed list (a slice) and shoppers the model scores per request (1M items). The served search
mode is keyword (``SHELFWISE_SEARCH_MODE=bm25``): a hybrid index needs the 1M items embedded
(all-MiniLM-L6-v2, hours on this machine), which a 1M-item start does in the background while it
answers in keyword mode; hybrid at 1M is not measured here.

Each endpoint is driven at saturation by ``benchmarks/loadgen.py`` (closed loop, 16 connections,
127.0.0.1, each request sent at most once so no result cache answers, ``SHELFWISE_SIZING_SECONDS``
per window, default 8) in ``SHELFWISE_SIZING_ROUNDS`` interleaved rounds (default 2), with
``/healthz`` as the trivial reference. Recorded per window: requests per second (the QPS of one
replica with the load generator on the same 2 cores), latency percentiles, statuses, and the
server's CPU milliseconds per request (its process tree's CPU seconds over the window divided by
the requests: the figure sizing divides a node's cores by, which the load generator's share of the
machine does not blur). The load generator's own CPU seconds and the machine's load average are
recorded too. Resident memory of each worker (RSS, and USS/PSS: what it does not share) after
the start and after the load.

Preparing the shop (generate, catalogue, events, ``models train``, ``index build --mode bm25``)
is not timed and is done outside the bench lock:

    python -m benchmarks.bench_sizing --prepare /tmp/sizing/var
    # or serve_scale's kept 1M shop (its own serve trained ALS and built the keyword version):
    # SHELFWISE_SERVE_SCALE_SHOPS=1M SHELFWISE_SERVE_SCALE_KEEP=/tmp/keep ... -> /tmp/keep/1000000/var
    SHELFWISE_SIZING_VAR=/tmp/sizing/var flock /tmp/shelfwise-bench.lock python -m benchmarks.run sizing

Writes ``benchmarks/results/sizing.json``.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import httpx

from benchmarks.bench_serve_scale import _cli as _cli_step
from benchmarks.bench_serving import _load as _loadgen
from benchmarks.bench_serving import _port, _tree_cpu_seconds

ROOT = Path(__file__).resolve().parents[1]
SECONDS = float(os.environ.get("SHELFWISE_SIZING_SECONDS", "8"))
ROUNDS = int(os.environ.get("SHELFWISE_SIZING_ROUNDS", "2"))
CONNECTIONS = 16
WORKERS = 2
EVENT_BATCH = 100
# known shoppers whose top lists each worker precomputes at start (the default, 20,000, ranks 1M items
# for each: ~10 minutes per worker here); the rest are scored by the model per request
PRECOMPUTE = int(os.environ.get("SHELFWISE_SIZING_PRECOMPUTE", "2000"))
PREPARED = "sizing-prepared.json"


def _log(msg: str) -> None:
    print(f"  {time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _env(var: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}",
        "SHELFWISE_VAR_DIR": str(var),
        "SHELFWISE_PROGRESS": "0",
        "SHELFWISE_RATE_LIMIT_PER_SECOND": "0",
        "SHELFWISE_DASHBOARD_ON_START": "false",
        "SHELFWISE_SEARCH_MODE": "bm25",
        "HF_HUB_OFFLINE": "1",
        "SHELFWISE_PRECOMPUTE_USERS": str(PRECOMPUTE),
    }
    env.pop("SHELFWISE_DB_URL", None)
    return env


def _cli(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    """One CLI step (``bench_serve_scale._cli``), its wall and CPU seconds (children's rusage) and
    its last JSON line."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall, report = _cli_step(args, env, 3600)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "wall_seconds": wall,
        "cpu_seconds": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 1),
        "load_after": _load(),
        "report": report,
    }


def _shop_files(var: Path) -> tuple[Path, Path]:
    """The generated events and catalogue: in ``var`` or next to it (``bench_serve_scale``'s KEEP)."""
    for where in (var, var.parent):
        if (where / "shop.csv.gz").exists():
            return where / "shop.csv.gz", where / "shop.items.csv.gz"
    return var / "shop.csv.gz", var / "shop.items.csv.gz"


def prepare(var: Path) -> dict[str, Any]:
    """The 1M-item shop under ``var`` in its steady state: each step skipped when its result is
    there (a store, a trained model active, a keyword index version of the whole catalogue)."""
    from benchmarks.bench_serve_scale import SHOPS, bulk_items

    _, items, users, events, _, _ = next(s for s in SHOPS if s[1] == 1_000_000)
    env = _env(var)
    var.mkdir(parents=True, exist_ok=True)
    marker = var / PREPARED
    done: dict[str, Any] = json.loads(marker.read_text()) if marker.exists() else {}
    shop, catalogue = _shop_files(var)
    if not shop.exists():
        gen = ["generate", "--out", str(shop), "--events", str(events), "--items", str(items)]
        done["generate"] = _cli([*gen, "--users", str(users), "--seed", "19"], env)
    if not (var / "shelfwise.db").exists():
        t = time.perf_counter()
        bulk_items(str(var / "shelfwise.db"), str(catalogue))
        done["catalogue"] = {"wall_seconds": round(time.perf_counter() - t, 1), "how": "bulk"}
        done["events"] = _cli(["ingest", "events", str(shop), "--format", "csv"], env)
    active = var / "models" / "ACTIVE.json"
    if not active.exists() or "-popular-" in str(json.loads(active.read_text()).get("active")):
        done["train"] = _cli(["models", "train", "--force"], env)
    if not list((var / "indexes").glob("v*-bm25-*/index.json")):
        done["index"] = _cli(["index", "build", "--mode", "bm25"], env)
    marker.write_text(json.dumps(done, indent=1, default=str))
    return done


def _popular(shop: Path, n: int) -> tuple[list[str], list[str]]:
    """The shop's item ids and shop user ids by number of events (the model knows them)."""
    items: dict[str, int] = {}
    users: dict[str, int] = {}
    with gzip.open(shop, "rt", newline="") as fh:
        for r in csv.DictReader(fh):
            items[r["item_id"]] = items.get(r["item_id"], 0) + 1
            if r.get("user_id"):
                users[r["user_id"]] = users.get(r["user_id"], 0) + 1
    return sorted(items, key=lambda k: -items[k])[:n], sorted(users, key=lambda k: -users[k])


def _queries(catalogue: Path, n: int) -> list[str]:
    """Distinct one- and two-word queries from the catalogue's titles."""
    seen: dict[str, None] = {}
    with gzip.open(catalogue, "rt", newline="") as fh:
        for r in csv.DictReader(fh):
            words = r["title"].lower().split()
            for q in (words[-1], " ".join(words[:2]), " ".join(words[-2:]), " ".join(words)):
                seen.setdefault(q, None)
            if len(seen) >= n:
                break
    return list(seen)[:n]


def _workers(pid: int) -> list[dict[str, Any]]:
    import psutil

    out = []
    root = psutil.Process(pid)
    for p in [root, *root.children(recursive=True)]:
        try:
            full = p.memory_full_info()
            cmd = " ".join(p.cmdline())[-80:]
        except psutil.Error:
            continue
        out.append(
            {
                "pid": p.pid,
                "role": "supervisor" if p.pid == pid else "worker" if "spawn_main" in cmd else "helper",
                "cmd": cmd,
                "rss": full.rss,
                "uss": full.uss,
                "pss": getattr(full, "pss", None),
            }
        )
    return out


def _window(pid: int, port: int, requests: list[Any]) -> dict[str, Any]:
    load_before = _load()
    cpu = _tree_cpu_seconds(pid)
    client = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = _loadgen(
        port,
        requests,
        rate=None,
        timeout=SECONDS + 300,
        seconds=SECONDS,
        connections=CONNECTIONS,
        no_repeat=True,
        keep_bodies=3,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_cpu = _tree_cpu_seconds(pid) - cpu
    out["server_cpu_seconds"] = round(server_cpu, 2)
    out["server_cpu_ms_per_request"] = round(server_cpu * 1000 / max(out["requests"], 1), 3)
    out["loadgen_cpu_seconds"] = round(after.ru_utime + after.ru_stime - client.ru_utime - client.ru_stime, 2)
    out["load_before"], out["load_after"] = load_before, _load()
    out["answers"] = [_gist(b) for b in out.pop("bodies", [])]
    return out


def _gist(body: str) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except ValueError:
        return {"raw": body[:120]}
    if not isinstance(data, dict):
        return {}
    keys = ("mode", "source", "model_version", "accepted", "cached", "status", "error")
    gist = {k: data[k] for k in keys if k in data}
    results = data.get("hits", data.get("items"))
    if isinstance(results, list):
        gist["results"] = len(results)
    return gist


def _serve(env: dict[str, str], port: int, log: Path) -> tuple[subprocess.Popen[str], float, float]:
    cmd = [
        sys.executable,
        "-m",
        "shelfwise.cli.main",
        "serve",
        "--port",
        str(port),
        "--workers",
        str(WORKERS),
    ]
    with log.open("w") as fh:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=fh, text=True)
    started = time.perf_counter()
    while time.perf_counter() - started < 1200:
        try:
            if all(
                httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200 for _ in range(6)
            ):
                break
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"serve exited {proc.returncode}: {log.read_text()[-1500:]}")
        time.sleep(0.5)
    else:
        proc.terminate()
        raise RuntimeError("serve not ready in 1200 s")
    ready = round(time.perf_counter() - started, 1)
    # steady state: wait until the replica is idle (the workers' start-up work: top lists, loading)
    before = _tree_cpu_seconds(proc.pid)
    while time.perf_counter() - started < 1200:
        time.sleep(3)
        now = _tree_cpu_seconds(proc.pid)
        if now - before < 0.15:
            break
        before = now
    return proc, ready, round(time.perf_counter() - started, 1)


def measure(var: Path) -> dict[str, Any]:
    env = _env(var)
    prepared = json.loads((var / PREPARED).read_text()) if (var / PREPARED).exists() else {}
    shop, catalogue = _shop_files(var)
    items, users = _popular(shop, 20_000)
    queries = _queries(catalogue, 40_000)
    active = json.loads((var / "models" / "ACTIVE.json").read_text()).get("active")
    index = sorted((var / "indexes").glob("v*-bm25-*/index.json"))
    port = _port()
    out: dict[str, Any] = {
        "prepared": {k: {x: y for x, y in v.items() if x != "report"} for k, v in prepared.items()},
        "model": active,
        "index": index[-1].parent.name if index else None,
        "precompute_users": PRECOMPUTE,
        "load_before": [round(x, 2) for x in os.getloadavg()],
    }
    cpu_start = _own_cpu()
    _log("serve --workers 2")
    proc, ready, settled = _serve(env, port, var / "sizing-serve.log")
    out["serve"] = {
        "ready_seconds": ready,
        "settled_seconds": settled,
        "cpu_seconds": round(_tree_cpu_seconds(proc.pid), 1),
    }
    try:
        key = (var / "api.key").read_text().strip()
        auth = {"X-API-Key": key}
        out["memory_after_start"] = _workers(proc.pid)
        run = uuid.uuid4().hex[:8]

        def event(n: int) -> dict[str, Any]:
            return {
                "type": "view",
                "user_id": f"sizing-{n % 5000}",
                "item_id": items[n % len(items)],
                "event_id": f"sizing-{run}-{n}",
            }

        def get(path: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
            return {"method": "GET", "path": path, **({"headers": headers} if headers else {})}

        listed, rest = users[:PRECOMPUTE], users[PRECOMPUTE:]
        endpoints: dict[str, Any] = {
            "healthz": lambda r: ["GET /healthz"] * 200_000,
            "search_keyword": lambda r: [
                get(f"/v1/search?q={urllib.parse.quote_plus(q)}&size=10") for q in queries[r::ROUNDS]
            ],
            "similar_items": lambda r: [get(f"/v1/items/{i}/similar?k=10") for i in items[r::ROUNDS]],
            # shoppers with a precomputed list (a slice), then shoppers the model scores per request
            "user_recs_listed": lambda r: [
                get(f"/v1/users/{u}/recommendations?k=10", auth) for u in listed[r::ROUNDS]
            ],
            "user_recs_scored": lambda r: [
                get(f"/v1/users/{u}/recommendations?k=10", auth) for u in rest[r::ROUNDS]
            ],
            "events_single": lambda r: [
                {"method": "POST", "path": "/v1/events", "headers": auth, "body": event(r * 100_000 + n)}
                for n in range(40_000)
            ],
            "events_batch100": lambda r: [
                {
                    "method": "POST",
                    "path": "/v1/events",
                    "headers": auth,
                    "body": {
                        "events": [
                            event(10_000_000 + (r * 2000 + b) * EVENT_BATCH + i) for i in range(EVENT_BATCH)
                        ]
                    },
                }
                for b in range(2000)
            ],
        }
        rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in endpoints}
        for r in range(ROUNDS):
            for name, make in endpoints.items():
                w = _window(proc.pid, port, make(r))
                rounds[name].append(w)
                _log(
                    f"round {r} {name}: {w['rps']} rps, p50 {w['p50_ms']} p99 {w['p99_ms']} ms, "
                    f"{w['server_cpu_ms_per_request']} CPU ms/req, non-2xx {w['non_2xx']}, "
                    f"load {w['load_after']}"
                )
        out["endpoints"] = {name: _summary(ws) for name, ws in rounds.items()}
        out["rounds"] = rounds
        out["memory_after_load"] = _workers(proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
    out["load_after"] = [round(x, 2) for x in os.getloadavg()]
    # the server's tree and every load generator (waited-for children) and this process
    out["bench_cpu_seconds"] = round(_own_cpu() - cpu_start, 1)
    served = [a.get("model_version") for a in out["endpoints"]["search_keyword"]["answers"]]
    if served and served[0]:
        out["index"] = served[0]  # the version that answered (the start may build a newer one)
    return out


def _own_cpu() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _summary(windows: list[dict[str, Any]]) -> dict[str, Any]:
    def mid(key: str) -> float:
        vals = sorted(float(w[key]) for w in windows)
        return round(
            vals[len(vals) // 2] if len(vals) % 2 else (vals[len(vals) // 2 - 1] + vals[len(vals) // 2]) / 2,
            3,
        )

    return {
        "rps": mid("rps"),
        "p50_ms": mid("p50_ms"),
        "p99_ms": mid("p99_ms"),
        "server_cpu_ms_per_request": mid("server_cpu_ms_per_request"),
        "qps_per_core": round(1000 / max(mid("server_cpu_ms_per_request"), 1e-9), 1),
        "requests": sum(int(w["requests"]) for w in windows),
        "non_2xx": sum(int(w["non_2xx"]) for w in windows),
        "loadgen_cpu_seconds": round(sum(float(w["loadgen_cpu_seconds"]) for w in windows), 1),
        "server_cpu_seconds": round(sum(float(w["server_cpu_seconds"]) for w in windows), 1),
        "load": [w["load_after"] for w in windows],
        "answers": windows[0].get("answers", [])[:2],
    }


def _mb(n: int | None) -> str:
    return "" if n is None else f"{n / 1e6:,.0f}"


def table(f: dict[str, Any]) -> str:
    lines = [
        "| endpoint (1M items, 2 workers, 16 connections) | QPS per replica | p50 / p99 ms | server CPU ms "
        "per request | QPS per core (1000 ÷ CPU ms) | requests (non-2xx) | served as | load |",
        "|---|---:|---|---:|---:|---|---|---|",
    ]
    for name, e in f["endpoints"].items():
        ans = e["answers"][0] if e["answers"] else {}
        how = ", ".join(
            f"{k} {v}" for k, v in ans.items() if k in ("mode", "source", "model_version", "accepted")
        )
        lines.append(
            f"| {name} | {e['rps']:,} | {e['p50_ms']} / {e['p99_ms']} | {e['server_cpu_ms_per_request']} "
            f"| {e['qps_per_core']:,} | {e['requests']:,} ({e['non_2xx']}) | {how} | {e['load']} |"
        )
    workers = [w for w in f["memory_after_load"] if w["role"] == "worker"]
    mem = "; ".join(f"RSS {_mb(w['rss'])} MB (USS {_mb(w['uss'])}, PSS {_mb(w['pss'])})" for w in workers)
    start = [w for w in f["memory_after_start"] if w["role"] == "worker"]
    mem0 = "; ".join(f"{_mb(w['rss'])}" for w in start)
    s = f["serve"]
    lines += [
        "",
        f"Model `{f.get('model')}`, keyword index `{f.get('index')}`; `serve --workers 2` ready in "
        f"{s['ready_seconds']} s, idle at {s['settled_seconds']} s ({s['cpu_seconds']} CPU s). "
        f"Per process after the load: {mem} (after the start, RSS MB: {mem0}). "
        f"{ROUNDS} rounds of {SECONDS:.0f} s per endpoint, medians; load average {f['load_before']} → "
        f"{f['load_after']}; CPU seconds of the whole run (server start and load, load generators): "
        f"{f['bench_cpu_seconds']}.",
    ]
    return "\n".join(lines)


def run() -> dict[str, Any]:
    given = os.environ.get("SHELFWISE_SIZING_VAR")
    if given:
        var = Path(given)
        prepare(var)
        figures = measure(var)
    else:
        with tempfile.TemporaryDirectory(prefix="shelfwise-sizing-") as tmp:
            prepare(Path(tmp) / "var")
            figures = measure(Path(tmp) / "var")
    return {"name": "sizing", "table": table(figures), **figures}


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--prepare":
        print(json.dumps(prepare(Path(sys.argv[2])), indent=1, default=str))
    else:
        print(run()["table"])
