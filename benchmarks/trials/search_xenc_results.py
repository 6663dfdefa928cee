"""Collect the self-trained re-ranker trial's figures into ``benchmarks/results/search_xenc_trial.json``.

Reads ``var/xenc/report_{head,lgbm,ce2}.json`` (written by ``benchmarks/trials/search_xenc.py``) and keeps
figures only: no query text, no product text, no Crowdflower-derived file.

    PYTHONPATH=src python -m benchmarks.trials.search_xenc_results
"""

from __future__ import annotations

import json
import os
from pathlib import Path

OUT = Path(os.environ.get("SHELFWISE_XENC_DIR", "var/xenc"))
RESULT = Path(__file__).resolve().parents[1] / "results" / "search_xenc_trial.json"
# the best of FTS5 and tantivy per set (benchmarks/results/search_transfer.json, same corpora and queries)
BEST_PEER = {"flipkart": 0.7046, "crowdflower": 0.7430}


def main() -> None:
    rows = {}
    for name in ("head", "lgbm", "ce2"):
        path = OUT / f"report_{name}.json"
        if not path.exists():
            continue
        r = json.loads(path.read_text())
        r.get("groups", {}).pop("examples", None)
        rows[name] = {
            "chosen_on_flipkart (depth/weight)": r["chosen_on_flipkart"],
            "result": {
                n: {**v, "vs_best_peer": round(v["ndcg@10"] / BEST_PEER[n], 3)}
                for n, v in r["result"].items()
            },
            "best_cell_on_crowdflower_(not_a_result,_chosen_on_the_test_set)": max(
                r["grid"]["crowdflower"].values()
            ),
            "grid": r["grid"],
            **{k: r[k] for k in ("train", "groups", "cpu_ms_per_query_top30") if k in r},
        }
    lines = [
        "| re-ranker over the shipped hybrid's top N | Flipkart (in-sample) | Crowdflower (out-of-sample) |",
        "| --- | ---: | ---: |",
        "| none (hybrid, shipped defaults) | 0.7853 (1.115×) | 0.7898 (1.063×) |",
    ]
    names = {
        "head": "head-word match rule (no training)",
        "lgbm": "LightGBM LambdaRank, cheap features",
        "ce2": "cross-encoder, MiniLM first 2 layers",
    }
    for key, row in rows.items():
        fk, cf = row["result"]["flipkart"], row["result"]["crowdflower"]
        lines.append(
            f"| {names[key]} ({row['chosen_on_flipkart (depth/weight)']}) | {fk['ndcg@10']:.4f} "
            f"({fk['vs_best_peer']:.3f}×) | {cf['ndcg@10']:.4f} ({cf['vs_best_peer']:.3f}×) |"
        )
    result = {
        "name": "search_xenc_trial",
        "measured_at": "2026-12-03, trial (benchmarks/trials/search_xenc.py), not a make bench run",
        "table": "\n".join(lines),
        "best_peer_ndcg@10": BEST_PEER,
        **rows,
    }
    RESULT.write_text(json.dumps(result, indent=1) + "\n")
    print(result["table"])


if __name__ == "__main__":
    main()
