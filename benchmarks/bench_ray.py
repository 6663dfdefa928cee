"""The pipeline on Ray against the pipeline in-process.

1. Metrics equality: ALS, EASE and SASRec fitted and evaluated (full ranking) on Online Retail
   (purchases, temporal split, as ``bench_recommend``) and Amazon Beauty (leave-one-out, as
   ``bench_recommend``) by ``--engine local`` and by a local Ray cluster (2 CPUs): fits as Ray tasks
   (SASRec: Ray Train, DDP over 2 workers), held-out users ranked in chunks as tasks. Target: the
   same metrics within ±1% relative. SASRec runs a capped config (``SASREC``) on both sides, the
   same for both, so the table is affordable on a shared 2-core machine.
2. Throughput of the embarrassingly parallel steps with 1 and 2 Ray workers (tasks in flight) on
   this 2-core machine: sentence embeddings of item titles (all-MiniLM-L6-v2, offline; 2,048
   titles, 256 a task) and batch scoring (every known shopper's top 50 from the Beauty ALS, the
   job run ``SCORE_ROUNDS`` times back to back, each shipping the model anew, as a night's jobs
   for several versions would: tens of seconds of work, so Ray's fixed costs weigh what they would
   in a real batch job rather than in a 4-second one). Each point is the best of ``REPEATS``
   timed runs after a warm-up (workers started, model loaded), and the machine's load average is
   recorded with it: other jobs on the machine take cores from the second worker.

    flock /tmp/shelfwise-bench.lock python -m benchmarks.run ray
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.bench_serving import _tree_cpu_seconds

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SHELFWISE_SHARED_DATA", ROOT.parent / "shared" / "data"))
BEAUTY = SHARED / "amazon_beauty" / "Beauty.txt"
RETAIL = ROOT / "data" / "online_retail" / "online_retail.csv.gz"
SASREC = {
    "model": "sasrec",
    "epochs": int(os.environ.get("SHELFWISE_BENCH_SASREC_EPOCHS", 3)),
    "patience": 100,
    "max_train_seconds": 100_000.0,  # the epochs end it, on both sides alike (not the core-second budget)
}
MODELS: list[dict[str, Any]] = [{"model": "als"}, {"model": "ease", "l2": 250.0}, SASREC]
# a second, partial run kept beside the first: SHELFWISE_BENCH_RAY_MODELS=ease,sasrec
# SHELFWISE_BENCH_RAY_NAME=ray_rest
# SHELFWISE_BENCH_RAY_THROUGHPUT=0 (the equality table only)
_ONLY = [m for m in os.environ.get("SHELFWISE_BENCH_RAY_MODELS", "").split(",") if m]
MODELS = [m for m in MODELS if not _ONLY or m["model"] in _ONLY]
_ONLY_DATA = [d for d in os.environ.get("SHELFWISE_BENCH_RAY_DATA", "").split(",") if d]
NAME = os.environ.get("SHELFWISE_BENCH_RAY_NAME", "ray")
THROUGHPUT = os.environ.get("SHELFWISE_BENCH_RAY_THROUGHPUT", "1") != "0"
KEYS = ("ndcg@10", "recall@10", "ndcg@20", "recall@20")
REPEATS = int(os.environ.get("SHELFWISE_BENCH_REPEATS", 2))
SCORE_ROUNDS = int(os.environ.get("SHELFWISE_BENCH_SCORE_ROUNDS", 5))  # batch-scoring jobs a timed run
SCORE_CHUNK = 1024  # users a task (22 tasks for Beauty's 22,363 shoppers)
# the whole run is time-boxed: a (data, model) pair starts only when its rough cost still fits
BUDGET = float(os.environ.get("SHELFWISE_BENCH_BUDGET", 13 * 60))
COST = {"als": 40.0, "ease": 150.0, "sasrec": 200.0}  # seconds, both engines (rough, 2 cores, shared)
RESERVE = 200.0 if THROUGHPUT else 0.0  # seconds kept for the throughput curve after the equality table
_STARTED = time.perf_counter()


class TimeBox(Exception):
    """Raised by SIGALRM when the run's budget is spent, whatever step is running."""


_EXPIRED: list[bool] = []  # set by the alarm: Ray may wrap the TimeBox raised inside ray.get (SystemError)


def _alarm(_signum: int, _frame: Any) -> None:
    _EXPIRED.append(True)
    raise TimeBox


def _stopped(exc: BaseException) -> bool:
    """True when ``exc`` is the time box's (raised directly, or wrapped by Ray)."""
    return isinstance(exc, TimeBox) or bool(_EXPIRED)


