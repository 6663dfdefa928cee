"""Serving under load on loopback, with 2 uvicorn workers: recommendations (cached and uncached) and
search against a trivial endpoint, events into SQLite with every acknowledged event counted back,
rollback during load, and deletion end to end with its verification report.

It builds its own store from the vendored Online Retail file in a temp dir (ingest, then two model
versions: itemknn, then EASE with bundles, so a rollback has somewhere to go), starts
``shelfwise serve --workers 2`` on a free port with the rate limit off, and drives it from a
separate process (``benchmarks/loadgen.py``: asyncio, raw HTTP/1.1 keep-alive). Every phase is
bounded (``SHELFWISE_BENCH_SECONDS`` each, default 8).

- **saturation**: closed loop, 16 connections: the request rate reached is the throughput. Three
  interleaved rounds; a ratio to the trivial endpoint is taken within a round, and the median kept.
- **at the stated rate**: open loop at a fixed rate (``SHELFWISE_BENCH_RATE``, default half the
  saturation rate of the slowest of recommendations and search in this run); latency counts from
  when each request was
  due, so a stalled server cannot hide its queue (no coordinated omission).

``SHELFWISE_BENCH_VAR`` reuses a prepared var dir (store + registry) instead of building one.
The machine's load average is recorded before and after: on a shared machine absolute latencies
mean little, the ratios to the trivial endpoint measured in the same run more.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "online_retail" / "online_retail.csv.gz"
SECONDS = float(os.environ.get("SHELFWISE_BENCH_SECONDS", "8"))
CONNECTIONS = 16
ROUNDS = 3  # interleaved saturation rounds (each endpoint SECONDS / 2 per round); at most 3
WORKERS = 2
EVENT_BATCH = 100
WORDS = ["heart", "bag", "christmas", "light+holder", "cake", "vintage", "red", "mug", "lunch+box", "candle"]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cli(args: list[str], env: dict[str, str], *, ok: tuple[int, ...] = (0,)) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "shelfwise.cli.main", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if done.returncode not in ok:
        raise RuntimeError(f"shelfwise {' '.join(args)} failed: {done.stderr[-2000:]}")
    return done.stdout


def _prepare(var: Path, env: dict[str, str]) -> dict[str, float]:
    """Store and two model versions under ``var`` (skipped when they are there)."""
    took: dict[str, float] = {}
    if not (var / "shelfwise.db").exists():
        t = time.perf_counter()
        _cli(["ingest", "events", str(DATA), "--format", "online-retail"], env)
        took["ingest_seconds"] = round(time.perf_counter() - t, 1)
    if not (var / "models" / "ACTIVE.json").exists():
        t = time.perf_counter()
        _cli(["models", "train", "--model", "itemknn", "--no-bundles", "--force"], env)
        _cli(["models", "train", "--model", "ease", "--force"], env)
        took["train_seconds"] = round(time.perf_counter() - t, 1)
    return took


def _customers() -> list[str]:
    """The shop's own customer ids (the store keeps only pseudonyms)."""
    seen: dict[str, None] = {}
    with gzip.open(DATA, "rt", newline="") as fh:
        for row in csv.DictReader(fh):
            c = row["CustomerID"]
            if c:
                seen[c.removesuffix(".0")] = None
    return list(seen)


def _tree_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by a process and all its descendants (Linux /proc): a
    server with its workers, or a bench's own process with the local Ray cluster it started. On a
    shared machine wall-clock time mostly measures the other jobs; this is the work done."""
    tick = os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{p}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def _load_cpu(server: int, port: int, requests: list[Any], **extra: Any) -> dict[str, Any]:
    """``_load`` at saturation, plus the server's CPU milliseconds per request: the cost of an
    endpoint that the load generator's own share of the machine does not blur."""
    before = _tree_cpu_seconds(server)
    out = _load(port, requests, rate=None, **extra)
    out["server_cpu_ms_per_request"] = round(
        (_tree_cpu_seconds(server) - before) * 1000 / max(out["requests"], 1), 3
    )
    return out


