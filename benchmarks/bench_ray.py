"""The pipeline on Ray against the pipeline in-process.

1. Metrics equality: ALS, EASE and SASRec fitted and evaluated (full ranking) on Online Retail
   (purchases, temporal split, as ``bench_recommend``) and Amazon Beauty (leave-one-out, as
   ``bench_recommend``) by ``--engine local`` and by a local Ray cluster (2 CPUs): fits as Ray tasks
   (SASRec: Ray Train, DDP over 2 workers), held-out users ranked in chunks as tasks. Target: the
   same metrics within ±1% relative. SASRec runs a capped config (``SASREC``) on both sides, the
   same for both, so the table is affordable on a shared 2-core machine.
2. Throughput of the embarrassingly parallel steps with 1 and 2 Ray workers (tasks in flight) on
   this 2-core machine: sentence embeddings of item titles (all-MiniLM-L6-v2, offline) and batch
   scoring (every known shopper's top 50 from the Beauty ALS). Each point is the best of
   ``REPEATS`` timed runs after a warm-up (workers started, model loaded), and the machine's load
   average is recorded with it: other jobs on the machine take cores from the second worker.

    flock /tmp/shelfwise-bench.lock python -m benchmarks.run ray
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SHELFWISE_SHARED_DATA", ROOT.parent / "shared" / "data"))
BEAUTY = SHARED / "amazon_beauty" / "Beauty.txt"
RETAIL = ROOT / "data" / "online_retail" / "online_retail.csv.gz"
SASREC = {
    "model": "sasrec",
    "epochs": int(os.environ.get("SHELFWISE_BENCH_SASREC_EPOCHS", 10)),
    "patience": 100,
}
MODELS: list[dict[str, Any]] = [{"model": "als"}, {"model": "ease", "l2": 250.0}, SASREC]
KEYS = ("ndcg@10", "recall@10", "ndcg@20", "recall@20")
REPEATS = int(os.environ.get("SHELFWISE_BENCH_REPEATS", 3))


def _log(msg: str) -> None:
    print(f"  {time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _datasets() -> dict[str, Any]:
    from shelfwise.features.dataset import Dataset
    from shelfwise.features.splits import leave_one_out, temporal_split

    retail = Dataset.from_file(RETAIL, "online-retail")
    purchases = retail.select(retail.type_mask(["purchase"]))
    out = {"online_retail": temporal_split(purchases, test_fraction=0.2)}
    if BEAUTY.is_file():
        out["amazon_beauty"] = leave_one_out(Dataset.from_file(BEAUTY, "amazon-beauty"))
    return out


def equality(splits: dict[str, Any]) -> list[dict[str, Any]]:
    from shelfwise.distributed import fit_and_evaluate, open_engine

    rows = []
    for data, split in splits.items():
        for config in MODELS:
            got: dict[str, Any] = {}
            for engine in ("local", "ray"):
                started = time.perf_counter()
                with open_engine(engine, num_cpus=2) as running:
                    _, result = fit_and_evaluate(running, split, config)
                got[engine] = {
                    "metrics": {k: result.metrics[k] for k in KEYS},
                    "seconds": round(time.perf_counter() - started, 1),
                    "load": _load(),
                }
                _log(f"{data} {config['model']} {engine}: ndcg@10 {result.metrics['ndcg@10']:.5f}")
            diff = {
                k: (got["ray"]["metrics"][k] / got["local"]["metrics"][k] - 1)
                if got["local"]["metrics"][k]
                else 0.0
                for k in KEYS
            }
            rows.append(
                {
                    "data": data,
                    "model": config["model"],
                    "config": config,
                    "local": got["local"],
                    "ray": got["ray"],
                    "max_rel_diff": max(abs(v) for v in diff.values()),
                    "within_1pct": all(abs(v) <= 0.01 for v in diff.values()),
                }
            )
    return rows


def _titles() -> list[str]:
    from shelfwise.features.dataset import Dataset

    ds = Dataset.from_file(RETAIL, "online-retail")
    text = ds.item_attributes.text
    titles = [t for t in (text.tolist() if text is not None else []) if t]
    return titles[: int(os.environ.get("SHELFWISE_BENCH_TEXTS", 2048))]


def _timed(fn: Any) -> tuple[float, float]:
    best, load = float("inf"), 0.0
    for _ in range(REPEATS):
        started = time.perf_counter()
        fn()
        took = time.perf_counter() - started
        if took < best:
            best, load = took, _load()
    return best, load


def throughput(split: Any) -> list[dict[str, Any]]:
    from shelfwise.distributed import RayEngine, embed, score_all
    from shelfwise.recommend.registry import model_from_config

    texts = _titles()
    model = model_from_config({"model": "als"}).fit(split.train)
    n_users = len(model.user_map)
    rows = []
    engine = RayEngine(num_cpus=2)
    try:
        for workers in (1, 2):
            engine.workers = workers
            embed(engine, texts[: 512 * workers], chunk=256)  # warm-up: workers up, model loaded
            seconds, load = _timed(lambda: embed(engine, texts, chunk=256))
            rows.append(
                {"step": "embedding", "workers": workers, "items": len(texts), "seconds": round(seconds, 2),
                 "per_second": round(len(texts) / seconds, 1), "load": load}
            )  # fmt: skip
            _log(f"embedding, {workers} worker(s): {len(texts) / seconds:,.0f} texts/s (load {load})")
            score_all(engine, model, k=50, chunk_users=1024)
            seconds, load = _timed(lambda: score_all(engine, model, k=50, chunk_users=1024))
            rows.append(
                {"step": "batch scoring", "workers": workers, "items": n_users, "seconds": round(seconds, 2),
                 "per_second": round(n_users / seconds, 1), "load": load}
            )  # fmt: skip
            _log(f"batch scoring, {workers} worker(s): {n_users / seconds:,.0f} users/s (load {load})")
    finally:
        engine.close()
    for step in ("embedding", "batch scoring"):
        one, two = (r for r in rows if r["step"] == step)
        two["speedup"] = round(two["per_second"] / one["per_second"], 2)
        one["speedup"] = 1.0
    return rows


def _tables(eq: list[dict[str, Any]], tp: list[dict[str, Any]]) -> str:
    lines = [
        "| data | model | ndcg@10 local | ndcg@10 ray | recall@10 local | recall@10 ray "
        "| max rel. diff | ±1% | s local | s ray |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in eq:
        lo, ra = r["local"]["metrics"], r["ray"]["metrics"]
        lines.append(
            f"| {r['data']} | {r['model']} | {lo['ndcg@10']:.5f} | {ra['ndcg@10']:.5f} | "
            f"{lo['recall@10']:.5f} | {ra['recall@10']:.5f} | {r['max_rel_diff'] * 100:.3f}% | "
            f"{'yes' if r['within_1pct'] else 'NO'} | {r['local']['seconds']} | {r['ray']['seconds']} |"
        )
    lines += [
        "",
        "| step | Ray workers | items | seconds | per second | speed-up | load avg (1 min) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in tp:
        lines.append(
            f"| {r['step']} | {r['workers']} | {r['items']:,} | {r['seconds']} | {r['per_second']:,.0f} | "
            f"{r['speedup']:.2f}× | {r['load']} |"
        )
    return "\n".join(lines)


def run() -> dict[str, Any]:
    os.environ.setdefault("SHELFWISE_PROGRESS", "0")
    splits = _datasets()
    _log("throughput: 1 and 2 Ray workers")
    tp = throughput(splits.get("amazon_beauty", splits["online_retail"]))
    _log("metrics equality: local vs ray")
    eq = equality(splits)
    result = {
        "name": "ray",
        "cpus": os.cpu_count(),
        "sasrec_config": SASREC,
        "equality": eq,
        "throughput": tp,
        "table": _tables(eq, tp),
    }
    return result  # benchmarks.run writes results/ray.json and the README's section


if __name__ == "__main__":
    print(run()["table"])
