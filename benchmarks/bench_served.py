"""What is served is what is measured (issue 14): relevance and latency through HTTP.

For each labelled set (the Flipkart category set over the 20k catalogue; Crowdflower's graded
judgments over its 9,913 products):

1. the catalogue goes into a fresh store with ``shelfwise ingest items`` (as a shop loads it);
2. ``shelfwise index build --mode hybrid --queries … --qrels …`` builds, evaluates in-process and
   activates a search index version (the offline figure of that version);
3. ``shelfwise serve`` serves it; every labelled query is sent to ``GET /v1/search?size=10`` one at a
   time and nDCG@10 is computed from the answers (the served figure), with each answer's
   ``model_version`` checked to be that index version;
4. single-query latency (client side, keep-alive, one query at a time: p50/p99) and saturation
   throughput of search next to the trivial endpoint (``/healthz``) in interleaved rounds.

Then, on Online Retail, the recommendation side: ``models train --model hybrid`` (the two-stage
recommender ``make demo`` serves), p50/p99 of uncached personal recommendations at a fixed rate, and
saturation throughput next to the trivial endpoint.

    flock /tmp/shelfwise-bench.lock .venv/bin/python -m benchmarks.run served

Writes ``benchmarks/results/served.json``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks.bench_search_transfer import labelled_sets
from benchmarks.bench_serving import DATA, _customers, _load_cpu, _port
from benchmarks.bench_serving import _serve as serve
from shelfwise.data.schemas import Item
from shelfwise.search.evaluate import evaluate_rankings

ROOT = Path(__file__).resolve().parents[1]
ROUNDS = 3
WINDOW = float(os.environ.get("SHELFWISE_BENCH_WINDOW", "3"))
WORKERS = 2


def _env(var: Path, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "SHELFWISE_VAR_DIR": str(var),
        "SHELFWISE_RATE_LIMIT_PER_SECOND": "0",
        "SHELFWISE_DASHBOARD_ON_START": "false",
        "HF_HUB_OFFLINE": "1",
        **extra,
    }
    env.pop("SHELFWISE_DB_URL", None)
    return env


def _cli(args: list[str], env: Mapping[str, str]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "shelfwise.cli.main", *args, "--json"],
        cwd=ROOT,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=7200,
    )
    if done.returncode:
        raise RuntimeError(f"shelfwise {' '.join(args)} failed: {done.stderr[-2000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _serve(env: Mapping[str, str], port: int) -> subprocess.Popen[str]:
    return serve(Path(env["SHELFWISE_VAR_DIR"]), dict(env), port, timeout=1800)


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()


def _percentiles(ms: Sequence[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {"p50_ms": round(float(np.percentile(a, 50)), 2), "p99_ms": round(float(np.percentile(a, 99)), 2)}


def _write_set(directory: Path, data: Mapping[str, Any]) -> tuple[Path, Path, Path]:
    items_path, queries_path, qrels_path = (
        directory / "items.jsonl",
        directory / "queries.tsv",
        directory / "qrels.txt",
    )
    with items_path.open("w", encoding="utf-8") as out:
        for it in data["items"]:
            assert isinstance(it, Item)
            row = {
                "item_id": it.item_id,
                "title": it.title,
                "description": it.description,
                "category": it.category,
                "brand": it.brand,
                "price": it.price,
                "attributes": it.attributes,
                "available": it.available,
            }
            out.write(json.dumps({k: v for k, v in row.items() if v not in (None, {})}) + "\n")
    queries_path.write_text("".join(f"{q}\t{t}\n" for q, t in data["queries"].items()))
    qrels_path.write_text(
        "".join(f"{q} 0 {i} {g}\n" for q, grades in data["qrels"].items() for i, g in grades.items())
    )
    return items_path, queries_path, qrels_path


def served_search(name: str, data: Mapping[str, Any], top: Path) -> dict[str, Any]:
    var = top / name
    var.mkdir(parents=True)
    items_path, queries_path, qrels_path = _write_set(var, data)
    env = _env(var, SHELFWISE_SEARCH_MODE="auto")
    out: dict[str, Any] = {"items": len(data["items"]), "queries": len(data["queries"])}
    t = time.perf_counter()
    ingest = _cli(["ingest", "items", str(items_path), "--format", "jsonl-items"], env)
    out["ingest"] = {k: ingest.get(k) for k in ("accepted", "quarantined", "pii_scrubbed")}
    t = time.perf_counter()
    built = _cli(
        ["index", "build", "--mode", "hybrid", "--queries", str(queries_path), "--qrels", str(qrels_path)],
        env,
    )
    out["index_build_seconds"] = round(time.perf_counter() - t, 1)
    out["index_version"] = built["version"]
    out["offline"] = built["metrics"]
    port = _port()
    t = time.perf_counter()
    server = _serve(env, port)
    out["serve_ready_seconds"] = round(time.perf_counter() - t, 1)
    try:
        runs: dict[str, list[str]] = {}
        latencies: list[float] = []
        versions: set[str] = set()
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            for qid, text in data["queries"].items():
                if qid not in data["qrels"]:
                    continue
                started = time.perf_counter()
                r = client.get(f"/v1/search?q={urllib.parse.quote(text)}&size=10")
                latencies.append((time.perf_counter() - started) * 1000)
                r.raise_for_status()
                body = r.json()
                versions.add(str(body.get("index_version") or body.get("model_version")))
                runs[qid] = [h["item_id"] for h in body["hits"]]
        served = dict(evaluate_rankings(runs, data["qrels"], min_grade=data["min_grade"]))
        out["served"] = {"ndcg@10": round(float(served["ndcg@10"]), 4), "queries": int(served["queries"])}
        out["served_versions"] = sorted(versions)
        out["served_minus_offline"] = round(out["served"]["ndcg@10"] - float(out["offline"]["ndcg@10"]), 4)
        out["within_0_002"] = abs(out["served_minus_offline"]) <= 0.002
        out["single_query"] = _percentiles(latencies)
        words = [
            f"GET /v1/search?q={urllib.parse.quote(t)}&size=10" for t in list(data["queries"].values())[:200]
        ]
        rounds = []
        for _ in range(ROUNDS):
            trivial = _load_cpu(server.pid, port, ["GET /healthz"], seconds=WINDOW)
            search = _load_cpu(server.pid, port, words, seconds=WINDOW)
            rounds.append(
                {
                    "trivial_rps": trivial["rps"],
                    "search_rps": search["rps"],
                    "search_p99_ms": search["p99_ms"],
                    "ratio": search["rps"] / max(trivial["rps"], 1e-9),
                }
            )
        out["saturation_rounds"] = rounds
        out["search_over_trivial"] = round(float(np.median([r["ratio"] for r in rounds])), 3)
    finally:
        _stop(server)
    return out


def served_recommendations(top: Path) -> dict[str, Any]:
    var = top / "online_retail"
    var.mkdir(parents=True)
    env = _env(var)
    out: dict[str, Any] = {}
    _cli(["ingest", "events", str(DATA), "--format", "online-retail"], env)
    t = time.perf_counter()
    trained = _cli(["models", "train", "--model", "hybrid", "--force"], env)
    out["train_seconds"] = round(time.perf_counter() - t, 1)
    out["model_version"] = trained.get("version")
    out["metrics"] = trained.get("metrics")
    port = _port()
    server = _serve(env, port)
    try:
        key = (var / "api.key").read_text().strip()
        auth = {"X-API-Key": key}
        users = _customers()

        def personal(path: str) -> dict[str, Any]:
            return {"method": "GET", "path": path, "headers": auth}

        rounds = []
        for r in range(ROUNDS):
            uncached = [personal(f"/v1/users/{u}/recommendations?k={8 + r}") for u in users]
            trivial = _load_cpu(server.pid, port, ["GET /healthz"], seconds=WINDOW)
            recs = _load_cpu(server.pid, port, uncached, seconds=WINDOW, no_repeat=True)
            rounds.append(
                {
                    "trivial_rps": trivial["rps"],
                    "recs_rps": recs["rps"],
                    "ratio": recs["rps"] / max(trivial["rps"], 1e-9),
                }
            )
        out["saturation_rounds"] = rounds
        out["recommend_uncached_over_trivial"] = round(float(np.median([x["ratio"] for x in rounds])), 3)
        # latency at a rate every round held with room to spare: single requests, not a queue
        latencies = []
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30, headers=auth) as client:
            for u in users[:1500]:
                started = time.perf_counter()
                r = client.get(f"/v1/users/{u}/recommendations?k=20")
                latencies.append((time.perf_counter() - started) * 1000)
                r.raise_for_status()
                served_by = r.json().get("model_version")
        out["single_request_uncached"] = _percentiles(latencies)
        out["served_by"] = served_by
    finally:
        _stop(server)
    return out


def run() -> dict[str, Any]:
    figures: dict[str, Any] = {"load_before": [round(x, 2) for x in os.getloadavg()]}
    with tempfile.TemporaryDirectory(prefix="shelfwise-bench-served-") as tmp:
        top = Path(tmp)
        figures["search"] = {name: served_search(name, data, top) for name, data in labelled_sets().items()}
        figures["recommendations"] = served_recommendations(top)
    figures["load_after"] = [round(x, 2) for x in os.getloadavg()]
    return {"name": "served", "table": table(figures), **figures}


def table(f: Mapping[str, Any]) -> str:
    rows = [
        "| set | items | index version | offline nDCG@10 | served nDCG@10 (HTTP) | difference | "
        "single-query p50 / p99 ms | search ÷ /healthz throughput |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, s in f["search"].items():
        rows.append(
            f"| {name} | {s['items']:,} | `{s['index_version']}` | {s['offline']['ndcg@10']:.4f} | "
            f"{s['served']['ndcg@10']:.4f} | {s['served_minus_offline']:+.4f} | "
            f"{s['single_query']['p50_ms']} / {s['single_query']['p99_ms']} | {s['search_over_trivial']} |"
        )
    r = f["recommendations"]
    rows.append("")
    rows.append(
        f"Recommendations (Online Retail, `{r['served_by']}`): uncached single-request p50 "
        f"{r['single_request_uncached']['p50_ms']} ms / p99 {r['single_request_uncached']['p99_ms']} ms; "
        f"uncached ÷ /healthz throughput {r['recommend_uncached_over_trivial']}; load "
        f"{f['load_before']} → {f['load_after']}."
    )
    return "\n".join(rows)
