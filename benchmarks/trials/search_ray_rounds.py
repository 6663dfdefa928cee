# ruff: noqa
# Trial (not part of make bench): hybrid search over shards held by Ray actors, with the independent
# rounds (keyword + dense retrieval, keyword scores + cosines) issued together against one after the
# other (``stages.together`` with overlap forced off), alternating rounds on the same loaded engine;
# the in-process thread pool beside them. flipkart-1k in 3 shards, random unit vectors (as
# bench_shard_engines). usage: PYTHONPATH=. python benchmarks/trials/search_ray_rounds.py
import json, os, shutil, tempfile, time
from pathlib import Path

import numpy as np

from benchmarks import bench_shard_engines as bse
import shelfwise.search.engine as engine_mod
import shelfwise.search.stages as stages
from shelfwise.search.engine import SearchEngine

real = stages.together


def sequential(first, second, *, overlap):
    return real(first, second, overlap=False)


root = Path(tempfile.mkdtemp(prefix="trial-ray-rounds-"))
out = {"rounds": 3}
try:
    directory, vectors, queries = bse._flipkart(root / "flipkart")
    n = len(vectors)
    engines = {e: SearchEngine.load(directory, shard_engine=e) for e in ("threads", "ray")}
    pids = engines["ray"].keyword.shard_backend.pids()
    timings = {}
    with bse._bench_lock():
        load0 = os.getloadavg()[0]
        for e in engines.values():  # warm
            for i in range(30):
                e.search(queries[i], k=10, mode="hybrid", vector=vectors[(7 * i) % n])
        for r in range(out["rounds"]):
            for name, engine, patch in (
                ("ray, rounds together", engines["ray"], real),
                ("ray, one after the other", engines["ray"], sequential),
                ("threads", engines["threads"], real),
            ):
                stages.together = engine_mod.together = patch
                try:
                    row = bse._timed(
                        lambda i, engine=engine: engine.search(
                            queries[i], k=10, mode="hybrid", vector=vectors[(7 * i) % n]
                        ),
                        list(range(len(queries))),
                        pids if "ray" in name else [],
                    )
                finally:
                    stages.together = engine_mod.together = real
                timings.setdefault(name, []).append(row)
        out["load_average_before_after"] = [round(load0, 2), round(os.getloadavg()[0], 2)]
    # same answers both ways
    same = all(
        engines["ray"].search(q, k=10, mode="hybrid", vector=vectors[(7 * i) % n]).item_ids
        == engines["threads"].search(q, k=10, mode="hybrid", vector=vectors[(7 * i) % n]).item_ids
        for i, q in enumerate(queries[:100])
    )
    out["same_top10_as_threads_first_100"] = same
    out["runs"] = timings
    out["median_of_rounds"] = {
        name: {k: round(float(np.median([r[k] for r in rows])), 3) for k in rows[0]}
        for name, rows in timings.items()
    }
    print(json.dumps(out["median_of_rounds"], indent=1), same)
finally:
    from shelfwise.search.shard_actors import stop_actors

    stop_actors()
    shutil.rmtree(root, ignore_errors=True)
Path("/tmp/ray_rounds.json").write_text(json.dumps(out, indent=1))
