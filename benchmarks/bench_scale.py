"""The catalogue-size table (issue 19): each model family at 10k, 50k, 200k and 1M items.

Data: ``shelfwise.data.synthetic`` shops (Zipf item popularity, Pareto shoppers, sessions, churn),
views + carts + purchases, global temporal split (last 20% of time held out). Sizes are bounded so
the whole run takes < 15 min on 2 cores: events grow with the catalogue but far slower (see
``SIZES``), torch models get ``TORCH_SECONDS`` of training, and NDCG@10 is computed (full ranking)
over ``EVAL_USERS`` sampled held-out shoppers. Each (family, size) runs in its own process, so a
crash is a row of the table, not the end of the run; its peak memory is the process's peak resident
set during fit + evaluation (``/proc/self/clear_refs`` resets it after the data is built), beside
the family's own estimate (``Recommender.fit_bytes``), which is what the guard compares with the
budget. A refusal (memory, or EASE's n³ time above 40k items) is recorded with its one-line message.

    python -m benchmarks.run scale
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# (items, users, events): events ~ 2x users; a 1M-item shop with 1.2M events is sparse, as new big shops are
SIZES: list[tuple[int, int, int]] = [
    (10_000, 20_000, 150_000),
    (50_000, 30_000, 250_000),
    (200_000, 40_000, 350_000),
    (1_000_000, 60_000, 500_000),
]
TORCH_SECONDS = 10.0
TORCH_MAX_ITEMS = 50_000  # above this the torch families are not run (time), only their estimate shown
EVAL_USERS = 500
FAMILIES: list[dict[str, Any]] = [
    {"model": "popular"},
    {"model": "itemknn"},
    {"model": "als"},
    {"model": "ease"},
    # one epoch: on the shared 2-core machine an epoch alone can pass max_train_seconds
    {"model": "sasrec", "max_train_seconds": TORCH_SECONDS, "epochs": 1, "threads": 2},
    {"model": "two-tower", "max_train_seconds": TORCH_SECONDS, "epochs": 1, "threads": 2},
    # bpr shares ALS's factorisation code; content, bought-together and hybrid need item text or baskets
    # (content: memory linear in items; hybrid: the sum of its retrievers' estimates)
]
CELL_TIMEOUT = 120.0  # seconds per (family, size) process
RUN_BUDGET = 14 * 60.0  # the whole benchmark; cells past it are recorded as skipped
ROOT = Path(__file__).resolve().parents[1]


def _dataset(items: int, users: int, events: int) -> Any:
    """The shop as a ``Dataset`` over its whole catalogue: items nobody touched yet still get a
    dense id (a shop's catalogue is larger than what its events reach), as ``Dataset.from_store``
    gives them."""
    import numpy as np

    from shelfwise.data.synthetic import ShopConfig, generate_events
    from shelfwise.features.dataset import Dataset, IdMap, ItemAttributes

    cfg = ShopConfig(events=events, items=items, users=users, seed=19, return_rate=0.0)
    cols: dict[str, list[Any]] = {"user": [], "item": [], "ts": [], "kind": []}
    for chunk in generate_events(cfg):
        for k in cols:
            cols[k].append(chunk[k])
    a = {k: np.concatenate(v) for k, v in cols.items()}
    order = np.argsort(a["ts"], kind="stable")
    # type codes index the sorted names, as Dataset.from_events makes them
    names = ("cart", "purchase", "view")
    code = np.array([2, 0, 1, 1], np.int8)[a["kind"]]
    return Dataset(
        users=a["user"][order].astype(np.int32),
        items=a["item"][order].astype(np.int32),
        ts=a["ts"][order],
        types=code[order],
        weight=np.ones(len(order), np.float32),
        type_names=names,
        user_map=IdMap(np.array([f"u{u}" for u in range(users)])),
        item_map=IdMap(np.array([f"i{i}" for i in range(items)])),
        item_attributes=ItemAttributes.empty(items),
    )


def _vm(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def cell(config: dict[str, Any], items: int, users: int, events: int) -> dict[str, Any]:
    """One (family, size): build the data, fit on the training part, NDCG@10 on sampled held-out users."""
    import dataclasses

    import numpy as np
    import scipy.sparse as sp

    from shelfwise.core.errors import ShelfwiseError
    from shelfwise.core.memory import memory_budget
    from shelfwise.evaluation.protocol import make_split
    from shelfwise.evaluation.ranking import evaluate
    from shelfwise.recommend.memory import MatrixShape
    from shelfwise.recommend.registry import model_from_config

    ds = _dataset(items, users, events)
    split = make_split(ds, "temporal", test_fraction=0.2)
    test_users = split.test_users
    rng = np.random.default_rng(0)
    keep = np.zeros(split.test.shape[0], np.float32)
    keep[rng.choice(test_users, min(EVAL_USERS, len(test_users)), replace=False)] = 1
    split = dataclasses.replace(split, test=sp.csr_matrix(sp.diags(keep) @ split.test))
    split.test.eliminate_zeros()
    model = model_from_config(config)
    shape = MatrixShape.of(split.train.matrix())
    row: dict[str, Any] = {
        "train_events": len(split.train),
        "items_in_train": shape.n_items,
        "estimate_bytes": model.fit_bytes(shape),
        "budget_bytes": memory_budget(),
    }
    Path("/proc/self/clear_refs").write_text("5")  # peak RSS from here on: fit + evaluation only
    base = _vm("VmRSS")
    started = time.perf_counter()
    try:
        model.fit(split.train)
    except ShelfwiseError as exc:
        return {**row, "status": "refused", "message": str(exc)}
    row["train_seconds"] = round(time.perf_counter() - started, 2)
    result = evaluate(model, split, name=model.name, ks=(10,))
    row["ndcg@10"] = round(float(result.metrics["ndcg@10"]), 5)
    row["peak_bytes"] = _vm("VmHWM")
    row["peak_above_data_bytes"] = max(0, row["peak_bytes"] - base)
    return {**row, "status": "ok"}


def _child(config: dict[str, Any], size: tuple[int, int, int], timeout: float) -> dict[str, Any]:
    code = (
        "import json, sys; from benchmarks.bench_scale import cell; "
        "print(json.dumps(cell(json.loads(sys.argv[1]), *map(int, sys.argv[2:5]))))"
    )
    env = {**os.environ, "SHELFWISE_PROGRESS": "0"}
    try:
        done = subprocess.run(
            [sys.executable, "-c", code, json.dumps(config), *map(str, size)],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=ROOT,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "message": f"no result within {timeout:.0f} s"}
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        return {"status": "crashed", "message": f"exit {done.returncode}: {last[:200]}"}
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _estimate(config: dict[str, Any], size: tuple[int, int, int]) -> int:
    from shelfwise.recommend.memory import MatrixShape
    from shelfwise.recommend.registry import model_from_config

    items, users, events = size
    return model_from_config(config).fit_bytes(MatrixShape(users, items, int(events * 0.8)))


def _auto(size: tuple[int, int, int]) -> str:
    from shelfwise.recommend.memory import MatrixShape
    from shelfwise.recommend.sizing import choose_model

    items, users, events = size
    return choose_model(MatrixShape(users, items, int(events * 0.8)))[0]["model"]


def _gb(n: float | None) -> str:
    return "" if n is None else f"{n / 1e9:.2f}"


def run() -> dict[str, Any]:
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    for size in SIZES:
        for config in FAMILIES:
            left = RUN_BUDGET - (time.perf_counter() - started)
            name = config["model"]
            if left < 20:
                result: dict[str, Any] = {"status": "skipped", "message": "run time budget spent"}
            elif name in ("sasrec", "two-tower") and size[0] > TORCH_MAX_ITEMS:
                result = {
                    "status": "not run",
                    "estimate_bytes": _estimate(config, size),
                    "message": f"torch families run up to {TORCH_MAX_ITEMS:,} items here (time)",
                }
            else:
                print(f"  {name} at {size[0]:,} items…", file=sys.stderr, flush=True)
                result = _child(config, size, min(CELL_TIMEOUT, left))
            rows.append({"model": name, "items": size[0], "users": size[1], "events": size[2], **result})
    autos = {size[0]: _auto(size) for size in SIZES}
    lines = [
        "| items | events | model | status | train s | peak GB (fit+eval) | estimate GB | NDCG@10 | note |",
        "|---:|---:|---|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        note = r.get("message", "")
        if r["model"] == autos[r["items"]]:
            note = ("**auto's choice** " + note).strip()
        lines.append(
            f"| {r['items']:,} | {r['events']:,} | {r['model']} | {r['status']} | "
            f"{r.get('train_seconds', '')} | "
            f"{_gb(r.get('peak_above_data_bytes'))} | {_gb(r.get('estimate_bytes'))} | "
            f"{r.get('ndcg@10', '')} | {note} |"
        )
    table = "\n".join(
        [
            f"Synthetic shops (`shelfwise generate`'s model, seed 19), temporal split, NDCG@10 over "
            f"{EVAL_USERS:,} sampled held-out shoppers (full ranking); torch models trained "
            f"{TORCH_SECONDS:.0f} s; each cell its own process (≤ {CELL_TIMEOUT:.0f} s). Peak = resident "
            "memory added during fit + evaluation; estimate = the family's own, which the guard checks "
            "against the budget (80% of available memory, or SHELFWISE_MEMORY_LIMIT).",
            "",
            *lines,
        ]
    )
    return {"name": "scale", "table": table, "rows": rows, "auto": autos, "sizes": SIZES}
