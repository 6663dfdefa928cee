"""Merchandising diversity knob: what NDCG@10 costs and what diversity it buys, on Online Retail.

Online Retail purchases, global temporal split (last 20% of time held out, the protocol of
``bench_recommend``); EASE (the best single model there) ranks each test user's top 100 unseen
items; the merchandising engine (``apply_rules`` with one ``diversity`` rule, as a placement would
run it) re-ranks them to 10 at each knob setting, for MMR and for calibrated category shares (the
target: the user's training purchases by category, Steck 2018). Categories are those ingest
annotates from titles (``shelfwise.data.attributes``): ``department > product type``.

Per setting: NDCG@10 (binary, held-out purchases), intra-list diversity (share of pairs in the top
10 from different categories; ``ild_department`` the same over the 13 departments), distinct
departments per list, and catalogue category coverage
(share of categories appearing in anyone's top 10). The data is in-sample for the knob: no default
is chosen from it (``Diversity.strength`` defaults to 0.3 and is the shop's to set).

    flock /tmp/shelfwise-bench.lock .venv/bin/python -m benchmarks.run merch
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
RESULTS = ROOT / "benchmarks" / "results"
STRENGTHS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7)
METHODS = ("mmr", "calibrated")
CANDIDATES = 100
K = 10
MAX_USERS = int(os.environ.get("SHELFWISE_BENCH_MERCH_USERS", "2000"))


def _log(msg: str) -> None:
    print(f"  {time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


def _ndcg(ranked: list[int], targets: set[int], k: int = K) -> float:
    dcg = sum(1.0 / np.log2(i + 2) for i, item in enumerate(ranked[:k]) if item in targets)
    ideal = sum(1.0 / np.log2(i + 2) for i in range(min(len(targets), k)))
    return dcg / ideal if ideal else 0.0


def _plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for method, marker in zip(METHODS, ("o", "s"), strict=True):
        pts = [r for r in rows if r["method"] == method]
        for ax, key, label in (
            (axes[0], "ild@10", "intra-list diversity @10 (categories)"),
            (axes[1], "ild_department@10", "intra-list diversity @10 (departments)"),
            (axes[2], "category_coverage@10", "catalogue category coverage @10"),
        ):
            ax.plot([p[key] for p in pts], [p["ndcg@10"] for p in pts], marker=marker, label=method)
            for p in pts:
                ax.annotate(
                    f"{p['strength']:g}",
                    (p[key], p["ndcg@10"]),
                    fontsize=7,
                    xytext=(3, 3),
                    textcoords="offset points",
                )
            ax.set_xlabel(label)
            ax.set_ylabel("NDCG@10")
            ax.grid(alpha=0.3)
    axes[1].legend(title="method (labels: strength)", loc="lower left")
    fig.suptitle("Online Retail: the diversity knob's trade-off (EASE top-100 re-ranked to 10)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run() -> dict[str, Any]:
    os.environ.setdefault("SHELFWISE_PROGRESS", "0")
    from shelfwise.data.attributes import annotate_title
    from shelfwise.data.schemas import Item
    from shelfwise.features.dataset import Dataset
    from shelfwise.features.splits import temporal_split
    from shelfwise.merchandising.diversity import intra_list_diversity
    from shelfwise.merchandising.engine import Candidate, apply_rules
    from shelfwise.merchandising.rules import RuleSet
    from shelfwise.recommend.registry import model_from_config

    _log("Online Retail: reading")
    retail = Dataset.from_file(RETAIL, "online-retail")
    purchases = retail.select(retail.type_mask(["purchase"]))
    split = temporal_split(purchases, test_fraction=0.2)
    train = split.train
    texts = train.item_attributes.text
    external = train.item_map.external.tolist()
    categories: list[str | None] = []
    for i in range(train.n_items):
        found = annotate_title(None if texts is None else str(texts[i]))
        categories.append(
            f"{found['department']} > {found['product_type']}" if "product_type" in found else None
        )
    n_categories = len({c for c in categories if c})
    labelled = sum(c is not None for c in categories) / train.n_items
    items = {external[i]: Item(item_id=external[i], category=categories[i]) for i in range(train.n_items)}
    _log(f"{train.n_items} items, {labelled:.1%} with a category, {n_categories} categories")

    started = time.perf_counter()
    model = model_from_config({"model": "ease"}).fit(train)
    fit_seconds = time.perf_counter() - started
    users = split.test_users
    rng = np.random.default_rng(0)
    if len(users) > MAX_USERS:
        users = np.sort(rng.choice(users, size=MAX_USERS, replace=False))
    seen = model.state.history  # users × items, what each user had in training
    scores = model.score_users(users)
    targets = {int(u): set(split.test[u].indices.tolist()) for u in users}
    cat_index = {c: j for j, c in enumerate(sorted({c for c in categories if c}))}
    dept_index = {d: j for j, d in enumerate(sorted({c.split(" > ")[0] for c in categories if c}))}

    pools: list[tuple[int, list[Candidate], dict[str, float]]] = []
    for row, u in enumerate(users):
        s = scores[row].astype(np.float64).copy()
        had = seen[u].indices
        s[had] = -np.inf
        top = np.argpartition(-s, CANDIDATES)[:CANDIDATES]
        top = top[np.argsort(-s[top], kind="stable")]
        shares: dict[str, float] = {}
        for i in had:
            c = categories[i]
            if c:
                shares[c] = shares.get(c, 0.0) + 1.0
        pools.append((int(u), [Candidate(external[i], float(s[i])) for i in top], shares))

    index_of = {e: i for i, e in enumerate(external)}
    rows: list[dict[str, Any]] = []
    for method in METHODS:
        for strength in STRENGTHS:
            t0 = time.perf_counter()
            rules = RuleSet.model_validate(
                {"rules": [{"kind": "diversity", "method": method, "strength": strength}]} if strength else {}
            )
            ndcgs, ilds, dept_ilds, depts, shown = [], [], [], [], set()
            for u, pool, shares in pools:
                out = apply_rules(pool, rules, items=items, k=K, target_shares=shares or None)
                ranked = [index_of[p.item_id] for p in out.items]
                ndcgs.append(_ndcg(ranked, targets[u]))
                labels = np.array([cat_index.get(categories[i] or "", -1) for i in ranked])
                ilds.append(intra_list_diversity(labels))
                dept = [(categories[i] or "").split(" > ")[0] for i in ranked]
                dept_ilds.append(intra_list_diversity(np.array([dept_index.get(d, -1) for d in dept])))
                depts.append(len({d for d in dept if d}))
                shown.update(categories[i] for i in ranked if categories[i])
            ms = (time.perf_counter() - t0) / len(pools) * 1000
            rows.append(
                {
                    "method": method,
                    "strength": strength,
                    "ndcg@10": round(float(np.mean(ndcgs)), 4),
                    "ild@10": round(float(np.mean(ilds)), 4),
                    "ild_department@10": round(float(np.mean(dept_ilds)), 4),
                    "departments@10": round(float(np.mean(depts)), 2),
                    "category_coverage@10": round(len(shown) / n_categories, 4),
                    "ms_per_list": round(ms, 3),
                }
            )
            _log(f"{method} {strength:g}: {rows[-1]}")
    RESULTS.mkdir(exist_ok=True)
    plot = RESULTS / "merch_diversity.png"
    _plot(rows, plot)
    cols = [
        "method",
        "strength",
        "ndcg@10",
        "ild@10",
        "ild_department@10",
        "departments@10",
        "category_coverage@10",
        "ms_per_list",
    ]
    table = "\n".join(
        [
            f"Online Retail purchases, temporal split; EASE top-{CANDIDATES} of {len(pools):,} test users "
            f"re-ranked to {K} by the merchandising engine; {n_categories} annotated categories "
            f"({labelled:.0%} of {train.n_items:,} items). Plot: `merch_diversity.png`.",
            "",
            "| " + " | ".join(cols) + " |",
            "|" + "---|" * len(cols),
            *("| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows),
        ]
    )
    return {
        "name": "merch_diversity",
        "protocol": "temporal split (last 20% of time), purchases; binary NDCG@10 on held-out purchases",
        "users": len(pools),
        "items": train.n_items,
        "categories": n_categories,
        "items_with_category": round(labelled, 4),
        "ease_fit_seconds": round(fit_seconds, 2),
        "rows": rows,
        "plot": plot.name,
        "table": table,
    }


if __name__ == "__main__":  # pragma: no cover
    import json

    result = run()
    (RESULTS / "merch_diversity.json").write_text(json.dumps(result, indent=2))
    print(result["table"])
