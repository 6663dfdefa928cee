"""Search relevance that transfers: leave-one-dataset-out over every labelled set, with keyword peers.

For each labelled set (the Flipkart category set over the 20k catalogue; Crowdflower's graded
judgments over its 9,913 products) this runs, over the same documents and queries:

* peers: SQLite FTS5 (``porter unicode61``, ``bm25()`` with our field weights as column weights) and
  tantivy (``en_stem`` tokenizer, the same fields boosted by the same weights);
* shelfwise BM25 (``mode="bm25"``) and the hybrid with the shipped defaults (``SearchConfig()``);
* the hybrid with fusion settings chosen on the *other* set (out-of-sample) and on this set
  (in-sample), from a small grid (keyword share ``alpha``, fixed vs adaptive per-query fusion);
* the LambdaRank re-ranker trained on the other set's judgments (out-of-sample);
* our BM25 with the earlier per-field sum (``scoring="fields"``) beside the BM25F default;
* the hybrid with the encoder adapted to the set's own catalogue at build time (no labels:
  ``shelfwise.search.adapt``), with the recipe chosen on Crowdflower (in-sample there, out-of-sample
  on Flipkart).

Item embeddings of the packaged model are kept in an ``EmbeddingCache`` (``SHELFWISE_BENCH_CACHE``,
default ``var/bench-embeddings``) between runs: they are the same vectors the encoder would make,
and no figure here times them. Adapted encoders always embed afresh (their time is reported).

nDCG@10 is the headline; the ratio is to the best of FTS5 and tantivy. Then, on the 20k Flipkart
catalogue: single-query p50/p99 of the full keyword path (query understanding, spelling, facets)
and of the hybrid (each query embedded the first time), and the keyword QPS ratio to tantivy
measured in the same run over the same queries. Run timed work under the bench lock:

    flock /tmp/shelfwise-bench.lock .venv/bin/python -m benchmarks.run search_transfer
"""

from __future__ import annotations

import itertools
import os
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from shelfwise.data.schemas import Item
from shelfwise.search.adapt import AdaptConfig
from shelfwise.search.documents import document_fields, read_dataset, read_products, read_qrels, read_queries
from shelfwise.search.engine import SearchConfig, SearchEngine
from shelfwise.search.evaluate import evaluate_rankings, ndcg_at
from shelfwise.search.fusion import query_class
from shelfwise.search.keyword import DEFAULT_WEIGHTS
from shelfwise.search.labelled import flipkart_category_set

K = 100
TERM_FEEDBACK = 5
FIELDS = tuple(DEFAULT_WEIGHTS)
# term feedback: the keyword side widened by words of the first pass's best items (0: off; the
# number of words, weight and items otherwise as in ``SearchConfig``)
# One keyword share for every query (``class_alpha`` empty). "fixed" fusion is not in the grid: with
# the per-query rules off it equals "adaptive" wherever the catalogue trusts the semantic side fully
# (probe agreement >= trusted_agreement, as on both labelled sets).
GRID: list[dict[str, Any]] = [
    {"fusion": "adaptive", "alpha": alpha, "term_feedback": terms, "class_alpha": {}}
    for alpha, terms in itertools.product(
        (0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6), (0, TERM_FEEDBACK)
    )
]
CLASSES = ("model", "short", "medium", "long")
MIN_CLASS_QUERIES = 10  # a class with fewer queries on the tuning sets keeps the global share


def _shared() -> Path:
    root = os.environ.get("SHELFWISE_SHARED_DATA")
    return Path(root) if root else Path(__file__).resolve().parents[2] / "shared" / "data"


def labelled_sets() -> dict[str, dict[str, Any]]:
    """name -> items, queries, qrels, min_grade (grade counted relevant by MRR/recall)."""
    catalogue = read_dataset("flipkart")
    fk = flipkart_category_set(catalogue, read_dataset("flipkart-1k"))
    out: dict[str, dict[str, Any]] = {
        "flipkart": {"items": catalogue, "queries": fk.queries, "qrels": fk.qrels, "min_grade": 2}
    }
    cf = _shared() / "crowdflower_search"
    if (cf / "qrels.txt").exists():
        out["crowdflower"] = {
            "items": read_products(cf / "products.jsonl.gz"),
            "queries": read_queries(cf / "queries.tsv"),
            "qrels": read_qrels(cf / "qrels.txt"),
            "min_grade": 1,
        }
    return out


