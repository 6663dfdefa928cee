"""Recommenders side by side, full ranking (no sampled negatives), on real data.

1. Amazon Beauty 5-core (research-only; read from ../shared/data, never copied here), leave-one-out:
   every shelfwise model, plus a peer in the same run: ``implicit``'s own ALS scored by
   ``implicit.evaluation.ranking_metrics_at_k`` on the identical split. (For one held-out item per user
   implicit's "precision@K" is hits / min(K, 1), i.e. Recall@K.) RecBole's SASRec and RecTools are not
   run here: their pins (numpy<2, pandas<2.2…) clash with this venv, so they need a venv of their own.
   The same fitted implicit model is also run through shelfwise's evaluation: the two must agree.
2. Online Retail (vendored, CC BY 4.0), purchases, global temporal split (last 20% of time held out):
   the same models, and bought-together's hit rate on held-out baskets (hide one item of each basket,
   recommend from the rest of the cart).
3. REES46 sample (../shared/data, 2.8 hours of a multi-category store), temporal split.
4. In-process latency of one user's top-10 (p50/p99 over 1,000 calls) on Beauty.

    python -m benchmarks.run recommend
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SHELFWISE_SHARED_DATA", ROOT.parent / "shared" / "data"))
BEAUTY = SHARED / "amazon_beauty" / "Beauty.txt"
REES46 = SHARED / "rees46_sample" / "events.csv"
RETAIL = ROOT / "data" / "online_retail" / "online_retail.csv.gz"

BEAUTY_MODELS: list[dict[str, Any]] = [
    {"model": "popular"},
    {"model": "itemknn"},
    {"model": "userknn"},
    {"model": "ease", "l2": 250.0},
    {"model": "als"},
    {"model": "bpr"},
    {"model": "two-tower"},
    {"model": "sasrec"},  # defaults; chosen on Beauty (in-sample here, see bench_sequence)
]
# Beauty has no item text, so the content models have nothing to read there
COMPRESSION = ("float32", "float16", "int8")
RETAIL_MODELS: list[dict[str, Any]] = [
    {"model": "popular"},
    {"model": "popular-decay"},
    {"model": "trending"},
    {"model": "itemknn"},
    {"model": "userknn"},
    {"model": "ease"},
    {"model": "als"},
    {"model": "bpr"},
    {"model": "content-tfidf"},
    {"model": "content-embed"},
    {"model": "bought-together"},
]


def _log(msg: str) -> None:
    print(f"  {time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


def _evaluate_all(split: Any, configs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from rich.console import Console
    from rich.progress import Progress

    from shelfwise.evaluation.protocol import fit_and_evaluate

    rows, fitted = [], {}
    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("models", total=len(configs))
        for cfg in configs:
            bar.update(task, description=f"fit + rank: {cfg['model']}")
            model, result = fit_and_evaluate(split, cfg)
            m = result.metrics
            rows.append(
                {
                    "model": f"shelfwise {cfg['model']}",
                    "recall@10": m["recall@10"],
                    "ndcg@10": m["ndcg@10"],
                    "recall@20": m["recall@20"],
                    "ndcg@20": m["ndcg@20"],
                    "coverage@10": m["coverage@10"],
                    "train_seconds": round(model.train_seconds, 2),
                    "eval_seconds": result.info["eval_seconds"],
                }
            )
            fitted[cfg["model"]] = (model, result)
            _log(
                f"{cfg['model']}: ndcg@10={m['ndcg@10']:.4f} recall@10={m['recall@10']:.4f} "
                f"train {model.train_seconds:.1f}s"
            )
            bar.advance(task)
    return rows, fitted


class _FactorScorer:
    """An ``implicit`` model seen through shelfwise's evaluation (a cross-check of the two evaluators)."""

    def __init__(self, model: Any) -> None:
        self.users = np.ascontiguousarray(model.user_factors, np.float32)
        self.items = np.ascontiguousarray(model.item_factors, np.float32)

    def score_users(self, users: np.ndarray) -> np.ndarray:
        return self.users[users] @ self.items.T


