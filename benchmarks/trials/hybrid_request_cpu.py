"""CPU time per stage of one uncached personal hybrid request (``recommend([user], k)``, the served
k=60 path beyond the precomputed top-50), over a few hundred shoppers of a trained version.

    PYTHONPATH=src:. nice -n 10 .venv/bin/python -m benchmarks.trials.hybrid_request_cpu VERSION_DIR [k] [n]

``VERSION_DIR`` is a registry version's directory (``…/models/<version>``, with ``recommender/``).
Prints per-stage median and p99 thread CPU ms, and the whole request's; nothing is written.
"""

from __future__ import annotations

import gc
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from shelfwise.recommend.base import Recommender, csr_rows, serving_threads


def main() -> None:
    path = Path(sys.argv[1])
    k = int(sys.argv[2]) if len(sys.argv) > 2 else 60
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 400
    model = Recommender.load(path / "recommender")
    gc.collect()
    if "--freeze" in sys.argv:
        gc.freeze()
    st = model.state
    counts = np.diff(st.history.indptr)
    users = st.user_map.external[np.flatnonzero(counts > 0)]
    users = [str(u) for u in users[:: max(1, len(users) // n)][:n]]
    for u in users[-5:]:
        model.recommend([u], k)
    clock = time.thread_time
    stages: dict[str, list[float]] = {}

    def note(name: str, t0: float) -> float:
        t1 = clock()
        stages.setdefault(name, []).append((t1 - t0) * 1000)
        return t1

    # the stages of Recommender.recommend → _rank → HybridRecommender._score_block, timed one by one
    wall = []
    for u in users:
        w0 = time.perf_counter()
        t = clock()
        dense = st.user_map.to_internal([u], strict=False)
        h = csr_rows(st.history, dense)
        ex = csr_rows(st.seen, dense)
        with serving_threads(1):
            allowed = model.allowed_mask(None)
            t = note("setup", t)
            hh = sp.csr_matrix(h, dtype=np.float32)
            scores, rows, items = model._retrieve(model.stage, hh, dense, with_history=True)
            t = note("retrieve", t)
            keep = allowed[items]
            nn = np.int64(model.n_items)
            ex_rows = np.repeat(np.arange(ex.shape[0], dtype=np.int64), np.diff(ex.indptr))
            keep &= ~np.isin(rows * nn + items, ex_rows * nn + ex.indices)
            rows, items = rows[keep], items[keep]
            t = note("filter", t)
            x, _ = model._features(model.stage, hh, dense, scores, rows, items)
            t = note("features", t)
            pred = model.booster.predict(x, num_threads=1)
            t = note("predict", t)
            idx, vals = model._rank(h, dense, k, exclude=ex, filters=None)  # the whole stage again
            t_rank = clock()
            t = t_rank
            rec = model._package(u, idx[0], vals[0], h.indices)
            t = note("package+reasons", t)
        stages.setdefault("recommend (sum w/o dup)", []).append(
            sum(
                stages[s][-1]
                for s in ("setup", "retrieve", "filter", "features", "predict", "package+reasons")
            )
        )
        wall.append((time.perf_counter() - w0) * 1000)
        assert len(rec.items) == k
    whole = []
    for u in users:
        t0 = clock()
        model.recommend([u], k)
        whole.append((clock() - t0) * 1000)
    print(f"{len(users)} shoppers, k={k}, x rows median {len(pred)}")
    for name, v in [*stages.items(), ("recommend() whole", whole)]:
        a = np.asarray(v)
        p50, p90, p99 = np.percentile(a, [50, 90, 99])
        print(f"{name:28s} p50 {p50:7.3f}  p90 {p90:7.3f}  p99 {p99:7.3f} ms")


if __name__ == "__main__":
    main()