def _words(text: str) -> list[str]:
    return [w for w in "".join(c if c.isalnum() else " " for c in text.lower()).split() if w]


def fts5_peer(items: Sequence[Item]) -> Callable[[str], list[str]]:
    db = sqlite3.connect(":memory:")
    db.execute(f"CREATE VIRTUAL TABLE docs USING fts5({', '.join(FIELDS)}, tokenize='porter unicode61')")
    rows = []
    for i, it in enumerate(items):
        fields = document_fields(it)
        rows.append((i, *(fields[f] for f in FIELDS)))
    db.executemany(f"INSERT INTO docs(rowid, {', '.join(FIELDS)}) VALUES (?{', ?' * len(FIELDS)})", rows)
    ids = [it.item_id for it in items]
    weights = ", ".join(str(DEFAULT_WEIGHTS[f]) for f in FIELDS)

    def search(q: str) -> list[str]:
        words = _words(q)
        if not words:
            return []
        match = " OR ".join(f'"{w}"' for w in words)
        sql = f"SELECT rowid FROM docs WHERE docs MATCH ? ORDER BY bm25(docs, {weights}) LIMIT ?"
        return [ids[r[0]] for r in db.execute(sql, (match, K)).fetchall()]

    return search


def tantivy_peer(items: Sequence[Item]) -> Callable[[str], list[str]]:
    import tantivy

    builder = tantivy.SchemaBuilder()
    for f in FIELDS:
        builder.add_text_field(f, stored=False, tokenizer_name="en_stem")
    builder.add_integer_field("slot", stored=True, indexed=False, fast=True)
    schema = builder.build()
    index = tantivy.Index(schema)
    writer = index.writer(heap_size=100_000_000, num_threads=1)
    for i, it in enumerate(items):
        fields = document_fields(it)
        writer.add_document(tantivy.Document(slot=i, **{f: fields[f] for f in FIELDS}))
    writer.commit()
    writer.wait_merging_threads()
    index.reload()
    searcher = index.searcher()
    ids = [it.item_id for it in items]
    boosts = {f: float(DEFAULT_WEIGHTS[f]) for f in FIELDS}

    def search(q: str) -> list[str]:
        words = _words(q)
        if not words:
            return []
        query = index.parse_query(" ".join(words), list(FIELDS), field_boosts=boosts)
        hits = searcher.search(query, K).hits
        return [ids[searcher.doc(addr)["slot"][0]] for _, addr in hits]

    return search


def _runs(search: Callable[[str], Sequence[str]], queries: Mapping[str, str]) -> dict[str, list[str]]:
    return {q: list(search(t)) for q, t in queries.items()}


def _per_query_ndcg(runs: Mapping[str, Sequence[str]], data: Mapping[str, Any]) -> dict[str, float]:
    """nDCG@10 of each query that has a relevant product (the queries ``evaluate_rankings`` counts)."""
    out = {}
    for q, ranked in runs.items():
        grades = data["qrels"].get(q, {})
        if any(g >= data["min_grade"] for g in grades.values()):
            out[q] = ndcg_at(ranked, grades, 10)
    return out


def query_classes(engine: SearchEngine, queries: Mapping[str, str]) -> dict[str, str]:
    out = {}
    for q, text in queries.items():
        parsed = engine.understanding.parse(text)
        out[q] = query_class(engine._query_tokens(parsed), len(parsed.text.split()))
    return out


