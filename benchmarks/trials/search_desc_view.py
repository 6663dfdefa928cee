# ruff: noqa
# Trial (not part of make bench): an item's semantic vector as the normalised mean of two views,
# the shipped embedding text (title | brand | category leaf) and title + the description's start.
# usage: PYTHONPATH=src:. HF_HUB_OFFLINE=1 python benchmarks/trials/search_desc_view.py crowdflower flipkart
# 2026-12-04 (nDCG@10; weight of the description view; hybrid = shipped defaults):
#   crowdflower (7,526 of 9,913 items have a description) dense 0.7636 / 0.7637 / 0.7671 / 0.7701 / 0.7687
#   at 0 / 0.25 / 0.5 / 0.75 / 1.0; hybrid 0.7898 / 0.7916 / 0.7897 / 0.7873 / 0.7873 (grid best <= 0.7941)
#   flipkart: no item has a description, so nothing changes (hybrid 0.7853)
#   Not adopted: the description lifts dense-only a little and the hybrid not at all.
import json, sys, time
from pathlib import Path

import numpy as np

from benchmarks import bench_search_transfer as bst
from shelfwise.search.dense import Encoder
from shelfwise.search.documents import embedding_text
from shelfwise.search.embedding_cache import EmbeddingCache
from shelfwise.search.engine import SearchConfig, SearchEngine

CHARS = 300
WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5)


def desc_text(it) -> str:
    d = (it.description or "").strip()
    return embedding_text(it) + (" | " + d[:CHARS] if d else "")


sets = bst.labelled_sets()
enc = Encoder()
out = {}
for name in sys.argv[1:]:
    data = sets[name]
    items = data["items"]
    base = bst._base_vectors(name, items, enc)
    t = time.process_time()
    cache = EmbeddingCache(Path("var/bench-embeddings") / name, f"all-MiniLM-L6-v2/desc{CHARS}")
    dv = cache.vectors([desc_text(it) for it in items], enc.encode)
    has = np.array([bool((it.description or "").strip()) for it in items])
    print(
        name,
        "desc view",
        dv.shape,
        "with description",
        int(has.sum()),
        round(time.process_time() - t, 1),
        "CPU s",
        flush=True,
    )
    rows = {}
    for w in WEIGHTS:
        v = base + w * dv
        v = v / np.linalg.norm(v, axis=1, keepdims=True)
        engine = SearchEngine.build(items, SearchConfig(), encoder=enc, vectors=v.astype(np.float32))
        q = data["queries"]
        row = {
            "dense": bst._ndcg(bst._engine_runs(engine, q, "dense"), data)["ndcg@10"],
            "hybrid": bst._ndcg(bst._engine_runs(engine, q, "hybrid"), data)["ndcg@10"],
        }
        row["grid_max"] = max(
            bst._ndcg(bst._engine_runs(engine, q, "hybrid", **cfg), data)["ndcg@10"] for cfg in bst.GRID[::3]
        )
        rows[str(w)] = row
        print(name, w, json.dumps(row), flush=True)
    out[name] = rows
Path("/tmp/search_desc_view.json").write_text(json.dumps(out, indent=1))
