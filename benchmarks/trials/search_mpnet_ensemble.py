# ruff: noqa
# Trial (not part of make bench): MiniLM and mpnet cosines averaged on Crowdflower. usage: MPNET=<model dir> PYTHONPATH=. python benchmarks/trials/search_mpnet_ensemble.py
import json, os, sys, time
from pathlib import Path
import numpy as np
import shelfwise.features.embeddings as emb
import shelfwise.search.dense as dense
from benchmarks import bench_search_transfer as bst
from shelfwise.search.documents import embedding_text
from shelfwise.search.embedding_cache import EmbeddingCache
from shelfwise.search.engine import SearchEngine, SearchConfig

sets = bst.labelled_sets()
data = sets["crowdflower"]
mini = dense.Encoder()
texts = [embedding_text(it) for it in data["items"]]
vm = EmbeddingCache(Path("var/bench-embeddings/crowdflower-mini"), "all-MiniLM-L6-v2/384").vectors(
    texts, mini.encode
)
emb.DIM = dense.DIM = 768
mp = dense.Encoder(os.environ["MPNET"])
vp = EmbeddingCache(Path("var/bench-embeddings/crowdflower"), "all-mpnet-base-v2/768").vectors(
    texts, mp.encode
)


class Ens:
    def __init__(s, w):
        s.w = w
        s.query_runtime = None

    def encode_query(s, t):
        return np.concatenate(
            [np.sqrt(1 - s.w) * mini.encode_query(t), np.sqrt(s.w) * mp.encode_query(t)]
        ).astype(np.float32)

    encode_uncached = encode_query

    def clear_cache(s):
        pass

    def encode(s, texts, **kw):
        return np.stack([s.encode_query(t) for t in texts])


emb.DIM = dense.DIM = 1152
q = data["queries"]
for w in (0.0, 0.3, 0.5):
    V = np.concatenate([np.sqrt(1 - w) * vm, np.sqrt(w) * vp], 1).astype(np.float32)
    eng = SearchEngine.build(data["items"], SearchConfig(), encoder=Ens(w), vectors=V)
    print(
        w,
        "dense",
        bst._ndcg(bst._engine_runs(eng, q, "dense"), data)["ndcg@10"],
        "hybrid",
        bst._ndcg(bst._engine_runs(eng, q, "hybrid"), data)["ndcg@10"],
        flush=True,
    )