def _implicit_peer(split: Any) -> list[dict[str, Any]]:
    """implicit's ALS with its own defaults and its own evaluation on our split; then the very same
    fitted model through shelfwise's evaluation, which must give the same figures."""
    import scipy.sparse as sp
    from implicit.cpu.als import AlternatingLeastSquares
    from implicit.evaluation import ranking_metrics_at_k
    from threadpoolctl import threadpool_limits

    from shelfwise.evaluation.ranking import evaluate

    train = sp.csr_matrix(split.train.matrix())
    test = sp.csr_matrix(split.test)
    out: dict[str, Any] = {"model": "peer: implicit ALS (its defaults) + implicit.evaluation"}
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(random_state=0)
        started = time.perf_counter()
        model.fit(train, show_progress=False)
        out["train_seconds"] = round(time.perf_counter() - started, 2)
    for k in (10, 20):
        m = ranking_metrics_at_k(model, train, test, K=k, show_progress=False)
        out[f"recall@{k}"] = float(m["precision"])
        out[f"ndcg@{k}"] = float(m["ndcg"])
    ours = evaluate(_FactorScorer(model), split).metrics
    check = {
        "model": "same implicit ALS model, shelfwise evaluation (cross-check)",
        **{key: ours[key] for key in ("recall@10", "ndcg@10", "recall@20", "ndcg@20", "coverage@10")},
        "train_seconds": out["train_seconds"],
    }
    return [out, check]


PEER_VENV = Path(
    os.environ.get("SHELFWISE_PEER_VENV", Path.home() / ".cache" / "shelfwise-peers" / "rectools")
)
RECTOOLS_SCRIPT = """
import json, sys, time
import numpy as np, pandas as pd
from rectools import Columns
from rectools.dataset import Dataset
from rectools.metrics import NDCG, Recall, calc_metrics
from rectools.models import EASEModel
d = np.load(sys.argv[1])
train = pd.DataFrame({Columns.User: d["train_u"], Columns.Item: d["train_i"], Columns.Weight: 1.0,
                      Columns.Datetime: pd.Timestamp("2014-01-01")})
test = pd.DataFrame({Columns.User: d["test_u"], Columns.Item: d["test_i"]})
ds = Dataset.construct(train)
model = EASEModel(regularization=float(sys.argv[2]))
t = time.perf_counter(); model.fit(ds); fit_s = time.perf_counter() - t
reco = model.recommend(users=np.unique(d["test_u"]), dataset=ds, k=20, filter_viewed=True)
metrics = {f"{m}@{k}": cls(k=k, **kw) for k in (10, 20)
           for m, cls, kw in (("ndcg", NDCG, {"divide_by_achievable": True}), ("recall", Recall, {}))}
out = calc_metrics(metrics, reco, interactions=test)
out["train_seconds"] = round(fit_s, 2)
print(json.dumps({k: float(v) for k, v in out.items()}))
"""


def _rectools_peer(split: Any, l2: float) -> dict[str, Any] | str:
    """RecTools' EASE and RecTools' metrics on our identical split, in a venv of its own (its pins,
    numpy<2 among them, clash with ours). Set up on first use; returns why when it cannot run."""
    import json
    import subprocess
    import tempfile

    python = PEER_VENV / "bin" / "python"
    if not python.exists():
        _log(f"setting up the RecTools peer venv in {PEER_VENV}")
        made = subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], capture_output=True, text=True)
        pip = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "rectools==0.19.0"], capture_output=True, text=True
        )
        if made.returncode or pip.returncode:
            return f"RecTools peer not run: venv/pip failed ({(made.stderr + pip.stderr).strip()[-200:]})"
    train = split.train
    test_u, test_i = split.test.nonzero()
    with tempfile.TemporaryDirectory() as tmp:
        npz = Path(tmp) / "split.npz"
        np.savez(npz, train_u=train.users, train_i=train.items, test_u=test_u, test_i=test_i)
        run = subprocess.run(
            [str(python), "-c", RECTOOLS_SCRIPT, str(npz), str(l2)],
            capture_output=True,
            text=True,
            timeout=3600,
        )
    if run.returncode:
        return f"RecTools peer failed: {run.stderr.strip().splitlines()[-1] if run.stderr.strip() else '?'}"
    return {"model": f"peer: RecTools EASE (l2={l2}) + RecTools metrics", **json.loads(run.stdout)}


