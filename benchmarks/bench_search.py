"""Product search on the 20k-item Flipkart catalogue, side by side with rank_bm25 and SQLite FTS5.

Same documents (title + brand), same queries, one process, one query at a time:

* keyword QPS: shelfwise's BM25 (raw: analyse + score + top-100 over the merged field-weighted
  matrix; and the full ``engine.search`` with query understanding) vs ``rank_bm25.BM25Okapi`` vs
  SQLite FTS5 ``bm25()``, all measured in this run;
* quality on the graded Flipkart category set (``shelfwise.search.labelled``): nDCG@10, MRR@10,
  Recall@100 for every system and for shelfwise's dense, hybrid (alpha tuned by 2-fold
  cross-validation over queries), RRF and LambdaRank (5-fold cross-validation over queries) modes;
* hybrid latency p50/p99 (single query, k=10, warm model): every query's first time (its embedding
  computed) and again (its embedding from the LRU cache); query encoding alone on 1 and 2 torch
  threads; index build time with embeddings, vector memory;
* the generated typo set: share of typo queries whose top-5 equals the correct spelling's;
* Crowdflower (when ``../shared/data`` has it): bm25 / hybrid over its 9,913 products;
* a synthetic catalogue of ``SHELFWISE_BENCH_SEARCH_SCALE`` items (default 1,000,000; 0 skips it):
  build time, memory per item and p99 of BM25 and of BM25 + HNSW retrieval.

    python -m benchmarks.run search
    SHELFWISE_BENCH_SEARCH_SCALE=0 python -m benchmarks.run search    # without the 1M catalogue
"""

from __future__ import annotations

import os
import random
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from tqdm import tqdm

from shelfwise.data.schemas import Item
from shelfwise.search.documents import read_dataset, read_products, read_qrels, read_queries
from shelfwise.search.engine import SearchConfig, SearchEngine
from shelfwise.search.evaluate import evaluate_rankings
from shelfwise.search.labelled import flipkart_category_set

K = 100


def _timed_runs(search: Callable[[str], Sequence[str]], queries: dict[str, str]) -> tuple[dict, float, list]:
    runs: dict[str, list[str]] = {}
    latencies = []
    for qid, text in queries.items():
        started = time.perf_counter()
        runs[qid] = list(search(text))
        latencies.append(time.perf_counter() - started)
    total = sum(latencies)
    return runs, (len(queries) / total if total else float("inf")), latencies


def _rank_bm25(items: list[Item], tokenize: Callable[[str], list[str]]) -> Callable[[str], list[str]]:
    from rank_bm25 import BM25Okapi

    ids = [it.item_id for it in items]
    model = BM25Okapi([tokenize(f"{it.title or ''} {it.brand or ''}") or ["_"] for it in items])

    def search(q: str) -> list[str]:
        scores = model.get_scores(tokenize(q))
        top = np.argpartition(-scores, K)[:K]
        top = top[np.argsort(-scores[top])]
        return [ids[i] for i in top if scores[i] > 0]

    return search


def _fts5(items: list[Item]) -> Callable[[str], list[str]]:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE docs USING fts5(title, brand, tokenize='porter unicode61')")
    db.executemany(
        "INSERT INTO docs(rowid, title, brand) VALUES (?, ?, ?)",
        [(i, it.title or "", it.brand or "") for i, it in enumerate(items)],
    )
    ids = [it.item_id for it in items]

    def search(q: str) -> list[str]:
        words = [w for w in "".join(c if c.isalnum() else " " for c in q.lower()).split() if w]
        if not words:
            return []
        match = " OR ".join(f'"{w}"' for w in words)
        rows = db.execute(
            "SELECT rowid FROM docs WHERE docs MATCH ? ORDER BY bm25(docs, 3.0, 2.0) LIMIT ?", (match, K)
        ).fetchall()
        return [ids[r[0]] for r in rows]

    return search