def fit_class_fusion(
    per_query: Mapping[str, Sequence[Mapping[str, float]]], classes: Mapping[str, Mapping[str, str]]
) -> tuple[int, dict[str, float]]:
    """The grid setting with the best mean nDCG@10 over the given sets (each set weighing the same),
    and a keyword share per query class with at least ``MIN_CLASS_QUERIES`` queries, chosen alike
    among the settings that share the best one's term feedback."""
    names = list(per_query)

    def mean(i: int, cls: str | None) -> float:
        values = []
        for n in names:
            got = [v for q, v in per_query[n][i].items() if cls is None or classes[n][q] == cls]
            if got:
                values.append(float(np.mean(got)))
        return float(np.mean(values)) if values else -1.0

    best = max(range(len(GRID)), key=lambda i: mean(i, None))
    same = [i for i in range(len(GRID)) if GRID[i]["term_feedback"] == GRID[best]["term_feedback"]]
    shares = {}
    for cls in CLASSES:
        count = sum(1 for n in names for q in per_query[n][best] if classes[n][q] == cls)
        if count >= MIN_CLASS_QUERIES:
            shares[cls] = float(GRID[max(same, key=lambda i: mean(i, cls))]["alpha"])
    return best, shares


def _ndcg(runs: Mapping[str, Sequence[str]], data: Mapping[str, Any]) -> dict[str, float]:
    m = evaluate_rankings(runs, data["qrels"], min_grade=data["min_grade"])
    return {k: round(float(v), 4) for k, v in m.items()}


def _engine_runs(engine: SearchEngine, queries: Mapping[str, str], mode: str, **cfg: Any) -> dict:
    before = engine.config.model_dump()
    for key, value in cfg.items():
        setattr(engine.config, key, value)
    try:
        return {q: engine.search(t, k=K, mode=mode, facets=False).item_ids for q, t in queries.items()}
    finally:
        for key in cfg:
            setattr(engine.config, key, before[key])


# the adaptation recipe, chosen on Crowdflower only (see the note in the README table)
ADAPT = AdaptConfig()
ADAPT_CHOSEN_ON = "crowdflower"
# adapting takes ~25 min per set on the shared 2-core machine: opt in with SHELFWISE_BENCH_ADAPT=1
ADAPT_RUN = os.environ.get("SHELFWISE_BENCH_ADAPT") == "1"


def _base_vectors(name: str, items: Sequence[Item], encoder: Any) -> np.ndarray:
    from shelfwise.search.dense import DIM
    from shelfwise.search.documents import embedding_text
    from shelfwise.search.embedding_cache import EmbeddingCache

    root = Path(os.environ.get("SHELFWISE_BENCH_CACHE", "var/bench-embeddings")) / name
    cache = EmbeddingCache(root, f"all-MiniLM-L6-v2/{DIM}")
    return cache.vectors([embedding_text(it) for it in items], encoder.encode)


def _percentiles(seconds: Sequence[float]) -> dict[str, float]:
    ms = np.array(seconds) * 1000
    return {"p50": round(float(np.percentile(ms, 50)), 3), "p99": round(float(np.percentile(ms, 99)), 3)}


def _timed(search: Callable[[str], Any], texts: Sequence[str], repeat: int = 1) -> list[float]:
    out = []
    for _ in range(repeat):
        for text in texts:
            started = time.perf_counter()
            search(text)
            out.append(time.perf_counter() - started)
    return out


def speed(engine: SearchEngine, items: Sequence[Item], texts: Sequence[str]) -> dict[str, Any]:
    """Single-query latency and QPS over ``texts``: full keyword path, hybrid, tantivy, FTS5."""
    tv, fts = tantivy_peer(items), fts5_peer(items)
    kw_full = lambda q: engine.search(q, k=10, mode="bm25", facets=True)  # noqa: E731
    kw_nofacet = lambda q: engine.search(q, k=10, mode="bm25", facets=False)  # noqa: E731
    for fn in (kw_full, kw_nofacet, tv, fts):
        for q in texts[:20]:
            fn(q)  # warm: numba kernels, caches of the peers' own
    timings: dict[str, list[float]] = {}
    # interleave the systems round by round so machine noise hits them alike; the parsed-query cache
    # is emptied before each round, so every query is understood (spelling included) from scratch
    for _ in range(3):
        for name, fn in (
            ("keyword_full", kw_full),
            ("keyword_no_facets", kw_nofacet),
            ("tantivy", tv),
            ("sqlite_fts5", fts),
        ):
            engine.understanding.clear_cache()
            timings.setdefault(name, []).extend(_timed(fn, texts))
    assert engine.encoder is not None
    engine.search("warm up", k=10, mode="hybrid", facets=False)
    engine.encoder.clear_cache()
    engine.understanding.clear_cache()
    hybrid = _timed(lambda q: engine.search(q, k=10, mode="hybrid", facets=True), texts)
    qps = {name: round(len(t) / sum(t), 1) for name, t in timings.items()}
    return {
        "queries": len(texts),
        "items": len(items),
        "latency_ms": {
            **{n: _percentiles(t) for n, t in timings.items()},
            "hybrid_first_time": _percentiles(hybrid),
        },
        "qps": qps,
        "keyword_full_qps_vs_tantivy": round(qps["keyword_full"] / qps["tantivy"], 3),
        "keyword_no_facets_qps_vs_tantivy": round(qps["keyword_no_facets"] / qps["tantivy"], 3),
    }