def _table(rows: list[dict[str, Any]], cols: list[str]) -> str:
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c, "")
            cells.append(
                f"{v:.4f}" if isinstance(v, float) and c not in ("train_seconds", "eval_seconds") else str(v)
            )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _latency(model: Any, users: list[str], n: int = 1000) -> dict[str, float]:
    times = []
    for u in users[:n]:
        t = time.perf_counter()
        model.recommend([u], k=10)
        times.append((time.perf_counter() - t) * 1000)
    return {
        "p50_ms": round(float(np.percentile(times, 50)), 3),
        "p99_ms": round(float(np.percentile(times, 99)), 3),
    }


def _recbole(split: Any, fitted: dict[str, Any], rows: list[dict[str, Any]], result: dict[str, Any]) -> str:
    """RecBole's SASRec on the identical split (a venv of its own); our SASRec against it."""
    from benchmarks.recbole_peer import recbole_sasrec

    _log("peer: RecBole SASRec (its own venv; capped by a time budget)")
    peer = recbole_sasrec(split, time_budget_s=float(os.environ.get("SHELFWISE_RECBOLE_BUDGET", 1800)))
    if isinstance(peer, str):
        return peer
    rows.extend(peer.get("rows", []))
    result["recbole"] = {k: v for k, v in peer.items() if k != "rows"}
    if "sasrec" not in fitted:
        return "RecBole SASRec ran; shelfwise SASRec was not in this run."
    ours = fitted["sasrec"]
    theirs = peer["comparable"]  # RecBole's lists with the history masked, scored like ours
    ratio_ndcg = ours[1].metrics["ndcg@10"] / theirs["ndcg@10"] if theirs.get("ndcg@10") else float("nan")
    ratio_time = ours[0].train_seconds / peer["train_seconds"] if peer.get("train_seconds") else float("nan")
    result["sasrec_vs_recbole"] = {"ndcg@10_ratio": ratio_ndcg, "train_time_ratio": ratio_time}
    converged = "converged" if peer.get("converged") else "stopped by the time budget, not converged"
    return (
        f"SASRec vs RecBole's SASRec on the same split: NDCG@10 ours/theirs = {ratio_ndcg:.2f}, "
        f"training time ours/theirs = {ratio_time:.2f} (RecBole: {peer.get('epochs', '?')} epochs in "
        f"{peer.get('train_seconds', '?')} s incl. its per-epoch validation, {converged}; it trains "
        "without each user's validation item)."
    )


def _compression(split: Any, full: dict[str, float]) -> list[dict[str, Any]]:
    """The same ALS factors held as float32 / float16 / int8: memory and NDCG@10."""
    from shelfwise.evaluation.protocol import fit_and_evaluate

    out = []
    for precision in COMPRESSION:
        model, res = fit_and_evaluate(split, {"model": "als", "serving_precision": precision})
        out.append(
            {"precision": precision, "item_bytes": model.items.nbytes, "ndcg@10": res.metrics["ndcg@10"]}
        )
    base = out[0]
    for row in out:
        row["memory_ratio"] = round(base["item_bytes"] / row["item_bytes"], 2)
        row["ndcg_change"] = f"{(row['ndcg@10'] / base['ndcg@10'] - 1) * 100:+.2f}%"
    return out


