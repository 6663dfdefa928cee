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

Quick mode (``SHELFWISE_SERVED_QUICK=1``, about 6-8 minutes on a quiet 2-core machine): only the two
latency acceptance figures of issue 14, through HTTP against ``shelfwise serve`` as above, written to
``benchmarks/results/served_latency.json``:

- hybrid search on the 20k-item Flipkart catalogue (``index build --mode hybrid``, no labelled-set
  evaluation): single-query p50/p99 over every Flipkart labelled query and every WANDS query, each
  distinct text sent once (so the query-vector cache never answers), one at a time, keep-alive;
- hybrid recommendations on Online Retail (``models train --model hybrid``): uncached single requests,
  one per shopper (no result cache hit is possible), at ``k=20`` (served from the version's
  precomputed top-50 list when the shopper has one, as ``make demo`` serves them) and at ``k=60``
  (beyond the list: the model scores the shopper), with the answers' ``source`` counted.

Relevance only (``SHELFWISE_SERVED_RELEVANCE_ONLY=1``): steps 1-3 above on each labelled set, the
served nDCG@10 through HTTP against the offline figure of the same index version, and nothing timed
(no latency, no load generator, no recommendations), so it needs no quiet machine and no lock; writes
``benchmarks/results/served_relevance.json``.

    SHELFWISE_SERVED_RELEVANCE_ONLY=1 .venv/bin/python -m benchmarks.run served

The item embeddings of the catalogue are kept between runs in ``SHELFWISE_BENCH_CACHE`` (default
``/tmp/shelfwise-bench-cache``; keyed by each item's text, as ``shelfwise serve`` keeps them), so a
second run does not embed 20k items again; the JSON says how many were embedded in this run.

    SHELFWISE_SERVED_QUICK=1 flock /tmp/shelfwise-bench.lock .venv/bin/python -m benchmarks.run served
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


def served_search(name: str, data: Mapping[str, Any], top: Path, *, timed: bool = True) -> dict[str, Any]:
    """The set's offline and served nDCG@10 (and, when ``timed``, latency and throughput)."""
    var = top / name
    var.mkdir(parents=True)
    if not timed:  # the embeddings cache of quick mode (keyed by each item's text), as serve keeps it
        (CACHE / "embeddings").mkdir(parents=True, exist_ok=True)
        (var / "embeddings").symlink_to(CACHE / "embeddings", target_is_directory=True)
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
        if not timed:
            return out
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


QUICK = os.environ.get("SHELFWISE_SERVED_QUICK", "").lower() not in ("", "0", "false", "no")
CACHE = Path(os.environ.get("SHELFWISE_BENCH_CACHE", "/tmp/shelfwise-bench-cache"))
WANDS = ROOT / "data" / "wands" / "query.csv"


SETTLED: dict[int, float] = {}  # server pid -> seconds waited after /readyz for its start-up work


def _settle(
    proc: subprocess.Popen[str], *, idle_cpu: float = 0.1, window: float = 2.0, limit: float = 180
) -> None:
    """Wait until the server and its workers are idle (under ``idle_cpu`` CPU seconds in a ``window``)
    after /readyz: background start-up work (the second worker's loading, heap settling, index checks)
    would otherwise land inside the measured requests. Latency is measured in steady state; the
    seconds waited are reported (``settle_seconds``)."""
    import psutil

    started = time.perf_counter()

    def cpu() -> float:
        total = 0.0
        root = psutil.Process(proc.pid)
        for p in [root, *root.children(recursive=True)]:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total

    while time.perf_counter() - started < limit:
        before = cpu()
        time.sleep(window)
        if cpu() - before < idle_cpu:
            break
    SETTLED[proc.pid] = round(time.perf_counter() - started, 1)


def _serve_logged(env: Mapping[str, str], port: int) -> subprocess.Popen[str]:
    """``shelfwise serve`` (``WORKERS`` workers) whose stderr goes to a file in its var dir, never to
    a pipe nobody reads (a full pipe would stall the server on its next log line), once ready."""
    var = Path(env["SHELFWISE_VAR_DIR"])
    log = (var / "serve.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "shelfwise.cli.main", "serve", "--port", str(port), "--workers", str(WORKERS)],
        cwd=ROOT,
        env=dict(env),
        stdout=subprocess.DEVNULL,
        stderr=log,
        text=True,
    )
    deadline = time.time() + 1800
    while time.time() < deadline:
        try:
            if all(
                httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200 for _ in range(6)
            ):
                _settle(proc)
                return proc
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"serve exited: {(var / 'serve.log').read_text()[-2000:]}")
        time.sleep(0.5)
    proc.terminate()
    raise RuntimeError("server not ready in 1800 s")


