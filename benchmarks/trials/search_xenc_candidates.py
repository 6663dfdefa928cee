"""Stage 1 of the self-trained re-ranker trial: the shipped hybrid's top-100 per query on every labelled set.

Writes ``var/xenc/<set>.pkl`` (queries, qrels, min_grade, the hybrid run, item texts) so the re-ranker
stage can be retrained and re-scored without rebuilding engines. Evaluation uses
``benchmarks.bench_search_transfer`` itself (same sets, same ``_ndcg``).

    PYTHONPATH=src nice -n 15 python -m benchmarks.trials.search_xenc_candidates
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch
from benchmarks.bench_search_transfer import _base_vectors, _engine_runs, _ndcg, labelled_sets

from shelfwise.search.engine import SearchConfig, SearchEngine

OUT = Path(os.environ.get("SHELFWISE_XENC_DIR", "var/xenc"))


def main() -> None:
    from shelfwise.search.dense import Encoder

    torch.set_num_threads(1)
    OUT.mkdir(parents=True, exist_ok=True)
    encoder = Encoder()
    for name, data in labelled_sets().items():
        vectors = _base_vectors(name, data["items"], encoder)
        engine = SearchEngine.build(data["items"], SearchConfig(), encoder=encoder, vectors=vectors)
        runs = _engine_runs(engine, data["queries"], "hybrid")
        bm25 = _engine_runs(engine, data["queries"], "bm25")
        texts = {
            it.item_id: (it.title or "", it.brand or "", it.category or "", (it.description or "")[:300])
            for it in data["items"]
        }
        print(name, "hybrid", _ndcg(runs, data), "bm25", _ndcg(bm25, data), flush=True)
        with (OUT / f"{name}.pkl").open("wb") as f:
            pickle.dump(
                {
                    "queries": data["queries"],
                    "qrels": data["qrels"],
                    "min_grade": data["min_grade"],
                    "hybrid": runs,
                    "bm25": bm25,
                    "texts": texts,
                },
                f,
            )


if __name__ == "__main__":
    main()
