# ruff: noqa
# Trial (not part of make bench): nDCG@10 on condensed lists (Sakai 2007, "Alternatives to Bpref"):
# items with no judgment for the query are dropped from each ranking before the cut at 10, so an
# item judged only for another query (Crowdflower judges each product for one query) is neither a
# hit nor a miss. Same runs (top 100) as bench_search_transfer; every system scored both ways.
# usage: PYTHONPATH=. python benchmarks/trials/search_condensed.py crowdflower flipkart
import json, sys, time

from benchmarks import bench_search_transfer as bst
from shelfwise.search.dense import Encoder
from shelfwise.search.engine import SearchConfig, SearchEngine
from shelfwise.search.evaluate import ndcg_at


def scores(runs, data):
    std, cond, judged_share = [], [], []
    for q, ranked in runs.items():
        grades = data["qrels"].get(q, {})
        if not any(g >= data["min_grade"] for g in grades.values()):
            continue
        std.append(ndcg_at(ranked, grades, 10))
        kept = [d for d in ranked if d in grades]
        cond.append(ndcg_at(kept, grades, 10))
        judged_share.append(sum(d in grades for d in ranked[:10]) / max(1, min(10, len(ranked))))
    n = len(std)
    return {
        "ndcg@10": round(sum(std) / n, 4),
        "condensed_ndcg@10": round(sum(cond) / n, 4),
        "judged_share_top10": round(sum(judged_share) / n, 3),
        "queries": n,
    }


encoder = Encoder()
sets = bst.labelled_sets()
out = {}
for name in sys.argv[1:]:
    data = sets[name]
    t = time.time()
    vectors = bst._base_vectors(name, data["items"], encoder)
    engine = SearchEngine.build(data["items"], SearchConfig(), encoder=encoder, vectors=vectors)
    q = data["queries"]
    row = {
        "sqlite_fts5": scores(bst._runs(bst.fts5_peer(data["items"]), q), data),
        "tantivy": scores(bst._runs(bst.tantivy_peer(data["items"]), q), data),
        "shelfwise_bm25": scores(bst._engine_runs(engine, q, "bm25"), data),
        "dense_only": scores(bst._engine_runs(engine, q, "dense"), data),
        "hybrid_shipped_defaults": scores(bst._engine_runs(engine, q, "hybrid"), data),
    }
    for metric in ("ndcg@10", "condensed_ndcg@10"):
        best = max(row["sqlite_fts5"][metric], row["tantivy"][metric])
        row[f"hybrid_vs_best_peer_{metric}"] = round(row["hybrid_shipped_defaults"][metric] / best, 3)
    row["seconds"] = round(time.time() - t, 1)
    out[name] = row
    print(name, json.dumps(row, indent=1), flush=True)
print(json.dumps(out))