def _load(
    port: int, requests: list[Any], *, rate: float | None, timeout: float = 600, **extra: Any
) -> dict[str, Any]:
    """One run of the load generator (``benchmarks.loadgen``) against ``port``; its JSON report."""
    spec = {
        "port": port,
        "requests": requests,
        "seconds": extra.pop("seconds", SECONDS),
        "rate": rate,
        "connections": extra.pop("connections", CONNECTIONS),
        **extra,
    }
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.loadgen"],
        input=json.dumps(spec),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed: {done.stderr[-2000:]}")
    return dict(json.loads(done.stdout))


def _start_load(port: int, requests: list[Any], *, rate: float, seconds: float) -> subprocess.Popen[str]:
    spec = {"port": port, "requests": requests, "seconds": seconds, "rate": rate, "connections": 32}
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.loadgen"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        text=True,
    )
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(spec))
    proc.stdin.close()
    return proc


def _serve(
    var: Path, env: dict[str, str], port: int, *, cwd: Path = ROOT, timeout: float = 600.0
) -> subprocess.Popen[str]:
    """``shelfwise serve`` (``WORKERS`` workers) from the tree at ``cwd``, once both workers answer."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "shelfwise.cli.main", "serve", "--port", str(port), "--workers", str(WORKERS)],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            # both workers must answer: several probes over fresh connections land on each
            if all(
                httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200 for _ in range(6)
            ):
                return proc
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(
                f"serve from {cwd} exited: {proc.stderr.read()[-2000:] if proc.stderr else ''}"
            )
        time.sleep(0.5)
    proc.terminate()
    raise RuntimeError(f"server from {cwd} not ready in {timeout:.0f} s")


def _stored(db: Path, prefix: str) -> int:
    with sqlite3.connect(db, timeout=60) as conn:
        return int(
            conn.execute("SELECT COUNT(*) FROM events WHERE event_id LIKE ?", (prefix + "%",)).fetchone()[0]
        )


def _events_phase(port: int, db: Path, auth: dict[str, str]) -> dict[str, Any]:
    run = uuid.uuid4().hex[:8]
    item_ids = ["85123A", "71053", "84406B", "22752", "21730", "22633", "84029G", "22745"]

    def event(n: int) -> dict[str, Any]:
        return {
            "type": "view",
            "user_id": f"bench-{n % 500}",
            "item_id": item_ids[n % len(item_ids)],
            "event_id": f"bench-{run}-{n}",
        }

    # enough distinct requests that none is sent twice (each request once: no duplicates)
    batches = [
        {
            "method": "POST",
            "path": "/v1/events",
            "headers": auth,
            "body": {"events": [event(b * EVENT_BATCH + i) for i in range(EVENT_BATCH)]},
        }
        for b in range(3000)
    ]
    offset = len(batches) * EVENT_BATCH
    singles = [
        {"method": "POST", "path": "/v1/events", "headers": auth, "body": event(offset + n)}
        for n in range(40_000)
    ]
    before = _stored(db, f"bench-{run}")
    batch = _load(port, batches, rate=None, connections=8, no_repeat=True)
    single = _load(port, singles, rate=None, no_repeat=True)
    stored = _stored(db, f"bench-{run}")
    acknowledged = batch["ok"] * EVENT_BATCH + single["ok"]
    return {
        "batch_requests": batch,
        "single_requests": single,
        "batch_events_per_s": round(batch["rps"] * EVENT_BATCH, 1),
        "single_events_per_s": single["rps"],
        "acknowledged": acknowledged,
        "stored": stored - before,
        "lost": max(0, acknowledged - (stored - before)),
    }


def _rollback_phase(
    port: int, auth: dict[str, str], requests: list[str], rate: float, versions: list[str], active: str
) -> dict[str, Any]:
    """Load at ``rate`` while the other version is activated and rolled back, several times."""
    base = f"http://127.0.0.1:{port}"
    other = next(v for v in versions if v != active)
    seconds = max(SECONDS, 10.0)
    load = _start_load(port, requests, rate=rate, seconds=seconds)
    switches, admin_failures, server_seconds = 0, 0, []
    with httpx.Client(base_url=base, timeout=60, headers=auth) as c:
        time.sleep(1.0)
        stop = time.time() + seconds - 2.0
        while time.time() < stop:
            a = c.post(f"/v1/admin/models/{other}/activate", params={"force": True})
            time.sleep(0.6)
            b = c.post("/v1/admin/rollback")
            admin_failures += (a.status_code != 200) + (b.status_code != 200)
            if b.status_code == 200:
                server_seconds.append(b.json()["seconds"])
            switches += 2
            time.sleep(0.6)
        final = c.get("/v1/admin/models").json()["active"]
    assert load.stdout is not None and load.stderr is not None
    out, err = load.stdout.read(), load.stderr.read()
    load.wait(timeout=600)
    if load.returncode != 0:
        raise RuntimeError(f"load generator failed: {err[-2000:]}")
    result = dict(json.loads(out))
    return {
        "load": result,
        "switches": switches,
        "admin_failures": admin_failures,
        "rollback_server_seconds_max": max(server_seconds) if server_seconds else None,
        "active_after": final,
        "active_before": active,
    }


def _deletion(port: int, auth: dict[str, str], env: dict[str, str], victim: str) -> dict[str, Any]:
    base = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=base, timeout=120, headers=auth) as c:
        c.get(f"/v1/users/{victim}/recommendations")
        c.get("/v1/search", params={"q": "heart", "user_id": victim})
        c.post("/v1/events", json={"type": "view", "user_id": victim, "item_id": "71053"})
        t = time.perf_counter()
        deleted = c.delete(f"/v1/users/{victim}").json()
        api_seconds = time.perf_counter() - t
    # the verification report of every place, from the CLI, including the server's memory
    report = json.loads(
        _cli(
            ["privacy", "verify-deletion", victim, "--api", base, "--api-key", auth["X-API-Key"], "--json"],
            env,
            ok=(0, 1),  # 1: something was still found (reported below)
        )
    )
    total = time.perf_counter() - t
    return {
        "api_seconds": round(api_seconds, 3),
        "end_to_end_seconds": round(total, 3),
        "api_verified": deleted["verified"],
        "events_removed": deleted["removed"].get("events"),
        "report_verified": report["verified"],
        "places_checked": len(report["places"]),
        "places_found": [p["place"] for p in report["places"] if p["found"]],
        "report": report["places"],
    }


def run() -> dict[str, Any]:
    keep = os.environ.get("SHELFWISE_BENCH_VAR")
    tmp = None if keep else tempfile.TemporaryDirectory(prefix="shelfwise-bench-serving-")
    var = Path(keep or tmp.name)  # type: ignore[union-attr]
    env = {
        **os.environ,
        "SHELFWISE_VAR_DIR": str(var),
        "SHELFWISE_RATE_LIMIT_PER_SECOND": "0",
        "SHELFWISE_DASHBOARD_ON_START": "false",
    }
    env.pop("SHELFWISE_DB_URL", None)
    figures: dict[str, Any] = {"load_before": [round(x, 2) for x in os.getloadavg()]}
    figures["prepare"] = _prepare(var, env)
    users = _customers()
    port = _port()
    server = _serve(var, env, port)
    try:
        key = (var / "api.key").read_text().strip()
        auth = {"X-API-Key": key}
        # a shopper's recommendations need a read key (issue 13): sent as a shop's back end sends it
        reader = json.loads(_cli(["keys", "create", "--role", "read", "--name", "bench", "--json"], env))
        read = {"X-API-Key": reader["key"]}

        def personal(line: str) -> dict[str, Any]:
            method, path = line.split(" ", 1)
            return {"method": method, "path": path, "headers": read}

        models = httpx.get(f"http://127.0.0.1:{port}/v1/admin/models", headers=auth, timeout=30).json()
        figures["active"] = models["active"]
        versions = [v["version"] for v in models["versions"]]

        def uncached(ks: range, scenario: str) -> list[Any]:
            # a distinct (user, k, scenario) per request: none is in either worker's cache yet;
            # k around 10, so bodies are the size of the cached ones
            path = "GET /v1/users/{}/recommendations?k={}&scenario={}"
            return [personal(path.format(u, k, scenario)) for k in ks for u in users]

        cached_users = users[:40]
        cached = [personal(f"GET /v1/users/{u}/recommendations?k=10") for u in cached_users]
        search = [f"GET /v1/search?q={w}&size=10" for w in WORDS]
        trivial = ["GET /healthz"]
        _load(port, cached, rate=None, seconds=2.0)  # warm both workers' caches (and code paths)
        _load(port, search + trivial, rate=None, seconds=1.0)

        # saturation in ROUNDS interleaved rounds: a burst of other work on this shared machine then
        # hits one round, not one endpoint; ratios are taken within a round, and their median kept
        rounds: list[dict[str, Any]] = []
        for r in range(ROUNDS):
            one: dict[str, Any] = {}
            half = SECONDS / 2
            one["trivial"] = _load_cpu(server.pid, port, trivial, seconds=half)
            scenario = ("store", "promotion", "home")[r % 3]  # requests no round has made
            one["recommend_uncached"] = _load_cpu(
                server.pid, port, uncached(range(8, 13), scenario), no_repeat=True, seconds=half
            )
            one["recommend_cached"] = _load_cpu(server.pid, port, cached, seconds=half)
            one["search"] = _load_cpu(server.pid, port, search, seconds=half)
            rounds.append(one)
        names = ("recommend_uncached", "recommend_cached", "search")
        ratios = {
            n: [round(one[n]["rps"] / (one["trivial"]["rps"] or 1.0), 3) for one in rounds] for n in names
        }
        sat = {  # per endpoint, its median round
            n: sorted((one[n] for one in rounds), key=lambda x: x["rps"])[ROUNDS // 2]
            for n in ("trivial", *names)
        }
        figures["saturation"] = sat
        figures["ratio_rounds"] = ratios
        cpu = {
            n: sorted(one[n]["server_cpu_ms_per_request"] for one in rounds)[ROUNDS // 2]
            for n in ("trivial", *names)
        }
        figures["server_cpu_ms_per_request"] = cpu
        # half the slowest endpoint's saturation: a rate every endpoint can hold, with headroom
        slowest = min(sat[name]["rps"] for name in ("recommend_uncached", "recommend_cached", "search"))
        rate = float(os.environ.get("SHELFWISE_BENCH_RATE", 0)) or max(20.0, round(slowest / 2, -1))
        figures["rate"] = rate
        at: dict[str, Any] = {}
        at["trivial"] = _load(port, trivial, rate=rate)
        at["recommend_uncached"] = _load(port, uncached(range(13, 18), "home"), rate=rate, no_repeat=True)
        at["recommend_cached"] = _load(port, cached, rate=rate)
        at["search"] = _load(port, search, rate=rate)
        figures["at_rate"] = at
        figures["ratio_to_trivial"] = {n: sorted(ratios[n])[ROUNDS // 2] for n in names}
        figures["events"] = _events_phase(port, var / "shelfwise.db", auth)
        fresh = uncached(range(13, 15), "store")
        mixed = [
            [fresh[i], cached[i % len(cached)], search[i % len(search)]][i % 3] for i in range(len(fresh))
        ]
        figures["rollback_under_load"] = _rollback_phase(port, auth, mixed, rate, versions, models["active"])
        figures["deletion"] = _deletion(port, auth, env, "17850")
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
        if tmp is not None:
            tmp.cleanup()
    figures["load_after"] = [round(x, 2) for x in os.getloadavg()]
    return {"name": "serving", "table": _table(figures), **figures}


def _table(f: dict[str, Any]) -> str:
    sat, at, ratio = f["saturation"], f["at_rate"], f["ratio_to_trivial"]
    rows = []
    cpu = f["server_cpu_ms_per_request"]
    for name in ("trivial", "recommend_cached", "recommend_uncached", "search"):
        s, a = sat[name], at[name]
        rows.append(
            f"| {name.replace('trivial', 'trivial (/healthz)')} | {s['rps']:,} | {ratio.get(name, 1.0):.2f} "
            f"| {cpu[name]} | {cpu['trivial'] / cpu[name]:.2f} "
            f"| {s['p50_ms']} | {s['p99_ms']} | {a['rps']:,} | {a['p50_ms']} | {a['p99_ms']} "
            f"| {s['non_2xx'] + a['non_2xx']} |"
        )
    ev, rb, de = f["events"], f["rollback_under_load"], f["deletion"]
    return "\n".join(
        [
            f"Loopback, {WORKERS} uvicorn workers (`shelfwise serve --workers {WORKERS}`, h11, "
            "rate limit off), "
            f"store built from Online Retail; active {f['active']}. Load generator: a separate process "
            f"(benchmarks/loadgen.py). Saturation: closed loop, {CONNECTIONS} connections, {ROUNDS} "
            f"interleaved rounds of {SECONDS / 2:.0f} s per endpoint; each ratio is the median of the "
            f"rounds' ratios ({', '.join(f'{n} {v}' for n, v in f['ratio_rounds'].items())}), the other "
            "saturation figures are each endpoint's median round. Server CPU ms/req: CPU time of the "
            "server's processes over requests served (median round); CPU ratio = trivial's over the "
            "endpoint's, the throughput ratio the server would reach were it alone on the machine. "
            f"At rate: open loop at **{f['rate']:.0f} req/s**, latency from each request's due time. "
            "Uncached: a distinct (user, k) per request, so every one misses the result cache; a known "
            "shopper with no live session is answered from the top list precomputed when the version "
            "was deployed, the others go through the model and the fallback chain. "
            f"Machine: {os.cpu_count()} CPUs, "
            f"load average {f['load_before'][0]} before, {f['load_after'][0]} after (shared machine).",
            "",
            "| endpoint | saturation req/s | ratio to trivial | server CPU ms/req | CPU ratio | p50 ms "
            "| p99 ms | at-rate req/s | p50 ms | p99 ms | non-2xx |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            *rows,
            "",
            f"Events into SQLite (group commit): batches of {EVENT_BATCH}: "
            f"**{ev['batch_events_per_s']:,} events/s** "
            f"({ev['batch_requests']['rps']} req/s, p99 {ev['batch_requests']['p99_ms']} ms); single-event "
            f"requests: **{ev['single_events_per_s']:,} req/s** (p99 {ev['single_requests']['p99_ms']} ms). "
            f"Acknowledged {ev['acknowledged']:,}, counted in the store afterwards {ev['stored']:,}: "
            f"**{ev['lost']} lost**.",
            "",
            f"Rollback during load: {rb['switches']} switches (activate {'/'} roll back) while "
            f"{rb['load']['requests']:,} mixed requests ran at {f['rate']:.0f} req/s: "
            f"**{rb['load']['non_2xx']} failed** (p99 {rb['load']['p99_ms']} ms); slowest rollback in the "
            f"server {rb['rollback_server_seconds_max']} s; admin calls failed: {rb['admin_failures']}.",
            "",
            f"Deletion end to end (API delete, then `shelfwise privacy verify-deletion --api`): "
            f"**{de['end_to_end_seconds']} s** (API {de['api_seconds']} s, "
            f"{de['events_removed']} events removed); "
            f"{de['places_checked']} places checked, verified: {de['report_verified']}"
            + (f", still found in {de['places_found']}" if de["places_found"] else "")
            + ".",
        ]
    )


if __name__ == "__main__":
    out = run()
    print(out["table"])