def _quick_queries(data: Mapping[str, Any]) -> list[str]:
    """Every Flipkart labelled query and every WANDS query, each distinct text once, in that order."""
    texts = list(data["queries"].values())
    if WANDS.exists():
        texts += [line.split("\t")[1] for line in WANDS.read_text().splitlines()[1:] if "\t" in line]
    return list(dict.fromkeys(t.strip() for t in texts if t.strip()))


def quick_search(data: Mapping[str, Any], top: Path) -> dict[str, Any]:
    var = top / "flipkart"
    var.mkdir(parents=True)
    (CACHE / "embeddings").mkdir(parents=True, exist_ok=True)
    (var / "embeddings").symlink_to(CACHE / "embeddings", target_is_directory=True)
    items_path, _, _ = _write_set(var, data)
    env = _env(var, SHELFWISE_SEARCH_MODE="auto")
    out: dict[str, Any] = {"items": len(data["items"])}
    t = time.perf_counter()
    _cli(["ingest", "items", str(items_path), "--format", "jsonl-items"], env)
    out["ingest_seconds"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    built = _cli(["index", "build", "--mode", "hybrid"], env)
    out["index_build_seconds"] = round(time.perf_counter() - t, 1)
    out["index_version"] = built["version"]
    out["mode"] = built.get("mode")
    out["embedded_this_run"] = built.get("embedded")
    port = _port()
    t = time.perf_counter()
    server = _serve_logged(env, port)
    out["serve_ready_seconds"] = round(time.perf_counter() - t, 1)
    out["settle_seconds"] = SETTLED.get(server.pid)
    try:
        texts = _quick_queries(data)
        latencies: list[float] = []
        took: list[float] = []  # the engine's own time in each answer (the rest: HTTP, the route)
        modes: set[str] = set()
        versions: set[str] = set()
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            for warm in ("warm up", "blue shirt", "running shoes", "watch", "phone cover"):
                client.get(f"/v1/search?q={urllib.parse.quote(warm)}&size=10").raise_for_status()
            for text in texts:
                started = time.perf_counter()
                r = client.get(f"/v1/search?q={urllib.parse.quote(text)}&size=10")
                latencies.append((time.perf_counter() - started) * 1000)
                r.raise_for_status()
                body = r.json()
                took.append(float(body.get("took_ms", 0.0)))
                modes.add(str(body.get("mode")))
                versions.add(str(body.get("model_version")))
        out["queries"] = len(texts)
        out["served_modes"] = sorted(modes)
        out["served_versions"] = sorted(versions)
        out["single_query"] = _percentiles(latencies)
        out["engine_took"] = _percentiles(took)
    finally:
        _stop(server)
    return out


def quick_recommendations(top: Path) -> dict[str, Any]:
    var = top / "online_retail"
    var.mkdir(parents=True)
    env = _env(var)
    out: dict[str, Any] = {}
    t = time.perf_counter()
    _cli(["ingest", "events", str(DATA), "--format", "online-retail"], env)
    out["ingest_seconds"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    trained = _cli(["models", "train", "--model", "hybrid", "--force"], env)
    out["train_seconds"] = round(time.perf_counter() - t, 1)
    out["model_version"] = trained.get("version")
    port = _port()
    t = time.perf_counter()
    server = _serve_logged(env, port)
    out["serve_ready_seconds"] = round(time.perf_counter() - t, 1)
    out["settle_seconds"] = SETTLED.get(server.pid)
    try:
        key = (var / "api.key").read_text().strip()
        users = _customers()
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}", timeout=30, headers={"X-API-Key": key}
        ) as client:
            for u in users[-5:]:  # warm-up: shoppers not measured below
                client.get(f"/v1/users/{u}/recommendations?k=20").raise_for_status()
            for k, chosen in ((20, users[:1500]), (60, users[1500:2500])):
                latencies: list[float] = []
                sources: dict[str, int] = {}
                served_by = set()
                for u in chosen:
                    started = time.perf_counter()
                    r = client.get(f"/v1/users/{u}/recommendations?k={k}")
                    latencies.append((time.perf_counter() - started) * 1000)
                    r.raise_for_status()
                    body = r.json()
                    assert not body["cached"], "a first request per shopper cannot be cached"
                    sources[body["source"]] = sources.get(body["source"], 0) + 1
                    served_by.add(body["model_version"])
                out[f"uncached_k{k}"] = {
                    "requests": len(chosen),
                    **_percentiles(latencies),
                    "sources": sources,
                    "served_by": sorted(served_by),
                }
    finally:
        _stop(server)
    return out