def run() -> dict[str, Any]:
    from shelfwise.search.dense import Encoder
    from shelfwise.search.ltr import LambdaRanker

    sets = labelled_sets()
    encoder = Encoder()
    engines: dict[str, SearchEngine] = {}
    adapted_engines: dict[str, SearchEngine] = {}
    results: dict[str, dict[str, Any]] = {}
    grid_scores: dict[str, list[float]] = {}
    grid_per_query: dict[str, list[dict[str, float]]] = {}
    classes: dict[str, dict[str, str]] = {}
    for name, data in tqdm(sets.items(), desc="labelled sets", unit="set"):
        vectors = _base_vectors(name, data["items"], encoder)
        engine = SearchEngine.build(data["items"], SearchConfig(), encoder=encoder, vectors=vectors)
        engines[name] = engine
        q = data["queries"]
        fields = SearchEngine.build(data["items"], SearchConfig(dense=False, scoring="fields"))
        adapted = (
            SearchEngine.build(data["items"], SearchConfig(adapt=ADAPT), encoder=encoder)
            if ADAPT_RUN
            else None
        )
        row: dict[str, Any] = {
            "items": len(data["items"]),
            "queries": len(q),
            "sqlite_fts5": _ndcg(_runs(fts5_peer(data["items"]), q), data),
            "tantivy": _ndcg(_runs(tantivy_peer(data["items"]), q), data),
            "shelfwise_bm25": _ndcg(_engine_runs(engine, q, "bm25"), data),
            "shelfwise_bm25_per_field_sum": _ndcg(_engine_runs(fields, q, "bm25"), data),
            "hybrid_shipped_defaults": _ndcg(_engine_runs(engine, q, "hybrid"), data),
            "dense_only": _ndcg(_engine_runs(engine, q, "dense"), data),
        }
        if adapted is not None:
            row["hybrid_adapted_encoder"] = {
                **_ndcg(_engine_runs(adapted, q, "hybrid"), data),
                "sample": "in" if name == ADAPT_CHOSEN_ON else "out",
                "recipe_chosen_on": ADAPT_CHOSEN_ON,
                "adapt": adapted.adapt_report,
            }
            row["dense_only_adapted_encoder"] = _ndcg(_engine_runs(adapted, q, "dense"), data)
            adapted_engines[name] = adapted
        grid_per_query[name] = [
            _per_query_ndcg(_engine_runs(engine, q, "hybrid", **cfg), data) for cfg in GRID
        ]
        grid_scores[name] = [round(float(np.mean(list(p.values()))), 4) for p in grid_per_query[name]]
        classes[name] = query_classes(engine, q)
        results[name] = row
    names = list(sets)
    for name in names:
        data, row, engine = sets[name], results[name], engines[name]
        others = [o for o in names if o != name]
        best_here = int(np.argmax(grid_scores[name]))
        row["hybrid_in_sample"] = {"settings": GRID[best_here], "ndcg@10": grid_scores[name][best_here]}
        if others:
            pooled = np.mean([grid_scores[o] for o in others], axis=0)
            chosen = int(np.argmax(pooled))
            row["hybrid_out_of_sample"] = {
                "settings": GRID[chosen],
                "chosen_on": others,
                **_ndcg(_engine_runs(engine, data["queries"], "hybrid", **GRID[chosen]), data),
            }
            best, shares = fit_class_fusion({o: grid_per_query[o] for o in others}, classes)
            settings = {**GRID[best], "class_alpha": shares}
            row["hybrid_per_class_out_of_sample"] = {
                "settings": settings,
                "chosen_on": others,
                **_ndcg(_engine_runs(engine, data["queries"], "hybrid", **settings), data),
            }
            ranker = LambdaRanker()
            for o in others:  # trained on the other set(s), applied here unchanged
                ranker.fit(engines[o], sets[o]["queries"], sets[o]["qrels"])
            engine.ranker = ranker
            row["ltr_out_of_sample"] = {
                "trained_on": others,
                **_ndcg(_engine_runs(engine, data["queries"], "ltr"), data),
            }
            engine.ranker = None
        best_peer = max(row["sqlite_fts5"]["ndcg@10"], row["tantivy"]["ndcg@10"])
        row["best_peer_ndcg@10"] = best_peer
        for key in (
            "shelfwise_bm25",
            "shelfwise_bm25_per_field_sum",
            "hybrid_shipped_defaults",
            "hybrid_adapted_encoder",
            "hybrid_in_sample",
            "hybrid_out_of_sample",
            "hybrid_per_class_out_of_sample",
            "ltr_out_of_sample",
        ):
            if key in row:
                row[key]["vs_best_peer"] = round(row[key]["ndcg@10"] / best_peer, 3)
        row["hybrid_shipped_vs_own_bm25"] = round(
            row["hybrid_shipped_defaults"]["ndcg@10"] / row["shelfwise_bm25"]["ndcg@10"], 3
        )
        if "hybrid_adapted_encoder" in row:
            row["hybrid_adapted_vs_own_bm25"] = round(
                row["hybrid_adapted_encoder"]["ndcg@10"] / row["shelfwise_bm25"]["ndcg@10"], 3
            )
    fk = sets["flipkart"]
    texts = list(fk["queries"].values())
    wands = Path(__file__).resolve().parents[1] / "data" / "wands" / "query.csv"
    if wands.exists():
        texts += [line.split("\t")[1] for line in wands.read_text().splitlines()[1:] if "\t" in line]
    # SHELFWISE_BENCH_SPEED=0: relevance only (no timing, so it may run outside the bench lock)
    timed = os.environ.get("SHELFWISE_BENCH_SPEED", "1") != "0"
    timing = speed(engines["flipkart"], fk["items"], texts) if timed else None
    adapted_fk = adapted_engines.get("flipkart")
    if timing is not None and adapted_fk is not None and adapted_fk.encoder is not None:
        # the adapted encoder is the same architecture with its own weights: time it alike
        adapted_fk.search("warm up", k=10, mode="hybrid", facets=False)
        adapted_fk.encoder.clear_cache()
        adapted_fk.understanding.clear_cache()
        timing["latency_ms"]["hybrid_adapted_first_time"] = _percentiles(
            _timed(lambda q: adapted_fk.search(q, k=10, mode="hybrid", facets=True), texts)
        )
    best, shares = fit_class_fusion(grid_per_query, classes)
    figures = {
        "sets": results,
        "class_fusion_refit_on_all_sets": {**GRID[best], "class_alpha": shares},
        "query_classes": {n: {c: list(v.values()).count(c) for c in CLASSES} for n, v in classes.items()},
        "grid": GRID,
        "grid_ndcg@10": grid_scores,
        "speed": timing,
        "load_average": os.getloadavg(),
    }
    return {"name": "search_transfer", "table": table(figures), **figures}