def _typo(word: str, rng: random.Random) -> str:
    i = rng.randrange(1, len(word) - 1)
    kind = rng.choice(["drop", "swap", "double", "replace"])
    if kind == "drop":
        return word[:i] + word[i + 1 :]
    if kind == "swap":
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if kind == "double":
        return word[:i] + word[i] + word[i:]
    return word[:i] + rng.choice("aeiou") + word[i + 1 :]


def _typo_rate(engine: SearchEngine, items: list[Item], n: int = 300) -> dict[str, float]:
    rng = random.Random(11)
    same = corrected = total = 0
    for item in rng.sample(items, len(items)):
        words = [w for w in (item.title or "").lower().split() if w.isalpha()]
        if len(words) < 2 or len(words[1]) < 5:
            continue
        right = f"{words[0]} {words[1]}"
        typo = f"{words[0]} {_typo(words[1], rng)}"
        if typo == right:
            continue
        expected = engine.search(right, k=5, mode="bm25", facets=False)
        got = engine.search(typo, k=5, mode="bm25", facets=False)
        total += 1
        same += got.item_ids == expected.item_ids
        corrected += got.corrected is not None
        if total >= n:
            break
    return {
        "typo_queries": total,
        "same_top5": round(same / total, 3),
        "corrected": round(corrected / total, 3),
    }


def _metrics(runs: dict, qrels: dict, qps: float, min_grade: int) -> dict[str, Any]:
    out: dict[str, Any] = dict(evaluate_rankings(runs, qrels, min_grade=min_grade))
    out["qps"] = round(qps, 1)
    return out


def _crowdflower(encoder: Any) -> dict[str, Any] | None:
    root = os.environ.get("SHELFWISE_SHARED_DATA")
    from pathlib import Path

    base = Path(root) if root else Path(__file__).resolve().parents[2] / "shared" / "data"
    cf = base / "crowdflower_search"
    if not (cf / "qrels.txt").exists():
        return None
    items = read_products(cf / "products.jsonl.gz")
    queries, qrels = read_queries(cf / "queries.tsv"), read_qrels(cf / "qrels.txt")
    engine = SearchEngine.build(items, SearchConfig(dense=True), encoder=encoder)
    out = {}
    for mode in ("bm25", "dense", "hybrid", "rrf"):
        encoder.clear_cache()
        runs, qps, _ = _timed_runs(
            lambda q, m=mode: engine.search(q, k=K, mode=m, facets=False).item_ids, queries
        )
        out[mode] = _metrics(runs, qrels, qps, 1)
    return out