def run_quick() -> dict[str, Any]:
    figures: dict[str, Any] = {"quick": True, "workers": WORKERS}
    figures["load_before"] = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="shelfwise-bench-served-quick-") as tmp:
        top = Path(tmp)
        figures["search_flipkart"] = quick_search(labelled_sets()["flipkart"], top)
        figures["load_middle"] = [round(x, 2) for x in os.getloadavg()]
        figures["recommendations_online_retail"] = quick_recommendations(top)
    figures["load_after"] = [round(x, 2) for x in os.getloadavg()]
    return {"name": "served_latency", "table": quick_table(figures), **figures}


def quick_table(f: Mapping[str, Any]) -> str:
    s, r = f["search_flipkart"], f["recommendations_online_retail"]
    q = s["single_query"]
    rows = [
        "| served through HTTP | requests | p50 ms | p99 ms | target p99 |",
        "|---|---|---|---|---|",
        f"| hybrid search, Flipkart {s['items']:,} items (`{s['index_version']}`, mode "
        f"{', '.join(s['served_modes'])}) | {s['queries']} distinct queries | {q['p50_ms']} | {q['p99_ms']} "
        "| ≤ 20 |",
    ]
    for k in (20, 60):
        x = r[f"uncached_k{k}"]
        where = ", ".join(f"{n} {c}" for n, c in sorted(x["sources"].items()))
        rows.append(
            f"| hybrid recommendations, Online Retail, uncached, k={k} (`{r['model_version']}`; {where}) | "
            f"{x['requests']} shoppers | {x['p50_ms']} | {x['p99_ms']} | ≤ 15 |"
        )
    rows.append("")
    rows.append(
        f"Quick mode of `bench_served` ({f['workers']} workers); load average {f['load_before']} → "
        f"{f['load_middle']} → {f['load_after']}; Flipkart index built in {s['index_build_seconds']} s "
        f"({s['embedded_this_run']} items embedded this run), hybrid trained in {r['train_seconds']} s."
    )
    return "\n".join(rows)


RELEVANCE_ONLY = os.environ.get("SHELFWISE_SERVED_RELEVANCE_ONLY", "").lower() not in ("", "0", "false", "no")


def run_relevance() -> dict[str, Any]:
    figures: dict[str, Any] = {"load_before": [round(x, 2) for x in os.getloadavg()]}
    with tempfile.TemporaryDirectory(prefix="shelfwise-bench-served-relevance-") as tmp:
        top = Path(tmp)
        figures["search"] = {
            name: served_search(name, data, top, timed=False) for name, data in labelled_sets().items()
        }
    figures["load_after"] = [round(x, 2) for x in os.getloadavg()]
    rows = [
        "| set | items | index version | offline nDCG@10 | served nDCG@10 (HTTP) | difference | ±0.002 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, s in figures["search"].items():
        rows.append(
            f"| {name} | {s['items']:,} | `{s['index_version']}` | {s['offline']['ndcg@10']:.4f} | "
            f"{s['served']['ndcg@10']:.4f} | {s['served_minus_offline']:+.4f} | {s['within_0_002']} |"
        )
    rows += [
        "",
        "Relevance part of `bench_served` (nothing timed): `index build --mode hybrid` evaluates "
        "the version offline, `serve` answers every labelled query through `GET /v1/search?size=10`.",
    ]
    return {"name": "served_relevance", "table": "\n".join(rows), **figures}


def run() -> dict[str, Any]:
    if QUICK:
        return run_quick()
    if RELEVANCE_ONLY:
        return run_relevance()
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