def run() -> dict[str, Any]:
    os.environ.setdefault("SHELFWISE_PROGRESS", "0")
    from benchmarks.hybrid_retail import run_hybrid_retail
    from shelfwise.evaluation.protocol import basket_hit_rate
    from shelfwise.features.dataset import Dataset
    from shelfwise.features.splits import leave_one_out, temporal_split

    result: dict[str, Any] = {"name": "recommend"}
    sections = []
    cols = ["model", "recall@10", "ndcg@10", "recall@20", "ndcg@20", "coverage@10", "train_seconds"]

    if BEAUTY.is_file():
        _log("Amazon Beauty: reading")
        ds = Dataset.from_file(BEAUTY, "amazon-beauty")
        split = leave_one_out(ds)
        rows, fitted = _evaluate_all(split, BEAUTY_MODELS)
        _log("peer: implicit")
        rows.extend(_implicit_peer(split))
        _log("peer: RecTools")
        peer = _rectools_peer(split, l2=250.0)
        if isinstance(peer, str):
            sections += [peer, ""]
        else:
            rows.append(peer)
        recbole_note = _recbole(split, fitted, rows, result)
        compression = _compression(split, fitted["als"][1].metrics)
        result["compression"] = compression
        result["amazon_beauty"] = {
            "protocol": "leave-one-out, full ranking over all items, train items excluded",
            "users": int(split.test.nnz),
            "items": ds.n_items,
            "events": len(ds),
            "rows": rows,
        }
        users = ds.user_map.external.tolist()
        latency = {
            name: _latency(fitted[name][0], users)
            for name in ("als", "itemknn", "ease", "popular", "sasrec")
            if name in fitted
        }
        result["latency_top10_one_user"] = latency
        sections += [
            f"### Amazon Beauty, leave-one-out, full ranking "
            f"({split.test.nnz:,} users, {ds.n_items:,} items)",
            "",
            _table(rows, cols),
            "",
            "Latency of `recommend([user], k=10)` in-process (ms): "
            + ", ".join(f"{k} p50 {v['p50_ms']} / p99 {v['p99_ms']}" for k, v in latency.items()),
            "",
            recbole_note,
            "",
            "ALS item factors served at lower precision (same fitted factors, full ranking):",
            "",
            _table(compression, ["precision", "item_bytes", "memory_ratio", "ndcg@10", "ndcg_change"]),
            "",
        ]
    else:
        sections += [f"Amazon Beauty skipped: {BEAUTY} not found.", ""]

    _log("Online Retail: reading")
    retail = Dataset.from_file(RETAIL, "online-retail")
    purchases = retail.select(retail.type_mask(["purchase"]))
    tsplit = temporal_split(purchases, test_fraction=0.2)
    rows, fitted = _evaluate_all(tsplit, RETAIL_MODELS)
    _log("Online Retail: hybrid two-stage ranker vs the best single model")
    best = max(
        (name for name in fitted if name != "bought-together"), key=lambda n: fitted[n][1].metrics["ndcg@10"]
    )
    hybrid = run_hybrid_retail(tsplit, fitted[best])
    result["online_retail_hybrid"] = {k: v for k, v in hybrid.items() if k != "table"}
    held_out = purchases.select(purchases.ts >= tsplit.info["cutoff_ms"])  # type: ignore[index]
    baskets = {
        name: basket_hit_rate(fitted[name][0], held_out, k=10)
        for name in ("bought-together", "itemknn", "popular")
    }
    result["online_retail"] = {
        "protocol": "global temporal split (last 20% of time), targets = items new to the user",
        **{k: v for k, v in (tsplit.info or {}).items()},
        "rows": rows,
        "basket_hit_rate": baskets,
    }
    sections += [
        f"### Online Retail purchases, temporal split ({tsplit.info['users_evaluated']:,} users, "  # type: ignore[index]
        f"{purchases.n_items:,} items)",
        "",
        _table(rows, cols),
        "",
        "Held-out baskets (hide one item, recommend from the rest of the cart), hit rate @10: "
        + ", ".join(f"{k} {v['basket_hr@10']:.3f}" for k, v in baskets.items())
        + f" over {int(baskets['popular']['baskets']):,} baskets",
        "",
        "#### Hybrid two-stage ranker (LambdaRank over several retrievers) vs the best single model",
        "",
        hybrid["table"],
        "",
    ]
    if REES46.is_file():
        _log("REES46 sample: reading")
        rees = Dataset.from_file(REES46, "rees46")
        rsplit = temporal_split(rees, test_fraction=0.2)
        rows, _ = _evaluate_all(
            rsplit,
            [c for c in RETAIL_MODELS if c["model"] not in ("bpr", "content-embed")]
            + [
                {
                    "model": "hybrid",
                    "retrievers": [
                        {"model": "itemknn"},
                        {"model": "popular-decay"},
                        {"model": "content-tfidf"},
                    ],
                }
            ],
        )
        result["rees46_sample"] = {
            "protocol": "global temporal split (last 20% of time), all event types, targets new to the user",
            **{k: v for k, v in (rsplit.info or {}).items()},
            "rows": rows,
        }
        sections += [
            f"### REES46 sample (2.8 hours of events), temporal split "
            f"({rsplit.info['users_evaluated']:,} users, {rees.n_items:,} items)",  # type: ignore[index]
            "",
            _table(rows, cols),
            "",
        ]
    result["table"] = "\n".join(sections)
    return result


if __name__ == "__main__":
    print(run()["table"])