def table(f: Mapping[str, Any]) -> str:
    rows = [
        "| set | FTS5 | tantivy | own BM25 (per-field sum, before) | own BM25F (default) | hybrid, shipped "
        "defaults | hybrid, fusion tuned on the other set (out-of-sample) | hybrid, fusion tuned here "
        "(in-sample) | hybrid, one share per query class chosen on the other set (out-of-sample) | hybrid, "
        "encoder adapted to the catalogue | LambdaRank trained on the other set |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in f["sets"].items():

        def cell(key: str, r: Mapping[str, Any] = r) -> str:
            v = r.get(key)
            return "–" if v is None else f"{v['ndcg@10']:.4f} ({v['vs_best_peer']:.3f}×)"

        adapted = r.get("hybrid_adapted_encoder")
        sample = f" ({adapted['sample']}-sample)" if adapted else ""
        rows.append(
            f"| {name} ({r['items']:,} items, {r['queries']} queries) | {r['sqlite_fts5']['ndcg@10']:.4f} | "
            f"{r['tantivy']['ndcg@10']:.4f} | {cell('shelfwise_bm25_per_field_sum')} | "
            f"{cell('shelfwise_bm25')} | {cell('hybrid_shipped_defaults')} | "
            f"{cell('hybrid_out_of_sample')} | {cell('hybrid_in_sample')} | "
            f"{cell('hybrid_per_class_out_of_sample')} | "
            f"{cell('hybrid_adapted_encoder')}{sample} | "
            f"{cell('ltr_out_of_sample')} |"
        )
    s = f["speed"]
    if s is None:
        rows += ["", "Speed: not measured in this run (relevance only, SHELFWISE_BENCH_SPEED=0)."]
        return "\n".join(rows)
    lat = s["latency_ms"]
    rows += [
        "",
        "nDCG@10 (ratio to the best of FTS5 and tantivy). Shipped defaults: `SearchConfig()`, a keyword "
        "share per query class (model numbers, short, medium; other queries the global share): the "
        "per-class procedure won the leave-one-set-out comparison (its out-of-sample column against the "
        "one-share column), then was refitted on both sets, so the shipped row is in-sample on both "
        f"(refit here: {f['class_fusion_refit_on_all_sets']}). Query classes: {f['query_classes']}. "
        "Adapted encoder (only with "
        "SHELFWISE_BENCH_ADAPT=1): `SearchConfig(adapt=AdaptConfig())`, the recipe chosen on Crowdflower "
        "only (out-of-sample on Flipkart)"
        + "".join(
            f"; {n}: {r['hybrid_adapted_encoder']['adapt']['pairs']:,} pairs, "
            f"{r['hybrid_adapted_encoder']['adapt']['steps']} steps, "
            f"{r['hybrid_adapted_encoder']['adapt']['seconds']} s to adapt, dense-only nDCG@10 "
            f"{r['dense_only']['ndcg@10']:.4f} → {r['dense_only_adapted_encoder']['ndcg@10']:.4f}"
            for n, r in f["sets"].items()
            if "hybrid_adapted_encoder" in r
        )
        + ".",
        "",
        f"Speed on {s['items']:,} Flipkart items, {s['queries']} queries one at a time, k=10, same run: "
        f"keyword full path (query understanding, spelling, facets) {s['qps']['keyword_full']:,.0f} QPS, "
        f"p50 {lat['keyword_full']['p50']} ms, p99 **{lat['keyword_full']['p99']} ms**; without facets "
        f"{s['qps']['keyword_no_facets']:,.0f} QPS; tantivy {s['qps']['tantivy']:,.0f} QPS "
        f"(p99 {lat['tantivy']['p99']} ms); FTS5 {s['qps']['sqlite_fts5']:,.0f} QPS → keyword full path "
        f"**{s['keyword_full_qps_vs_tantivy']}×** tantivy ({s['keyword_no_facets_qps_vs_tantivy']}× "
        f"without facets). Hybrid, each query embedded the first time: p50 "
        f"{lat['hybrid_first_time']['p50']} ms, p99 **{lat['hybrid_first_time']['p99']} ms**"
        + (
            f"; with the adapted encoder p50 {lat['hybrid_adapted_first_time']['p50']} ms, p99 "
            f"**{lat['hybrid_adapted_first_time']['p99']} ms**."
            if "hybrid_adapted_first_time" in lat
            else "."
        ),
    ]
    return "\n".join(rows)