def _rss() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def run_scale(
    n: int, base: list[Item], vectors: np.ndarray, *, queries: list[str], encoder: Any
) -> dict[str, Any]:
    """A synthetic ``n``-item catalogue: titles recombined from real ones (a brand, the head of one
    title, the tail of another), vectors mixed from the real embeddings of those two titles plus
    noise (so no model runs over ``n`` texts). The engine is the real one (keyword + HNSW + query
    understanding without spelling); queries are real and embedded by the model, first time each.
    Reports build time, resident memory per item and single-query p99 of BM25 and of hybrid search."""
    import gc

    rng = np.random.default_rng(1)
    heads = [(it.title or "").split() for it in base]
    items = []
    a = rng.integers(0, len(base), n)
    b = rng.integers(0, len(base), n)
    for i in tqdm(range(n), desc=f"synthetic {n:,}", unit="item", mininterval=2):
        ha, hb = heads[a[i]], heads[b[i]]
        title = " ".join(ha[: max(1, len(ha) // 2)] + hb[len(hb) // 2 :])
        items.append(Item(item_id=f"s{i}", title=title, brand=base[a[i]].brand, price=base[b[i]].price))
    mixed = np.empty((n, vectors.shape[1]), dtype=np.float32)
    for start in range(0, n, 100_000):  # in chunks: no full-size temporaries
        sl = slice(start, min(start + 100_000, n))
        chunk = vectors[a[sl]] * 0.7 + vectors[b[sl]] * 0.3
        chunk += rng.normal(0, 0.02, chunk.shape).astype(np.float32)
        mixed[sl] = chunk / np.linalg.norm(chunk, axis=1, keepdims=True)
    gc.collect()
    rss: dict[str, int] = {"start": _rss()}
    marks: dict[str, float] = {}
    bar = tqdm(total=2, desc=f"index {n:,}", unit="stage")

    def progress(stage: str, done: int, total: int) -> None:
        marks[f"{stage} {'end' if done >= total else 'start'}"] = time.perf_counter()
        if done >= total:
            rss[stage] = _rss()
            bar.update()

    started = time.perf_counter()
    config = SearchConfig(dense=True, spelling=False, hnsw_m=12, hnsw_ef_construction=64)
    engine = SearchEngine.build(items, config, encoder=encoder, vectors=mixed, progress=progress)
    total_seconds = time.perf_counter() - started
    bar.close()
    gc.collect()
    rss["end"] = _rss()
    keyword_bytes = rss["keyword index"] - rss["start"]
    # the vectors were allocated before "start" and are now the index's: count them in
    vector_bytes = rss["vector index"] - rss["keyword index"] + mixed.nbytes
    kw_lat, hy_lat = [], []
    engine.search("warm up", k=10, mode="hybrid", facets=False)
    encoder.clear_cache()  # the 20k run embedded these queries already: each is new here
    for q in tqdm(queries, desc="queries", unit="query", leave=False):
        started = time.perf_counter()
        engine.search(q, k=10, mode="bm25", facets=False)
        kw_lat.append(time.perf_counter() - started)
        started = time.perf_counter()
        engine.search(q, k=10, mode="hybrid", facets=False)
        hy_lat.append(time.perf_counter() - started)
    return {
        "items": n,
        "build_seconds": round(total_seconds, 1),
        "keyword_build_seconds": round(marks["keyword index end"] - marks["keyword index start"], 1),
        "vector_build_seconds": round(marks["vector index end"] - marks["vector index start"], 1),
        "keyword_memory_bytes_per_item": round(keyword_bytes / n, 1),
        "vector_memory_bytes_per_item": round(vector_bytes / n, 1),
        "engine_memory_bytes_per_item": round((rss["end"] - rss["start"] + mixed.nbytes) / n, 1),
        "bm25_p99_ms": _percentiles(kw_lat)["p99"],
        "hybrid_p50_ms": _percentiles(hy_lat)["p50"],
        "hybrid_p99_ms": _percentiles(hy_lat)["p99"],
        "queries": len(queries),
        "note": "vectors mixed from real embeddings, HNSW M=12 ef_construction=64; "
        "query embeddings computed by the model",
    }


def _percentiles(seconds: Sequence[float]) -> dict[str, float]:
    ms = np.array(seconds) * 1000
    return {"p50": round(float(np.percentile(ms, 50)), 2), "p99": round(float(np.percentile(ms, 99)), 2)}


def _encode_latency(encoder: Any, texts: Sequence[str], threads: int) -> dict[str, float]:
    """Uncached single-query encoding on ``threads`` torch threads."""
    before = encoder.query_threads
    encoder.query_threads = threads
    try:
        encoder.encode_uncached("warm up")
        lat = []
        for text in texts:
            started = time.perf_counter()
            encoder.encode_uncached(text)
            lat.append(time.perf_counter() - started)
    finally:
        encoder.query_threads = before
    return _percentiles(lat)


def run() -> dict[str, Any]:
    from shelfwise.search.dense import Encoder
    from shelfwise.search.ltr import cross_validated_runs

    catalogue = read_dataset("flipkart")
    labelled = flipkart_category_set(catalogue, read_dataset("flipkart-1k"))
    queries, qrels = labelled.queries, labelled.qrels
    # QPS queries: the labelled ones plus WANDS's 480 real shopper queries
    from pathlib import Path

    wands = Path(__file__).resolve().parents[1] / "data" / "wands" / "query.csv"
    qps_queries = dict(queries)
    for line in wands.read_text().splitlines()[1:]:
        qid, _, rest = line.partition("\t")
        qps_queries[f"w{qid}"] = rest.split("\t")[0]

    encoder = Encoder()
    started = time.perf_counter()
    encoder.model  # noqa: B018 - model load is part of start-up, reported separately
    model_load = time.perf_counter() - started

    bar = tqdm(total=3, desc="build indexes", unit="stage")
    started = time.perf_counter()
    keyword_engine = SearchEngine.build(catalogue, SearchConfig(dense=False))
    keyword_build = time.perf_counter() - started
    bar.update()

    embed_bar = tqdm(desc="embeddings", unit="text", leave=False)
    stages: dict[str, float] = {}

    def progress(stage: str, done: int, total: int) -> None:
        stages.setdefault(f"{stage} start", time.perf_counter())
        stages[f"{stage} end"] = time.perf_counter()
        if stage == "embeddings":
            embed_bar.total = total
            embed_bar.update(done - embed_bar.n)

    started = time.perf_counter()
    engine = SearchEngine.build(catalogue, SearchConfig(dense=True), encoder=encoder, progress=progress)
    hybrid_build = time.perf_counter() - started
    embed_seconds = stages.get("embeddings end", started) - stages.get("keyword index end", started)
    unique_texts = embed_bar.total
    embed_bar.close()
    bar.update()
    rank_search = _rank_bm25(catalogue, engine.analyzer.tokens)
    fts_search = _fts5(catalogue)
    bar.update()
    bar.close()

    # --- keyword speed: same queries through every system ---
    ids = engine.item_ids_by_slot()

    def raw_bm25(text: str) -> list[str]:
        slots, _ = engine.keyword.top(engine.analyzer.tokens(text), K)
        return [ids[i] for i in slots]

    raw_bm25("warm up")
    engine.search("warm up", k=10, mode="bm25", facets=False)
    speed: dict[str, float] = {}
    _, speed["shelfwise_bm25_raw"], _ = _timed_runs(raw_bm25, qps_queries)
    _, speed["shelfwise_bm25_search"], _ = _timed_runs(
        lambda q: engine.search(q, k=K, mode="bm25", facets=False).item_ids, qps_queries
    )
    _, speed["sqlite_fts5"], _ = _timed_runs(fts_search, qps_queries)
    sample = dict(list(qps_queries.items())[:120])
    _, speed["rank_bm25"], _ = _timed_runs(rank_search, sample)

    # --- hybrid latency: every query the first time (embedding computed), then again (cached) ---
    engine.search("warm up", k=10, mode="hybrid", facets=False)
    encoder.clear_cache()
    _, _, cold = _timed_runs(
        lambda q: engine.search(q, k=10, mode="hybrid", facets=False).item_ids, qps_queries
    )
    _, _, warm = _timed_runs(
        lambda q: engine.search(q, k=10, mode="hybrid", facets=False).item_ids, qps_queries
    )
    texts = list(qps_queries.values())[:150]
    encode_ms = {f"{n}_thread": _encode_latency(encoder, texts, n) for n in (1, 2)}

    # --- quality on the labelled set (grade 2 counts as relevant for MRR/recall) ---
    quality: dict[str, dict[str, Any]] = {}
    for name, fn in (
        ("rank_bm25", rank_search),
        ("sqlite_fts5", fts_search),
        ("shelfwise_bm25", lambda q: engine.search(q, k=K, mode="bm25", facets=False).item_ids),
        ("shelfwise_dense", lambda q: engine.search(q, k=K, mode="dense", facets=False).item_ids),
        ("shelfwise_rrf", lambda q: engine.search(q, k=K, mode="rrf", facets=False).item_ids),
    ):
        encoder.clear_cache()  # QPS with each query embedded, as a first-time query is
        runs, qps, _ = _timed_runs(fn, queries)
        quality[name] = _metrics(runs, qrels, qps, 2)

    # hybrid: alpha tuned on one half of the queries, scored on the other, both ways; repeated over
    # ten random halvings and averaged, as 52 queries make one split noisy
    alphas = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
    cache: dict[float, dict[str, list[str]]] = {}
    for alpha in alphas:
        engine.config.alpha = alpha
        cache[alpha] = {
            q: engine.search(t, k=K, mode="hybrid", facets=False).item_ids for q, t in queries.items()
        }

    def ndcg(runs: dict[str, list[str]], qs: Sequence[str]) -> float:
        return evaluate_rankings({q: runs[q] for q in qs}, {q: qrels[q] for q in qs}, min_grade=2)["ndcg@10"]

    chosen: list[float] = []
    repeats: list[dict[str, float]] = []
    for seed in range(10):
        qids = sorted(queries)
        random.Random(seed).shuffle(qids)
        halves = [qids[::2], qids[1::2]]
        cv_runs: dict[str, list[str]] = {}
        for tune, test in (halves, halves[::-1]):
            best = max(alphas, key=lambda a: ndcg(cache[a], tune))
            chosen.append(best)
            cv_runs.update({q: cache[best][q] for q in test})
        repeats.append(evaluate_rankings(cv_runs, qrels, min_grade=2))
    engine.config.alpha = float(np.median(chosen))
    quality["shelfwise_hybrid"] = {
        m: round(float(np.mean([r[m] for r in repeats])), 4) for m in ("ndcg@10", "mrr@10", "recall@100")
    }
    quality["shelfwise_hybrid"]["ndcg@10_range"] = [
        min(r["ndcg@10"] for r in repeats),
        max(r["ndcg@10"] for r in repeats),
    ]
    quality["shelfwise_hybrid"]["qps"] = round(len(qps_queries) / sum(cold), 1)
    quality["shelfwise_hybrid"]["alpha_chosen"] = chosen
    per_alpha = {
        a: evaluate_rankings(cache[a], qrels, min_grade=2)["ndcg@10"] for a in alphas
    }  # for the record, not for the headline
    ltr_runs, ltr_qps, _ = cross_validated_runs(engine, queries, qrels, folds=5, k=K)
    quality["shelfwise_ltr"] = _metrics(ltr_runs, qrels, ltr_qps, 2)
    engine.ranker = None

    best_peer = max(quality["rank_bm25"]["ndcg@10"], quality["sqlite_fts5"]["ndcg@10"])
    typo = _typo_rate(keyword_engine, catalogue)
    assert engine.dense is not None
    vector_bytes = engine.dense.memory_bytes()
    crowdflower = _crowdflower(encoder)
    scale_n = int(os.environ.get("SHELFWISE_BENCH_SEARCH_SCALE", "1000000"))
    scale = (
        run_scale(
            scale_n,
            catalogue,
            engine.dense.vectors,
            queries=list(qps_queries.values())[:300],
            encoder=encoder,
        )
        if scale_n
        else None
    )

    figures = {
        "items": len(catalogue),
        "labelled_queries": len(queries),
        "qps_queries": len(qps_queries),
        "bm25_backend": engine.keyword.backend,
        "qps": {k: round(v, 1) for k, v in speed.items()},
        "bm25_speedup_vs_rank_bm25": round(speed["shelfwise_bm25_raw"] / speed["rank_bm25"], 1),
        "search_speedup_vs_rank_bm25": round(speed["shelfwise_bm25_search"] / speed["rank_bm25"], 1),
        "quality": quality,
        "hybrid_ndcg_vs_best_peer": round(quality["shelfwise_hybrid"]["ndcg@10"] / best_peer, 3),
        "ltr_ndcg_vs_best_peer": round(quality["shelfwise_ltr"]["ndcg@10"] / best_peer, 3),
        "hybrid_ndcg_by_alpha_all_queries": per_alpha,
        "hybrid_latency_ms": {"first_time": _percentiles(cold), "cached_embedding": _percentiles(warm)},
        "query_encoding_ms": encode_ms,
        "build_seconds": {
            "keyword_only": round(keyword_build, 1),
            "with_embeddings": round(hybrid_build, 1),
            "of_which_embeddings": round(embed_seconds, 1),
            "unique_texts_embedded": unique_texts,
            "model_load": round(model_load, 1),
        },
        "vector_index_bytes_per_item": round(vector_bytes / len(catalogue), 1),
        "typo_set": typo,
        "crowdflower": crowdflower,
        "scale": scale,
        "load_average": os.getloadavg(),
    }
    rows = [
        "| system | nDCG@10 | MRR@10 | Recall@100 | QPS (labelled queries) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, m in quality.items():
        rows.append(
            f"| {name} | {m['ndcg@10']:.4f} | {m['mrr@10']:.4f} | {m['recall@100']:.4f} | {m['qps']:,.1f} |"
        )
    lat = figures["hybrid_latency_ms"]
    rows += [
        "",
        f"Keyword QPS over {len(qps_queries)} queries (labelled + WANDS), 20k items, backend "
        f"{engine.keyword.backend}: shelfwise raw BM25 {speed['shelfwise_bm25_raw']:,.0f}, full search "
        f"{speed['shelfwise_bm25_search']:,.0f}, SQLite FTS5 {speed['sqlite_fts5']:,.0f}, rank_bm25 "
        f"{speed['rank_bm25']:,.1f} → **{figures['bm25_speedup_vs_rank_bm25']}×** rank_bm25 "
        f"(full search {figures['search_speedup_vs_rank_bm25']}×; target ≥ 50×).",
        f"Hybrid nDCG@10 / best peer = **{figures['hybrid_ndcg_vs_best_peer']}** (target ≥ 1.10; alpha "
        f"chosen on one half of the queries, scored on the other, mean of 10 random halvings, range "
        f"{quality['shelfwise_hybrid']['ndcg@10_range']}; alphas chosen {sorted(set(chosen))}); LambdaRank "
        f"(5-fold CV over queries) / best peer = {figures['ltr_ndcg_vs_best_peer']}.",
        f"Hybrid latency (k=10, one query at a time, {len(qps_queries)} queries): first time (query "
        f"embedded) p50 {lat['first_time']['p50']} ms, **p99 {lat['first_time']['p99']} ms** (target ≤ 20); "
        f"embedding cached p50 {lat['cached_embedding']['p50']} ms, p99 {lat['cached_embedding']['p99']} ms. "
        f"Query encoding alone p50/p99: 1 torch thread {encode_ms['1_thread']['p50']}/"
        f"{encode_ms['1_thread']['p99']} ms, 2 threads {encode_ms['2_thread']['p50']}/"
        f"{encode_ms['2_thread']['p99']} ms.",
        f"Build: keyword {keyword_build:.1f} s; **with embeddings {hybrid_build:.1f} s** (target ≤ 90; "
        f"{embed_seconds:.1f} s embedding {unique_texts:,} distinct texts) + model load {model_load:.1f} s. "
        f"Vector index {figures['vector_index_bytes_per_item']} bytes/item.",
        f"Typo set ({typo['typo_queries']} queries): same top-5 as the right spelling "
        f"{typo['same_top5']:.1%}.",
        f"Machine load average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())} "
        "(2 cores, shared with other work).",
    ]
    if scale:
        rows.append(
            f"Synthetic {scale['items']:,}-item catalogue ({scale['note']}): "
            f"build {scale['build_seconds']} s "
            f"(keyword {scale['keyword_build_seconds']} s, {scale['keyword_memory_bytes_per_item']} B/item; "
            f"HNSW {scale['vector_build_seconds']} s, {scale['vector_memory_bytes_per_item']} B/item; whole "
            f"engine {scale['engine_memory_bytes_per_item']} B/item); p99 BM25 {scale['bm25_p99_ms']} ms, "
            f"hybrid p50 {scale['hybrid_p50_ms']} ms, p99 {scale['hybrid_p99_ms']} ms "
            f"({scale['queries']} queries, first time each)."
        )
    if crowdflower:
        rows += ["", "Crowdflower (9,913 products, 261 queries, grade ≥ 1 relevant):", ""]
        rows += ["| mode | nDCG@10 | MRR@10 | Recall@100 | QPS |", "| --- | ---: | ---: | ---: | ---: |"]
        for mode, m in crowdflower.items():
            cells = f"{m['ndcg@10']:.4f} | {m['mrr@10']:.4f} | {m['recall@100']:.4f} | {m['qps']:,.1f}"
            rows.append(f"| {mode} | {cells} |")
    return {"name": "search", "table": "\n".join(rows), **figures}