def _log(msg: str) -> None:
    print(f"  {time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _left() -> float:
    return BUDGET - (time.perf_counter() - _STARTED)


def _machine_busy() -> float:
    """CPU seconds every process on the machine has used since boot (all cores, not idle/iowait)."""
    import psutil

    t = psutil.cpu_times()
    return float(sum(t) - t.idle - getattr(t, "iowait", 0.0))


def _datasets() -> dict[str, Any]:
    from shelfwise.features.dataset import Dataset
    from shelfwise.features.splits import leave_one_out, temporal_split

    retail = Dataset.from_file(RETAIL, "online-retail")
    purchases = retail.select(retail.type_mask(["purchase"]))
    out = {"online_retail": temporal_split(purchases, test_fraction=0.2)}
    if BEAUTY.is_file():
        out["amazon_beauty"] = leave_one_out(Dataset.from_file(BEAUTY, "amazon-beauty"))
    return out


def equality(splits: dict[str, Any], rows: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Each (model, data) pair on both engines; ``rows`` (appended to as they finish) keeps what
    was measured when the time box stops the run anywhere."""
    from shelfwise.distributed import fit_and_evaluate, open_engine

    rows = [] if rows is None else rows
    for config in MODELS:  # every model on both sets before the next (costlier) model
        for data, split in splits.items():
            if _ONLY_DATA and data not in _ONLY_DATA:
                continue
            if _left() < COST[config["model"]] + RESERVE:
                message = f"time box: {max(0, _left()):.0f} s left of {BUDGET:.0f} s"
                rows.append({"data": data, "model": config["model"], "status": "skipped", "message": message})
                _log(f"{data} {config['model']}: skipped (time box)")
                continue
            got: dict[str, Any] = {}
            try:
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
            except Exception as exc:
                if not _stopped(exc):
                    raise
                done = ", ".join(f"{e} ndcg@10 {g['metrics']['ndcg@10']:.5f}" for e, g in got.items())
                message = f"stopped by the {BUDGET:.0f} s time box" + (f" ({done} done)" if done else "")
                rows.append(
                    {"data": data, "model": config["model"], "status": "time box", "message": message}
                )
                _log(f"{data} {config['model']}: {message}")
                return rows
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
                    "status": "ok",
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


def _timed(fn: Any) -> tuple[float, dict[str, Any]]:
    """The best of ``REPEATS`` runs, with what the machine did meanwhile: load average before and
    after, CPU seconds used by this run (driver + Ray workers) and by the whole machine."""
    best, info = float("inf"), {}
    for _ in range(REPEATS):
        load0, ours0, busy0 = _load(), _tree_cpu_seconds(os.getpid()), _machine_busy()
        started = time.perf_counter()
        fn()
        took = time.perf_counter() - started
        ours, busy = _tree_cpu_seconds(os.getpid()) - ours0, _machine_busy() - busy0
        if took < best:
            cores = os.cpu_count() or 1
            best = took
            info = {
                "load": _load(),
                "load_before": load0,
                "cpu_seconds_ours": round(ours, 2),
                "cpu_seconds_machine": round(busy, 2),
                "cpu_seconds_others": round(max(0.0, busy - ours), 2),
                "cpu_seconds_available": round(took * cores, 2),
            }
    return best, info


def _score_rounds(engine: Any, model: Any) -> None:
    from shelfwise.distributed import score_all

    for _ in range(SCORE_ROUNDS):
        score_all(engine, model, k=50, chunk_users=SCORE_CHUNK)


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
            embed(engine, texts[: 64 * workers], chunk=64)  # warm-up: workers up, model loaded
            seconds, info = _timed(lambda: embed(engine, texts, chunk=256))
            rows.append(_point("embedding", workers, len(texts), seconds, info))
            score_all(engine, model, k=50, chunk_users=SCORE_CHUNK)
            seconds, info = _timed(lambda: _score_rounds(engine, model))
            rows.append(_point("batch scoring", workers, n_users * SCORE_ROUNDS, seconds, info))
    except Exception as exc:
        if not _stopped(exc):
            raise
        _log("throughput: stopped by the time box; the points measured are kept")
    finally:
        engine.close()
    for step in ("embedding", "batch scoring"):
        pair = [r for r in rows if r["step"] == step]
        if len(pair) < 2:
            continue  # the time box stopped the curve before its second point
        one, two = pair
        two["speedup"] = round(two["per_second"] / one["per_second"], 2)
        one["speedup"] = 1.0
        # per CPU second actually granted: 2 workers at the same figure as 1 = no overhead lost to Ray
        two["per_cpu_second_ratio"] = round(two["per_cpu_second"] / one["per_cpu_second"], 2)
        one["per_cpu_second_ratio"] = 1.0
    return rows


def _point(step: str, workers: int, n: int, seconds: float, info: dict[str, Any]) -> dict[str, Any]:
    row = {"step": step, "workers": workers, "items": n, "seconds": round(seconds, 2),
           "per_second": round(n / seconds, 1), **info,
           "per_cpu_second": round(n / max(info["cpu_seconds_ours"], 1e-6), 1),
           "cores_used": round(info["cpu_seconds_ours"] / seconds, 2)}  # fmt: skip
    _log(
        f"{step}, {workers} worker(s): {row['per_second']:,.0f}/s, {row['cores_used']} cores used, "
        f"others {info['cpu_seconds_others']} CPU s in {seconds:.1f} s (load {info['load']})"
    )
    return row


def _tables(eq: list[dict[str, Any]], tp: list[dict[str, Any]]) -> str:
    lines = [
        "| data | model | ndcg@10 local | ndcg@10 ray | recall@10 local | recall@10 ray "
        "| max rel. diff | ±1% | s local | s ray |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in eq:
        if r.get("status") != "ok":
            lines.append(f"| {r['data']} | {r['model']} | {r['status']}: {r['message']} |||||||| ")
            continue
        lo, ra = r["local"]["metrics"], r["ray"]["metrics"]
        lines.append(
            f"| {r['data']} | {r['model']} | {lo['ndcg@10']:.5f} | {ra['ndcg@10']:.5f} | "
            f"{lo['recall@10']:.5f} | {ra['recall@10']:.5f} | {r['max_rel_diff'] * 100:.3f}% | "
            f"{'yes' if r['within_1pct'] else 'NO'} | {r['local']['seconds']} | {r['ray']['seconds']} |"
        )
    lines += [
        "",
        "| step | Ray workers | items | seconds | per second | speed-up | cores used (ours) "
        "| CPU s others | per our CPU s | ratio | load avg (1 min) before→after |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in tp:
        lines.append(
            f"| {r['step']} | {r['workers']} | {r['items']:,} | {r['seconds']} | {r['per_second']:,.0f} | "
            f"{r.get('speedup', '?')}× | {r['cores_used']} | {r['cpu_seconds_others']} | "
            f"{r['per_cpu_second']:,.0f} | {r.get('per_cpu_second_ratio', '?')}× | "
            f"{r['load_before']}→{r['load']} |"
        )
    lines += [
        "",
        "Speed-up = wall-clock throughput, 2 workers over 1; cores used = CPU seconds of the driver and "
        "its Ray processes over wall seconds (2.0 = both cores ours); CPU s others = what the rest of "
        "the machine used meanwhile; ratio = throughput per CPU second we got, 2 workers over 1 (1.0: "
        "the second worker costs no overhead, so the wall-clock speed-up is bounded by the cores the "
        "machine lets us have).",
    ]
    return "\n".join(lines)


def run() -> dict[str, Any]:
    os.environ.setdefault("SHELFWISE_PROGRESS", "0")
    splits = _datasets()
    signal.signal(signal.SIGALRM, _alarm)
    # hard stops (whatever runs then is recorded as stopped): the equality table until RESERVE
    # seconds are left, the throughput curve in those
    signal.alarm(max(1, int(_left() - RESERVE)))
    eq: list[dict[str, Any]] = []
    tp: list[dict[str, Any]] = []
    try:
        _log("metrics equality: local vs ray")
        try:
            equality(splits, eq)
        except Exception as exc:  # the box struck between pairs (outside a pair's own handler)
            if not _stopped(exc):
                raise
            _log("metrics equality: stopped by the time box")
        if THROUGHPUT:
            signal.alarm(max(1, int(_left())))
            _log("throughput: 1 and 2 Ray workers")
            try:
                tp = throughput(splits.get("amazon_beauty", splits["online_retail"]))
            except Exception as exc:
                if not _stopped(exc):
                    raise
                _log("throughput: stopped by the time box")
    finally:
        signal.alarm(0)
    measured = {(r["data"], r["model"]) for r in eq}
    for config in MODELS:  # every pair the box left unmeasured is in the table, marked so
        for data in splits:
            if (not _ONLY_DATA or data in _ONLY_DATA) and (data, config["model"]) not in measured:
                eq.append(
                    {"data": data, "model": config["model"], "status": "not measured", "message": "box"}
                )
    result = {
        "name": NAME,
        "cpus": os.cpu_count(),
        "budget_seconds": BUDGET,
        "load_at_end": list(os.getloadavg()),
        "sasrec_config": SASREC,
        "equality": eq,
        "throughput": tp,
        "table": _tables(eq, tp),
    }
    return result  # benchmarks.run writes results/ray.json and the README's section


if __name__ == "__main__":
    print(run()["table"])
