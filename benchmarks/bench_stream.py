"""10M generated events (issue 19): peak memory of the streaming steps against the event count.

One synthetic shop (``shelfwise generate``'s model: 37,355 items as the issue's shop, 500,000
shoppers, seed 19) of ``EVENTS`` events, and three steps, each in its own process:

1. **generate** (streams): ``write_shop`` writes the CSV; at each mark (1M, 3M, 10M rows written)
   the process's peak resident set so far (``VmHWM``) is recorded. Flat = the step streams.
2. **ingest** (streams): ``ingest_events`` (the batch engine, the default) reads that CSV into a
   fresh SQLite store; the peak resident set is recorded at marks of rows read.
3. **train** (not a streaming step: the interaction matrix is in memory): ALS, the automatic choice
   at this catalogue size, fitted on the first 1M, 3M and 10M generated events (columns straight
   from the generator, as ``bench_scale``), each in a fresh process: seconds and peak resident set.

Every step is time-boxed (``BUDGET`` seconds each; the whole under 15 min): a step stopped by its
box keeps the marks it reached, and the table says so. The machine's load average is recorded
beside every mark, since the machine is shared.

    flock /tmp/shelfwise-bench.lock python -m benchmarks.run stream
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EVENTS = int(os.environ.get("SHELFWISE_BENCH_STREAM_EVENTS", 10_000_000))
MARKS = (100_000, 300_000, 1_000_000, 2_000_000, 3_000_000, 5_000_000, 7_000_000, 10_000_000)
# the train step builds its own events (any size); SHELFWISE_BENCH_TRAIN_SIZES=10000000 fits only that one
TRAIN_SIZES = tuple(
    int(n) for n in os.environ.get("SHELFWISE_BENCH_TRAIN_SIZES", "1000000,3000000,10000000").split(",")
)
# fewer ALS iterations fit a busy machine's time box; the fit's memory does not depend on them
TRAIN_CONFIG = json.loads(os.environ.get("SHELFWISE_BENCH_TRAIN_CONFIG", '{"model": "als"}'))
NAME = os.environ.get("SHELFWISE_BENCH_STREAM_NAME", "stream")  # a second run kept beside the first
ITEMS, USERS, SEED = 37_355, 500_000, 19
BUDGET = {
    "generate": float(os.environ.get("SHELFWISE_BENCH_GEN_SECONDS", 300)),
    "ingest": float(os.environ.get("SHELFWISE_BENCH_INGEST_SECONDS", 240)),
    "train": float(os.environ.get("SHELFWISE_BENCH_TRAIN_SECONDS", 280)),
    # ALS on what the ingest step stored, read back as training reads a store (0: skipped)
    "store_train": float(os.environ.get("SHELFWISE_BENCH_STORE_TRAIN_SECONDS", 280)),
}
KEY = "benchmark-pseudonym-key-0123456789"
# a CSV ``generate_child`` wrote before (same EVENTS and shop) to ingest instead of writing it again
REUSE = os.environ.get("SHELFWISE_BENCH_STREAM_CSV", "")
# a wall-clock end (Unix seconds) for the whole run on a shared machine: every step's box is cut to
# what is left, so a run that waited long for the bench lock still ends in time (0: no deadline)
DEADLINE = float(os.environ.get("SHELFWISE_BENCH_DEADLINE", 0))


def _box(budget: float) -> float:
    return min(budget, DEADLINE - time.time()) if DEADLINE else budget


def _vm(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


class _Marks:
    """Appends a JSON line (rows, peak and current resident set, seconds, load) per mark passed."""

    def __init__(self, path: Path) -> None:
        self.path, self.started, self.next = path, time.perf_counter(), 0

    def __call__(self, rows: int) -> None:
        while self.next < len(MARKS) and rows >= MARKS[self.next]:
            mark = {
                "mark": MARKS[self.next],
                "rows": rows,
                "peak_rss": _vm("VmHWM"),
                "rss": _vm("VmRSS"),
                "seconds": round(time.perf_counter() - self.started, 1),
                "cpu_seconds": round(time.process_time(), 1),  # valid on a busy machine, unlike seconds
                "load": round(os.getloadavg()[0], 2),
            }
            with self.path.open("a") as fh:
                fh.write(json.dumps(mark) + "\n")
            self.next += 1


def _config(events: int) -> Any:
    from shelfwise.data.synthetic import ShopConfig

    return ShopConfig(events=events, items=ITEMS, users=USERS, seed=SEED)


def generate_child(out: str, marks: str) -> None:
    from shelfwise.data.synthetic import write_shop

    mark = _Marks(Path(marks))
    write_shop(_config(EVENTS), Path(out), progress=lambda done, _total: mark(done))


def ingest_child(db: str, path: str, marks: str, var: str) -> None:
    from shelfwise.core.settings import Settings
    from shelfwise.data.readers import get_format
    from shelfwise.store import open_store
    from shelfwise.store.ingest import ingest_events

    mark = _Marks(Path(marks))
    settings = Settings(var_dir=Path(var), pseudonym_key=KEY)
    with open_store(f"sqlite:///{db}") as store:
        report = ingest_events(
            store, Path(path), get_format("csv"), settings, on_batch=lambda r: mark(r.records)
        )
    # the whole run's peak, the events indexes built at the end and the shoppers' refresh included
    final = {"mark": "end", "rows": report.records, "peak_rss": _vm("VmHWM"), "rss": _vm("VmRSS")}
    final |= {
        "seconds": round(time.perf_counter() - mark.started, 1),
        "cpu_seconds": round(time.process_time(), 1),
    }
    final |= {"load": round(os.getloadavg()[0], 2)}
    with Path(marks).open("a") as fh:
        fh.write(json.dumps(final) + "\n")


def store_train_child(db: str) -> dict[str, Any]:
    """ALS on every event the ingest step stored, read from the store as training reads it
    (``Dataset.from_store``: rows streamed in chunks into arrays, the matrix built in chunks)."""
    from shelfwise.features.dataset import Dataset
    from shelfwise.recommend.memory import MatrixShape
    from shelfwise.recommend.registry import model_from_config
    from shelfwise.store import open_store

    started, cpu = time.perf_counter(), time.process_time()
    with open_store(f"sqlite:///{db}") as store:
        ds = Dataset.from_store(store)
    built, built_cpu = round(time.perf_counter() - started, 1), round(time.process_time() - cpu, 1)
    data_rss, data_peak = _vm("VmRSS"), _vm("VmHWM")
    shape = MatrixShape.of(ds.matrix())
    matrix_peak = _vm("VmHWM")
    model = model_from_config(TRAIN_CONFIG)
    started, cpu = time.perf_counter(), time.process_time()
    model.fit(ds)
    return {
        "events": len(ds),
        "users": ds.n_users,
        "items": ds.n_items,
        "nnz": shape.nnz,
        "config": TRAIN_CONFIG,
        "data_seconds": built,
        "data_cpu_seconds": built_cpu,
        "train_seconds": round(time.perf_counter() - started, 1),
        "train_cpu_seconds": round(time.process_time() - cpu, 1),
        "data_rss": data_rss,
        "data_peak_rss": data_peak,
        "matrix_peak_rss": matrix_peak,
        "peak_rss": _vm("VmHWM"),
        "estimate_bytes": model.fit_bytes(shape),
        "load": round(os.getloadavg()[0], 2),
    }


def train_child(events: int) -> dict[str, Any]:
    """ALS on the first ``events`` generated events: the data's resident set, then the fit's."""
    from benchmarks.bench_scale import _dataset
    from shelfwise.recommend.memory import MatrixShape
    from shelfwise.recommend.registry import model_from_config
    from shelfwise.recommend.sizing import choose_model

    started, cpu = time.perf_counter(), time.process_time()
    ds = _dataset(ITEMS, USERS, events)
    built, built_cpu = round(time.perf_counter() - started, 1), round(time.process_time() - cpu, 1)
    data_rss = _vm("VmRSS")
    shape = MatrixShape.of(ds.matrix())
    auto = choose_model(shape)[0]["model"]
    model = model_from_config(TRAIN_CONFIG)
    started, cpu = time.perf_counter(), time.process_time()
    model.fit(ds)
    return {
        "events": events,
        "config": TRAIN_CONFIG,
        "auto_choice": auto,
        "data_seconds": built,
        "data_cpu_seconds": built_cpu,
        "train_seconds": round(time.perf_counter() - started, 1),
        "train_cpu_seconds": round(time.process_time() - cpu, 1),
        "data_rss": data_rss,
        "peak_rss": _vm("VmHWM"),
        "estimate_bytes": model.fit_bytes(shape),
        "load": round(os.getloadavg()[0], 2),
    }


def _run(code: str, args: list[str], timeout: float) -> tuple[str, str, float]:
    """``code`` in a fresh interpreter; (status, last stdout line, seconds)."""
    env = {**os.environ, "SHELFWISE_PROGRESS": "0", "PYTHONPATH": str(ROOT / "src")}
    started = time.perf_counter()
    timeout = _box(timeout)
    if timeout < 20:
        return "deadline (not started)", "", 0.0
    try:
        done = subprocess.run(
            [sys.executable, "-c", code, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=ROOT,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "time box", "", round(time.perf_counter() - started, 1)
    took = round(time.perf_counter() - started, 1)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        return f"failed: exit {done.returncode}: {last[:200]}", "", took
    lines = done.stdout.strip().splitlines()
    return "done", lines[-1] if lines else "", took


def _read_marks(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _log(msg: str) -> None:
    print(f"  {time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


def run() -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": NAME,
        "events": EVENTS,
        "items": ITEMS,
        "users": USERS,
        "budget": BUDGET,
        "deadline": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(DEADLINE)) if DEADLINE else None,
        "load_at_start": list(os.getloadavg()),
    }
    with tempfile.TemporaryDirectory(prefix="shelfwise-stream-") as tmp:
        root = Path(tmp)
        csv, gen_marks, ing_marks = root / "shop.csv", root / "generate.jsonl", root / "ingest.jsonl"
        if REUSE:
            # the same shop's file written before (outside the bench lock): the generate step is not
            # measured again, the time it would take goes to the steps after it
            csv = Path(REUSE)
            out["generate"] = {"status": f"not run: {csv.name} reused", "seconds": 0.0, "marks": []}
        else:
            _log(f"generate {EVENTS:,} events")
            code = "import sys, benchmarks.bench_stream as b; b.generate_child(sys.argv[1], sys.argv[2])"
            status, _, took = _run(code, [str(csv), str(gen_marks)], BUDGET["generate"])
            out["generate"] = {"status": status, "seconds": took, "marks": _read_marks(gen_marks)}
            _log(f"generate: {status} in {took} s")
        _log("ingest")
        code = "import sys, benchmarks.bench_stream as b; b.ingest_child(*sys.argv[1:5])"
        args = [str(root / "store.db"), str(csv), str(ing_marks), str(root / "var")]
        status, _, took = _run(code, args, BUDGET["ingest"])
        out["ingest"] = {"status": status, "seconds": took, "marks": _read_marks(ing_marks)}
        _log(f"ingest: {status} in {took} s")
        if BUDGET["store_train"] > 0 and (root / "store.db").exists():
            _log("train als on the stored events")
            code = "import sys, json, benchmarks.bench_stream as b; "
            code += "print(json.dumps(b.store_train_child(sys.argv[1])))"
            status, line, took = _run(code, [str(root / "store.db")], BUDGET["store_train"])
            row = {"status": status, "wall_seconds": took}
            if status == "done":
                row.update(json.loads(line))
            out["store_train"] = row
            _log(f"train on the store: {status} in {took} s")
    trains: list[dict[str, Any]] = []
    started = time.perf_counter()
    for events in TRAIN_SIZES:
        left = _box(BUDGET["train"] - (time.perf_counter() - started))
        if left < 20:
            trains.append({"events": events, "status": "time box (not started)"})
            continue
        _log(f"train als on {events:,} events")
        code = "import sys, json, benchmarks.bench_stream as b; "
        code += "print(json.dumps(b.train_child(int(sys.argv[1]))))"
        status, line, took = _run(code, [str(events)], left)
        row = {"events": events, "status": status, "wall_seconds": took}
        if status == "done":
            row.update(json.loads(line))
        trains.append(row)
        _log(f"train {events:,}: {status} in {took} s")
    out["train"] = trains
    out["load_at_end"] = list(os.getloadavg())
    out["table"] = _table(out)
    return out


def _mb(n: int | None) -> str:
    return "" if n is None else f"{n / 1e6:,.0f}"


def _table(out: dict[str, Any]) -> str:
    lines = [
        f"One synthetic shop of {out['events']:,} events ({out['items']:,} items, "
        f"{out['users']:,} shoppers), "
        "each step in its own process and time-boxed (seconds: "
        + ", ".join(f"{k} {v:.0f}" for k, v in out["budget"].items())
        + "). Peak RSS = the process's high-water mark when the mark was passed: flat = streaming.",
        "",
        "| step | rows | peak RSS MB | RSS MB | seconds | rows/s | CPU s | rows/CPU s | load (1 min) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for step in ("generate", "ingest"):
        for m in out[step]["marks"]:
            rate = m["rows"] / m["seconds"] if m["seconds"] else 0
            cpu = m.get("cpu_seconds")
            per_cpu = f"{m['rows'] / cpu:,.0f}" if cpu else ""
            lines.append(
                f"| {step} | {m['rows']:,} | {_mb(m['peak_rss'])} | {_mb(m['rss'])} | {m['seconds']} | "
                f"{rate:,.0f} | {'' if cpu is None else cpu} | {per_cpu} | {m['load']} |"
            )
        last = out[step]["marks"][-1]["rows"] if out[step]["marks"] else 0
        lines.append(
            f"| {step}: {out[step]['status']} after {out[step]['seconds']} s (last mark {last:,}) ||||||||| "
        )
    st = out.get("store_train")
    if st is not None:
        lines += [
            "",
            "| ALS on the stored events (Dataset.from_store) | events | status | data s (CPU) | fit s (CPU) "
            "| data RSS MB | peak after data MB | peak after matrix MB | peak RSS MB | estimate MB |",
            "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
            f"| als | {st.get('events', 0):,} | {st['status']} | {st.get('data_seconds', '')} "
            f"({st.get('data_cpu_seconds', '')}) | {st.get('train_seconds', '')} "
            f"({st.get('train_cpu_seconds', '')}) | "
            + " | ".join(
                _mb(st.get(k))
                for k in ("data_rss", "data_peak_rss", "matrix_peak_rss", "peak_rss", "estimate_bytes")
            )
            + " |",
        ]
    lines += [
        "",
        f"| train ({json.dumps(TRAIN_CONFIG)}, in memory) | events | status | data build s (CPU) "
        "| fit s (CPU) "
        "| data RSS MB | peak RSS MB "
        "| estimate MB | auto's choice | load |",
        "|---|---:|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in out["train"]:
        lines.append(
            f"| als | {r['events']:,} | {r['status']} | {r.get('data_seconds', '')} "
            f"({r.get('data_cpu_seconds', '')}) | {r.get('train_seconds', '')} "
            f"({r.get('train_cpu_seconds', '')}) | "
            f"{_mb(r.get('data_rss'))} | {_mb(r.get('peak_rss'))} | {_mb(r.get('estimate_bytes'))} | "
            f"{r.get('auto_choice', '')} | {r.get('load', '')} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(run()["table"])
