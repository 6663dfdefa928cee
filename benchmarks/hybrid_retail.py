"""The hybrid two-stage ranker against the best single model on Online Retail, with a paired test.

Same data and split as ``bench_recommend``: the vendored UCI Online Retail file, purchases only,
one global temporal cut-off (the last 20% of time held out), targets = items new to the shopper,
full ranking over all items. The hybrid is fitted on the training part only (it cuts that part
again by time to train its LambdaRank model: see ``shelfwise.recommend.hybrid``).

Reported: NDCG/Recall @10/@20 of both, a paired sign-flip test on per-user NDCG@10 with a bootstrap
interval of the difference, and in-process latency of one shopper's top-10 — stage 1 alone
(``candidates``) and the whole hybrid (``recommend``) — as wall-clock and as CPU time (the latter is
what the call costs on a machine shared with other work).

``bench_recommend`` calls ``run_hybrid_retail(split, best_single)``; run alone:

    .venv/bin/python -m benchmarks.hybrid_retail
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RETAIL = ROOT / "data" / "online_retail" / "online_retail.csv.gz"
SINGLES: list[dict[str, Any]] = [
    {"model": "ease"},
    {"model": "userknn"},
    {"model": "als"},
    {"model": "popular-decay"},
    {"model": "itemknn"},
    {"model": "content-tfidf"},
    {"model": "content-embed"},
]
LATENCY_USERS = 1000


def _log(msg: str) -> None:
    print(f"  {time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


def _percentiles(wall: list[float], cpu: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(float(np.percentile(wall, 50)), 3),
        "p99_ms": round(float(np.percentile(wall, 99)), 3),
        "cpu_p50_ms": round(float(np.percentile(cpu, 50)), 3),
        "cpu_p99_ms": round(float(np.percentile(cpu, 99)), 3),
    }


def latency(model: Any, users: list[str]) -> dict[str, dict[str, float]]:
    """p50/p99 of one shopper's stage 1 (``candidates``) and whole top-10 (``recommend``)."""
    out = {}
    for name, call in (
        ("stage1", lambda u: model.candidates([u])),
        ("hybrid", lambda u: model.recommend([u], k=10)),
    ):
        call(users[0])  # warm caches (LightGBM booster, BLAS)
        wall, cpu = [], []
        for u in users:
            w, c = time.perf_counter(), time.process_time()
            call(u)
            cpu.append((time.process_time() - c) * 1000)
            wall.append((time.perf_counter() - w) * 1000)
        out[name] = _percentiles(wall, cpu)
    return out


def run_hybrid_retail(
    split: Any, best_single: Any = None, *, config: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Fit the hybrid on ``split.train``, evaluate it, and test it against ``best_single``.

    ``best_single`` is the best single model's ``EvalResult`` on the same split (or a
    ``(model, EvalResult)`` pair as ``bench_recommend`` keeps them); None fits EASE here.
    """
    from shelfwise.evaluation.protocol import fit_and_evaluate
    from shelfwise.evaluation.significance import paired_test

    if best_single is None:
        _log("best single model: fitting EASE")
        _, best_single = fit_and_evaluate(split, {"model": "ease"})
    if isinstance(best_single, tuple):
        best_single = best_single[1]
    _log("hybrid: fit (retrievers twice + LambdaRank) and rank")
    model, result = fit_and_evaluate(split, {"model": "hybrid", **(config or {})})
    if not np.array_equal(result.users, best_single.users):
        raise ValueError("the two models were evaluated on different users")
    test = paired_test(result.per_user["ndcg@10"], best_single.per_user["ndcg@10"])
    _log(f"hybrid ndcg@10={result.metrics['ndcg@10']:.4f} vs {best_single.model} p={test['p_value']:.2g}")
    users = model.user_map.to_external(result.users[:LATENCY_USERS])
    lat = latency(model, users)
    cols = ("recall@10", "ndcg@10", "recall@20", "ndcg@20", "coverage@10")
    rows = [
        {
            "model": f"shelfwise {best_single.model} (best single)",
            **{c: best_single.metrics[c] for c in cols},
        },
        {
            "model": "shelfwise hybrid",
            **{c: result.metrics[c] for c in cols},
            "train_seconds": round(model.train_seconds, 1),
        },
    ]
    lines = [
        "| model | " + " | ".join(cols) + " | train_seconds |",
        "|---|" + "---|" * (len(cols) + 1),
        *(
            "| "
            + " | ".join([r["model"], *(f"{r[c]:.4f}" for c in cols), str(r.get("train_seconds", ""))])
            + " |"
            for r in rows
        ),
        "",
        f"Paired sign-flip test on per-user NDCG@10 ({test['users']:,} users): "
        f"hybrid − {best_single.model} = {test['diff']:+.4f} "
        f"(95% CI {test['ci_low']:+.4f} … {test['ci_high']:+.4f}), p = {test['p_value']:.2g}.",
        "",
        "Top-10 for one shopper in-process, ms (wall p50 / p99; CPU time p50 / p99): "
        + "; ".join(
            f"{k} {v['p50_ms']} / {v['p99_ms']} (CPU {v['cpu_p50_ms']} / {v['cpu_p99_ms']})"
            for k, v in lat.items()
        ),
    ]
    return {
        "name": "hybrid_retail",
        "rows": rows,
        "paired_test": test,
        "latency_top10_one_user": lat,
        "ranker": getattr(model, "fit_info", {}),
        "config": model.config.model_dump(mode="json"),
        "table": "\n".join(lines),
    }


def main() -> None:
    os.environ.setdefault("SHELFWISE_PROGRESS", "0")
    from shelfwise.evaluation.protocol import basket_hit_rate, fit_and_evaluate
    from shelfwise.features.dataset import Dataset
    from shelfwise.features.splits import temporal_split

    _log("Online Retail: reading")
    retail = Dataset.from_file(RETAIL, "online-retail")
    purchases = retail.select(retail.type_mask(["purchase"]))
    split = temporal_split(purchases, test_fraction=0.2)
    singles = []
    for cfg in SINGLES:
        _, res = fit_and_evaluate(split, cfg)
        _log(f"{cfg['model']}: ndcg@10={res.metrics['ndcg@10']:.4f} recall@10={res.metrics['recall@10']:.4f}")
        singles.append(res)
    best = max(singles, key=lambda r: r.metrics["ndcg@10"])
    out = run_hybrid_retail(split, best)
    bt, _ = fit_and_evaluate(split, {"model": "bought-together"})
    held_out = purchases.select(purchases.ts >= split.info["cutoff_ms"])  # type: ignore[index]
    baskets = basket_hit_rate(bt, held_out, k=10)
    print(
        "Single models (NDCG@10 / Recall@10): "
        + ", ".join(f"{r.model} {r.metrics['ndcg@10']:.4f} / {r.metrics['recall@10']:.4f}" for r in singles)
    )
    print(out["table"])
    print(f"Ranker: {out['ranker']}")
    print(
        f"bought-together basket hit rate @10: {baskets['basket_hr@10']:.4f} "
        f"over {int(baskets['baskets']):,} held-out baskets"
    )


if __name__ == "__main__":
    main()
