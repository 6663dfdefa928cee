"""Trial (not part of make bench): how far could choosing one retriever per query go? Per query
nDCG@10 of our BM25F, the dense retriever and the shipped hybrid on each labelled set, and the mean
of a per-query oracle that always picks the best of them (an upper bound no real chooser reaches:
it reads the labels). If even the oracle between the two retrievers stays under 1.10x the best peer,
no rule that picks a retriever per query can meet the issue's line; only fusion that beats both on
the same query can.

    PYTHONPATH=src:. HF_HUB_OFFLINE=1 python -m benchmarks.trials.search_oracle
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from benchmarks import bench_search_transfer as bst

from shelfwise.search.dense import Encoder
from shelfwise.search.engine import SearchConfig, SearchEngine

OUT = Path(__file__).resolve().parents[1] / "results" / "search_oracle_trial.json"


def main() -> None:
    enc = Encoder()
    rows = {}
    for name, data in bst.labelled_sets().items():
        vectors = bst._base_vectors(name, data["items"], enc)
        engine = SearchEngine.build(data["items"], SearchConfig(), encoder=enc, vectors=vectors)
        q = data["queries"]
        per = {
            m: bst._per_query_ndcg(bst._engine_runs(engine, q, m), data) for m in ("bm25", "dense", "hybrid")
        }
        tv = bst._per_query_ndcg(bst._runs(bst.tantivy_peer(data["items"]), q), data)
        fts = bst._per_query_ndcg(bst._runs(bst.fts5_peer(data["items"]), q), data)
        peer = max(np.mean(list(tv.values())), np.mean(list(fts.values())))
        ids = list(per["hybrid"])
        mean = {m: float(np.mean([per[m][x] for x in ids])) for m in per}
        two = float(np.mean([max(per["bm25"][x], per["dense"][x]) for x in ids]))
        three = float(np.mean([max(per[m][x] for m in per) for x in ids]))
        rows[name] = {
            "queries": len(ids),
            "best_peer": float(peer),
            **{f"{m}": v for m, v in mean.items()},
            "oracle_bm25_or_dense": two,
            "oracle_bm25_dense_or_hybrid": three,
            "needed_for_1.10x": 1.1 * float(peer),
            "hybrid_below_both": sum(per["hybrid"][x] < min(per["bm25"][x], per["dense"][x]) for x in ids),
        }
        print(name, json.dumps(rows[name]), flush=True)
    table = [
        "| set | best peer | BM25F | dense | hybrid | oracle: BM25F or dense per query "
        "| oracle: any of the three | 1.10x the peer | queries where the hybrid is below both |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in rows.items():
        table.append(
            f"| {name} ({r['queries']} queries) | {r['best_peer']:.4f} | {r['bm25']:.4f} "
            f"| {r['dense']:.4f} | "
            f"{r['hybrid']:.4f} | {r['oracle_bm25_or_dense']:.4f} | {r['oracle_bm25_dense_or_hybrid']:.4f} | "
            f"{r['needed_for_1.10x']:.4f} | {r['hybrid_below_both']} |"
        )
    OUT.write_text(
        json.dumps(
            {
                "name": "search_oracle_trial",
                "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                + ", trial (benchmarks/trials/search_oracle.py), not a make bench run",
                "table": "\n".join(table)
                + "\n\nnDCG@10 per query, shipped `SearchConfig()`; the oracles read the labels "
                "(upper bounds, not systems).",
                "sets": rows,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
