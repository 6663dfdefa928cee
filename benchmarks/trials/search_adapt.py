"""Trial: the hybrid with the encoder adapted to one labelled set's catalogue (no labels used).

    PYTHONPATH=src:. python benchmarks/trials/search_adapt.py SET ADAPT_JSON_OR_null [SEARCH_JSON]

``null`` runs the packaged model (its item vectors kept in /tmp/hs for the next run). Prints one JSON
line: own BM25, dense-only and hybrid nDCG@10, the hybrid at fixed alphas 0.2/0.3/0.4, the build-time
dense agreement and the adaptation report. Not run by ``make bench`` (minutes per set).
"""

import json
import os
import sys
import time

import numpy as np
from benchmarks.bench_search_transfer import _engine_runs, _ndcg, labelled_sets

from shelfwise.search.adapt import AdaptConfig, adapt_encoder
from shelfwise.search.dense import Encoder
from shelfwise.search.documents import embedding_text
from shelfwise.search.engine import SearchConfig, SearchEngine

name = sys.argv[1]
acfg = json.loads(sys.argv[2])
scfg = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
data = labelled_sets()[name]
items = data["items"]
base = Encoder()
texts = [embedding_text(it) for it in items]
report = None
if acfg is None:
    path = f"/tmp/hs/{name}_base.npy"
    if os.path.exists(path):
        vec = np.load(path)
    else:
        t = time.time()
        vec = base.encode(texts)
        print("encode s", round(time.time() - t, 1))
        np.save(path, vec)
    enc = base
else:
    enc, report, vec = adapt_encoder(base, items, AdaptConfig(**acfg))
out = {"set": name, "adapt": acfg, "search": scfg, "report": report}
for sc in [scfg]:
    e = SearchEngine.build(items, SearchConfig(**sc), encoder=enc, vectors=vec)
    for mode in ("bm25", "dense", "hybrid"):
        out[mode] = _ndcg(_engine_runs(e, data["queries"], mode), data)["ndcg@10"]
    out["hybrid_fixed_grid"] = {
        a: _ndcg(_engine_runs(e, data["queries"], "hybrid", fusion="fixed", alpha=a), data)["ndcg@10"]
        for a in (0.2, 0.3, 0.4)
    }
    out["agreement"] = e.dense_agreement
print(json.dumps(out), flush=True)
