"""Serving, a quick local check (the full load benchmark with 2 workers is a later task): requests/s
and latency of recommendations (uncached and cached) and search over loopback, rollback time, and
deletion end to end with its verification.

Needs a store with events: ``SHELFWISE_BENCH_DB`` (default ``sqlite:///var/demo.db``, filled by
``shelfwise ingest events data/online_retail/online_retail.csv.gz --format online-retail --db …``).
Starts ``shelfwise serve`` on a free port (training on first start when no version is active).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DB = os.environ.get("SHELFWISE_BENCH_DB", f"sqlite:///{ROOT / 'var' / 'demo.db'}")
SECONDS = float(os.environ.get("SHELFWISE_BENCH_SECONDS", "8"))
THREADS = 8


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _load(base: str, paths: list[str], seconds: float) -> dict[str, float]:
    """Closed-loop load from THREADS client threads for ``seconds``; latency percentiles in ms."""
    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds

    def worker(offset: int) -> tuple[list[float], int]:
        lat, bad, i = [], 0, offset
        with httpx.Client(base_url=base, timeout=10) as c:
            while time.perf_counter() < stop:
                t = time.perf_counter()
                r = c.get(paths[i % len(paths)])
                lat.append(time.perf_counter() - t)
                bad += r.status_code != 200
                i += THREADS
        return lat, bad

    started = time.perf_counter()
    with ThreadPoolExecutor(THREADS) as pool:
        for lat, bad in pool.map(worker, range(THREADS)):
            latencies += lat
            errors += bad
    wall = time.perf_counter() - started
    ms = np.array(latencies) * 1000
    return {
        "requests": len(latencies),
        "rps": round(len(latencies) / wall, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "errors": errors,
    }


def run() -> dict[str, Any]:
    port = _port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "SHELFWISE_RATE_LIMIT_PER_SECOND": "0"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "shelfwise.cli.main", "serve", "--db", DB, "--port", str(port)],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 900
        while time.time() < deadline:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None:
                raise RuntimeError(f"serve exited: {proc.stderr.read() if proc.stderr else ''}")
            time.sleep(0.5)
        key = (ROOT / "var" / "api.key").read_text().strip()
        auth = {"X-API-Key": key}
        with httpx.Client(base_url=base, timeout=60) as c:
            models = c.get("/v1/admin/models", headers=auth).json()
            users = [f"bench-{i}" for i in range(20)]
            # known customers of Online Retail: personalised answers
            known = [str(u) for u in range(12346, 18287, 7)][:800]
            figures: dict[str, Any] = {"active": models["active"]}
            figures["healthz"] = _load(base, ["/healthz"], SECONDS)
            figures["recommend_uncached"] = _load(
                base, [f"/v1/users/{u}/recommendations?k=10" for u in known], SECONDS
            )
            figures["recommend_cached"] = _load(
                base, [f"/v1/users/{u}/recommendations?k=10" for u in users], SECONDS
            )
            words = ["heart", "bag", "christmas", "light holder", "cake", "vintage", "red", "mug"]
            figures["search"] = _load(base, [f"/v1/search?q={w}&size=10" for w in words], SECONDS)
            versions = [v["version"] for v in models["versions"]]
            if len(versions) >= 2:
                other = next(v for v in versions if v != models["active"])
                c.post(f"/v1/admin/models/{other}/activate", params={"force": True}, headers=auth)
                t = time.perf_counter()
                back = c.post("/v1/admin/rollback", headers=auth).json()
                figures["rollback"] = {
                    "server_seconds": back["seconds"],
                    "http_seconds": round(time.perf_counter() - t, 4),
                }
            victim = "17850"
            c.get(f"/v1/users/{victim}/recommendations")
            c.post("/v1/events", json={"type": "view", "user_id": victim, "item_id": "71053"}, headers=auth)
            t = time.perf_counter()
            deleted = c.delete(f"/v1/users/{victim}", headers=auth).json()
            figures["deletion"] = {
                "http_seconds": round(time.perf_counter() - t, 4),
                "verified": deleted["verified"],
                "places": len(deleted["places"]),
                "events_removed": deleted["removed"].get("events"),
            }
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    rows = [
        f"| {name} | {f['rps']:,} | {f['p50_ms']} | {f['p99_ms']} | {f['errors']} |"
        for name, f in figures.items()
        if isinstance(f, dict) and "rps" in f
    ]
    table = "\n".join(
        [
            f"Quick local check, 1 uvicorn worker, {THREADS} client threads in one Python process, "
            f"{SECONDS:.0f} s each, shared 2-core machine; active {figures['active']}.",
            "",
            "| endpoint | req/s | p50 ms | p99 ms | errors |",
            "|---|---:|---:|---:|---:|",
            *rows,
            "",
            f"rollback: {figures.get('rollback')}; deletion end to end: {figures['deletion']}",
        ]
    )
    return {"name": "serving", "table": table, **figures}


if __name__ == "__main__":
    out = run()
    print(out["table"])
