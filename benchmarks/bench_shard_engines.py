"""Where a sharded index's shards are held: in the serving process (thread pool, ``threads``) or one
Ray actor process per shard (``ray``): the per-query cost of crossing processes (issue 19 item 4).

1. ``SHELFWISE_SHARD_ENGINE_ITEMS`` (100k) synthetic items of ``bench_shards`` (titles from the
   Flipkart word frequencies, ``DIM``-d reduced vectors) in ``SHELFWISE_SHARD_ENGINE_SHARDS`` (3)
   shards, built once; then per engine: ``load_shards`` and, one query at a time, keyword top-10
   (each shard's best 10, merged), keyword match (every match: what search's keyword stage asks
   for, so filters, totals and facets see all of them) and dense top-10 with a live-items mask (as
   the engine always passes one). p50/p99 ms, and CPU seconds of this process plus (``ray``) the
   actors' processes, per query.
2. End to end: ``SearchEngine.search`` over flipkart-1k in 3 shards (random unit vectors, so no
   model is needed), ``bm25`` and ``hybrid`` (keyword + dense + fusion + feedback: several
   scatter-gathers per query), p50/p99 ms.

The timed part holds ``/tmp/shelfwise-bench.lock`` (as ``flock`` would) and records the load
average before and after. A local Ray cluster is started in this process (two CPUs, as
``SHELFWISE_SHARD_ENGINE=ray`` without ``SHELFWISE_RAY_ADDRESS`` does); its actors are ended at the end.

    python -m benchmarks.run shard_engines
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.bench_shards import DIM, HNSW, SyntheticPart, Vocabulary, _queries

N_ITEMS = int(os.environ.get("SHELFWISE_SHARD_ENGINE_ITEMS", "100000"))
SHARDS = int(os.environ.get("SHELFWISE_SHARD_ENGINE_SHARDS", "3"))
LOCK = "/tmp/shelfwise-bench.lock"
ENGINES = ("threads", "ray")


@contextlib.contextmanager
def _bench_lock() -> Iterator[None]:
    with open(LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _cpu_s(pids: list[int]) -> float:
    import psutil

    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
    return total


def _timed(fn: Callable[[Any], Any], inputs: list[Any], pids: list[int]) -> dict[str, float]:
    for x in inputs[:20]:  # warm up (numba, caches, Ray's connections)
        fn(x)
    ms = []
    cpu0, proc0 = _cpu_s(pids), time.process_time()
    for x in inputs:
        t0 = time.perf_counter()
        fn(x)
        ms.append((time.perf_counter() - t0) * 1000)
    cpu = (_cpu_s(pids) - cpu0) + (time.process_time() - proc0)
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "cpu_ms_per_query": round(cpu * 1000 / len(inputs), 3),
    }


def _synthetic(work: Path) -> tuple[dict[str, float], Any, list[str], np.ndarray]:
    from shelfwise.features.text import AnalyzerConfig
    from shelfwise.search.shards import assign, build_shards

    weights = {"title": 3.0, "brand": 1.0, "category": 1.5}
    vocab = Vocabulary()
    owner = assign((f"sku-{i:09d}" for i in range(N_ITEMS)), SHARDS)
    parts = [SyntheticPart(vocab, np.flatnonzero(owner == s), DIM) for s in range(SHARDS)]
    build_shards(
        work, parts, n_items=N_ITEMS, weights=weights, analyzer=AnalyzerConfig(product_terms=True), hnsw=HNSW
    )
    texts, qvecs = _queries(vocab, N_ITEMS)
    return weights, AnalyzerConfig(product_terms=True), texts, qvecs


def _flipkart(work: Path) -> tuple[Path, np.ndarray, list[str]]:
    from shelfwise.search.documents import read_dataset
    from shelfwise.search.engine import SearchConfig
    from shelfwise.search.shards import build_sharded

    items = read_dataset("flipkart-1k")
    v = np.random.default_rng(0).standard_normal((len(items), 384)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    config = SearchConfig(calibration_probes=0, min_similarity=-1.0)
    build_sharded(items, work, shards=3, config=config, vectors=v, workers=1)
    rng = np.random.default_rng(3)
    queries = []
    for i in rng.choice(len(items), 300):
        words = (items[int(i)].title or "").split()
        queries.append(" ".join(words[: 2 + int(i) % 2]) or "shirt")
    return work, v, queries


def _synthetic_row(
    engine: str,
    directory: Path,
    weights: dict[str, float],
    analyzer: Any,
    tokens: list[Any],
    qvecs: np.ndarray,
) -> dict[str, Any]:
    from shelfwise.search.shards import load_shards

    def load() -> Any:
        return load_shards(directory, weights=weights, analyzer=analyzer, k1=1.2, b=0.75, engine=engine)

    t0 = time.perf_counter()
    keyword, dense = load()
    load_s = time.perf_counter() - t0
    assert dense is not None
    pids = keyword.shard_backend.pids() if engine == "ray" else []  # type: ignore[attr-defined]
    again_s = None
    if engine == "ray":  # as a second process's load: the actors exist and are found by name
        t0 = time.perf_counter()
        load()
        again_s = round(time.perf_counter() - t0, 2)
    alive = np.ones(len(keyword.layout.shard), dtype=bool)
    matches = [len(keyword.match(t)[0]) for t in tokens]
    return {
        "engine": engine,
        "items": len(alive),
        "shards": keyword.shard_backend.shards,
        "load_s": round(load_s, 2),
        "load_existing_s": again_s,
        "mean_matches": round(float(np.mean(matches)), 1),
        "keyword_top10": _timed(lambda t: keyword.top(t, 10), tokens, pids),
        "keyword_match": _timed(keyword.match, tokens, pids),
        "dense_top10": _timed(lambda q: dense.search(q, 10, alive), list(qvecs), pids),
        "load_average": round(os.getloadavg()[0], 2),
    }


def _search_rows(
    engine: str, directory: Path, vectors: np.ndarray, queries: list[str]
) -> list[dict[str, Any]]:
    from shelfwise.search.engine import SearchEngine

    served = SearchEngine.load(directory, shard_engine=engine)
    pids = served.keyword.shard_backend.pids() if engine == "ray" else []  # type: ignore[attr-defined]
    n, rows = len(vectors), []
    for mode in ("bm25", "hybrid"):

        def one(i: int, mode: str = mode) -> Any:
            return served.search(queries[i], k=10, mode=mode, vector=vectors[(7 * i) % n])

        row = _timed(one, list(range(len(queries))), pids)
        rows.append({"engine": engine, "items": n, "shards": 3, "search": mode, **row})
        rows[-1]["load_average"] = round(os.getloadavg()[0], 2)
    return rows


def run() -> dict[str, Any]:
    from shelfwise.search.analysis import make_analyzer

    root = Path(tempfile.mkdtemp(prefix="bench-shard-engines-"))
    rows: list[dict[str, Any]] = []
    try:
        t0 = time.perf_counter()
        weights, analyzer_cfg, texts, qvecs = _synthetic(root / "synthetic")
        build_s = time.perf_counter() - t0
        flip_dir, flip_vecs, flip_queries = _flipkart(root / "flipkart")
        analyzer = make_analyzer(analyzer_cfg)
        tokens = [analyzer.tokens(t) for t in texts]
        with _bench_lock():
            load_before = os.getloadavg()[0]
            for engine in ENGINES:
                rows.append(_synthetic_row(engine, root / "synthetic", weights, analyzer, tokens, qvecs))
            for engine in ENGINES:
                rows += _search_rows(engine, flip_dir, flip_vecs, flip_queries)
            load_after = os.getloadavg()[0]
    finally:
        with contextlib.suppress(Exception):
            from shelfwise.search.shard_actors import stop_actors

            stop_actors()
        shutil.rmtree(root, ignore_errors=True)
    return {
        "name": "shard_engines",
        "build_s": round(build_s, 1),
        "dim": DIM,
        "hnsw_m_efc_efs": list(HNSW),
        "load_average_before_after": [round(load_before, 2), round(load_after, 2)],
        "rows": rows,
        "table": _table(rows),
    }


def _table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| engine | items | shards | query | p50 ms | p99 ms | CPU ms/query (all processes) | load avg |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "search" in r:
            lines.append(
                f"| {r['engine']} | {r['items']:,} | {r['shards']} | SearchEngine.search {r['search']} | "
                f"{r['p50_ms']} | {r['p99_ms']} | {r['cpu_ms_per_query']} | {r['load_average']} |"
            )
            continue
        for q in ("keyword_top10", "keyword_match", "dense_top10"):
            x = r[q]
            lines.append(
                f"| {r['engine']} | {r['items']:,} | {r['shards']} | {q} | {x['p50_ms']} | {x['p99_ms']} | "
                f"{x['cpu_ms_per_query']} | {r['load_average']} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=1, default=str))
