"""Trust figures (issue 18): shilling robustness on Online Retail and REES46, the ε ledger's
refusal through the CLI, the utility/ε curve of the private aggregates, the NDCG/exposure
trade-off of the calibrated re-ranking, and the fidelity of the hybrid's reasons.

Thresholds of the shilling detector were chosen on the REES46 sample (in-sample there) and are
reported unchanged on Online Retail (out of sample); the DP contribution bounds are fixed defaults.

    python -m benchmarks.run trust
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

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SHELFWISE_SHARED_DATA", ROOT.parent / "shared" / "data"))
REES46 = SHARED / "rees46_sample" / "events.csv"
RETAIL = ROOT / "data" / "online_retail" / "online_retail.csv.gz"
RESULTS = Path(__file__).parent / "results"
EPSILONS = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
REPEATS = 5
ATTACKS = ("push", "view-burst", "rating-burst", "nuke", "bots")


def _log(msg: str) -> None:
    print(f"  {time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


def _table(rows: list[dict[str, Any]], cols: list[str]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4f}"
        return "" if v is None else str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def _datasets() -> dict[str, Any]:
    from shelfwise.features.dataset import Dataset

    out = {"online_retail": Dataset.from_file(RETAIL, "online-retail")}
    if REES46.is_file():
        out["rees46"] = Dataset.from_file(REES46, "rees46")
    return out


def shilling(datasets: dict[str, Any], previous: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Every attack and model, or (``TRUST_SHILLING_ATTACKS=push``, ``TRUST_SHILLING_MODELS=itemknn``)
    only those named, the other rows carried over from ``previous`` (marked ``carried_from``)."""
    from shelfwise.evaluation.robustness import Attack, shilling_experiment

    only = {a for a in os.environ.get("TRUST_SHILLING_ATTACKS", "").split(",") if a}
    models = {m for m in os.environ.get("TRUST_SHILLING_MODELS", "").split(",") if m}
    rows = []
    plan: list[tuple[str, str, float, int]] = [
        (model, "push", share, targets)
        for model in ("ease", "itemknn")
        for share, targets in ((0.03, 3), (0.10, 1))
    ] + [("ease", kind, 0.03, 3) for kind in ATTACKS if kind != "push"]
    if only or models:

        def chosen(attack: str, model: str) -> bool:
            return (not only or attack in only) and (not models or model in models)

        plan = [p for p in plan if chosen(p[1], p[0])]
        rows = [
            {**r, "carried_from": r.get("carried_from", _previous().get("measured_at", "?"))}
            for r in previous or []
            if not chosen(r["attack"], r["model"])
        ]
    for name, ds in datasets.items():
        memo: dict[Any, Any] = {}  # the fits that do not depend on the attack, once per data and model
        for model_name, kind, share, targets in plan:
            started = time.perf_counter()
            r = shilling_experiment(
                ds,
                model={"model": model_name},
                attack=Attack(kind=kind, fake_share=share, targets=targets),  # type: ignore[arg-type]
                compare=("accounts",) if kind in ("push", "nuke") else (),
                memo=memo,
            )
            r["fake_share"] = share
            r["data"] = name
            r["sample"] = "in-sample (thresholds chosen here)" if name == "rees46" else "out-of-sample"
            r["precision"] = round(r["detection"]["precision"], 4)
            r["recall"] = round(r["detection"]["recall"], 4)
            r["seconds"] = round(time.perf_counter() - started, 1)
            _log(
                f"shilling {name} {kind}: "
                + json.dumps(
                    {
                        k: r[k]
                        for k in (
                            "lift_cut",
                            "ndcg_change",
                            "ndcg_change_vs_clean",
                            "ndcg_inflation_by_attack",
                            "ndcg_inflation_by_fillers",
                            "precision",
                            "recall",
                        )
                        if k in r
                    }
                )
            )
            rows.append(r)
    return rows


SEED_PLAN = (("rees46", "itemknn"), ("rees46", "ease"), ("online_retail", "itemknn"))


def shilling_seeds(datasets: dict[str, Any], seeds: tuple[int, ...] = (1, 2)) -> list[dict[str, Any]]:
    """The push at 3% again with other seeds (other targets, fakes and burst times): the defence's
    cohort fix (flagged accounts left out of the cohort cap) was found on REES46 seed 0, so these
    rows check it on draws it was not found on."""
    from shelfwise.evaluation.robustness import Attack, shilling_experiment

    rows = []
    for name, model_name in SEED_PLAN:
        if name not in datasets:
            continue
        memo: dict[Any, Any] = {}
        for seed in seeds:
            r = shilling_experiment(
                datasets[name],
                model={"model": model_name},
                attack=Attack(kind="push", fake_share=0.03, targets=3, seed=seed),
                memo=memo,
            )
            keep = (
                "attack",
                "model",
                "fake_accounts",
                "attack_exposure_lift_without_defence",
                "attack_exposure_lift_with_defence",
                "lift_cut",
                "ndcg_change",
                "ndcg_change_vs_clean",
                "ndcg_change_without_attack",
                "acceptance",
            )
            row = {k: r[k] for k in keep}
            row.update(
                data=name,
                seed=seed,
                fake_share=0.03,
                precision=round(r["detection"]["precision"], 4),
                recall=round(r["detection"]["recall"], 4),
                sample=(
                    "in-sample data, other seed "
                    "(detector thresholds chosen on REES46; cohort fix found on seed 0)"
                    if name == "rees46"
                    else "out-of-sample"
                ),
            )
            _log(f"shilling seed {seed} {name} {model_name}: {json.dumps(row)}")
            rows.append(row)
    return rows


def ledger_refusal() -> dict[str, Any]:
    """Through the real CLI: a 1.0 budget, a 0.6 release accepted, a second 0.6 refused."""
    with tempfile.TemporaryDirectory() as tmp:
        db = f"sqlite:///{tmp}/store.db"
        env = {
            **os.environ,
            "SHELFWISE_VAR_DIR": f"{tmp}/var",
            "SHELFWISE_PSEUDONYM_KEY": "bench-key-0123456789abcdef",
        }
        cli = [sys.executable, "-m", "shelfwise.cli.main"]

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [*cli, *args, "--db", db], capture_output=True, text=True, env=env, timeout=600
            )

        head = Path(tmp) / "head.csv"
        import gzip

        with gzip.open(RETAIL, "rb") as fh:
            head.write_bytes(b"".join(line for _, line in zip(range(20001), fh, strict=False)))
        run("ingest", "events", str(head), "--format", "online-retail")
        run("trust", "dp", "budget", "--set", "1.0")
        first = run("trust", "dp", "release", "category-popularity", "--epsilon", "0.6", "--json")
        second = run("trust", "dp", "release", "funnel", "--epsilon", "0.6", "--json")
        ledger = json.loads(run("trust", "dp", "ledger", "--json").stdout)
        return {
            "first_exit": first.returncode,
            "second_exit": second.returncode,
            "second_stderr": second.stderr.strip(),
            "second_stdout_empty": second.stdout.strip() == "",
            "spent_epsilon": ledger["spent_epsilon"],
            "releases": len(ledger["ledger"]),
        }


def dp_utility() -> list[dict[str, Any]]:
    """Error of each private aggregate against its exact value, per ε (mean of REPEATS releases)."""
    import polars as pl

    from shelfwise.analytics import private
    from shelfwise.analytics.segments import rfm, segment_summary
    from shelfwise.core.settings import Settings
    from shelfwise.data.readers import get_format
    from shelfwise.store import open_store
    from shelfwise.store.analytical import AnalyticalStore
    from shelfwise.store.ingest import ingest_events

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/store.db"
        settings = Settings(var_dir=Path(tmp) / "var", pseudonym_key="bench-key-0123456789abcdef")
        with open_store(url) as store:
            ingest_events(store, RETAIL, get_format("online-retail"), settings)
        db = AnalyticalStore.open(url)
        exact_pop = private.private_category_popularity(db, None, epsilon=1e9, top=None).table
        exact_funnel = private.private_funnel(db, None, epsilon=1e9, by="day").table
        exact_trend = private.private_trending(db, None, epsilon=1e9, k=10).table["item_id"].to_list()
        exact_cohort = private.private_cohorts(db, None, epsilon=1e9).table
        true_rfm = segment_summary(rfm(db)).select("segment", "share")
        for eps in EPSILONS:
            errs: dict[str, list[float]] = {
                k: [] for k in ("category", "funnel", "trending", "rfm", "cohorts")
            }
            for _ in range(REPEATS):
                pop = private.private_category_popularity(db, None, epsilon=eps, top=None).table
                joined = exact_pop.join(pop, on="category", suffix="_dp")
                top = joined.sort("events", descending=True).head(20)
                errs["category"].append(
                    float((top["events_dp"] - top["events"]).abs().sum() / max(top["events"].sum(), 1))
                )
                fun = private.private_funnel(db, None, epsilon=eps, by="day").table
                f = exact_funnel.join(fun, on="key", suffix="_dp")
                errs["funnel"].append(
                    float((f["purchases_dp"] - f["purchases"]).abs().sum() / max(f["purchases"].sum(), 1))
                )
                trend = private.private_trending(db, None, epsilon=eps, k=10).table["item_id"].to_list()
                errs["trending"].append(1.0 - len(set(trend) & set(exact_trend)) / 10)
                seg = private.private_rfm_segments(db, None, epsilon=eps).table.select("segment", "share")
                s = true_rfm.join(seg, on="segment", how="full", suffix="_dp").fill_null(0.0)
                errs["rfm"].append(float(0.5 * (s["share"] - s["share_dp"]).abs().sum()))
                coh = private.private_cohorts(db, None, epsilon=eps).table
                a, b = exact_cohort["m1"].drop_nulls().to_numpy(), coh["m1"].drop_nulls().to_numpy()
                errs["cohorts"].append(float(np.abs(a - b).mean()) if len(a) else 0.0)
            row = {"epsilon": eps, **{k: round(float(np.mean(v)), 4) for k, v in errs.items()}}
            _log(f"dp utility ε={eps}: {row}")
            rows.append(row)
        db.close()
    _ = pl
    return rows


def dp_popularity(datasets: dict[str, Any]) -> list[dict[str, Any]]:
    """NDCG@10 of popular/trending lists learnt from ε-DP counts, per ε (mean of REPEATS fits)."""
    from shelfwise.evaluation.protocol import fit_and_evaluate, make_split

    rows = []
    ds = datasets["online_retail"]
    split = make_split(ds, "temporal")
    for mode in ("popular-decay", "trending"):
        _, exact = fit_and_evaluate(split, {"model": mode})
        for eps in EPSILONS:
            scores = [
                fit_and_evaluate(split, {"model": mode, "dp_epsilon": eps})[1].metrics["ndcg@10"]
                for _ in range(REPEATS)
            ]
            rows.append(
                {
                    "model": mode,
                    "epsilon": eps,
                    "ndcg@10": round(float(np.mean(scores)), 5),
                    "ndcg@10_exact": round(exact.metrics["ndcg@10"], 5),
                    "ratio": round(float(np.mean(scores)) / exact.metrics["ndcg@10"], 4),
                }
            )
    return rows


def exposure(datasets: dict[str, Any]) -> list[dict[str, Any]]:
    from shelfwise.evaluation.fairness import exposure_tradeoff
    from shelfwise.evaluation.protocol import make_split
    from shelfwise.recommend.registry import model_from_config

    rows = []
    for name, ds in datasets.items():
        split = make_split(ds, "temporal")
        model = model_from_config({"model": "ease"}).fit(split.train)
        for group in ("price_band", "new", "brand"):
            if group == "brand" and name == "online_retail":
                continue  # no brands in that catalogue
            for r in exposure_tradeoff(model, split, group):
                rows.append({"data": name, "group": group, **{k: v for k, v in r.items() if k != "shares"}})
            _log(f"exposure {name} {group} done")
    return rows


def fidelity(datasets: dict[str, Any], users: int = 100) -> list[dict[str, Any]]:
    from collections import Counter

    from shelfwise.recommend.explain import attribute, fidelity, retriever_reason_fidelity
    from shelfwise.recommend.registry import model_from_config

    rows = []
    for name, ds in datasets.items():
        started = time.perf_counter()
        model = model_from_config({"model": "hybrid"}).fit(ds)
        rng = np.random.default_rng(0)
        counts = np.bincount(ds.users, minlength=ds.n_users)
        pick = ds.user_map.external[rng.choice(np.flatnonzero(counts >= 3), users, replace=False)]
        atts = [attribute(model, str(u), k=10) for u in pick]
        f = fidelity(atts)
        old = retriever_reason_fidelity(model, [str(u) for u in pick[:30]])
        groups = Counter(a.reason_group for per in atts for a in per)
        rows.append(
            {
                "data": name,
                "users": users,
                "items": f["items"],
                "fidelity": round(f["fidelity"], 4),
                "no_reason_share": round(f["no_reason_share"], 4),
                "old_reasons_fidelity": round(old["fidelity"], 4),
                "reason_groups": dict(groups.most_common()),
                "examples": [a.reason for a in atts[0][:5]],
                "seconds": round(time.perf_counter() - started, 1),
            }
        )
        _log(f"fidelity {name}: {rows[-1]['fidelity']}")
    return rows


def search_fidelity() -> list[dict[str, Any]]:
    """Fidelity of the search ranker's reasons on the Flipkart labelled set: LambdaRank trained on
    half of the queries, explained on the other half (top 10 each)."""
    from shelfwise.search.documents import read_dataset
    from shelfwise.search.engine import SearchConfig, SearchEngine
    from shelfwise.search.explain import search_fidelity as measure
    from shelfwise.search.labelled import flipkart_category_set
    from shelfwise.search.ltr import LambdaRanker

    started = time.perf_counter()
    catalogue = read_dataset("flipkart")
    labelled = flipkart_category_set(catalogue, read_dataset("flipkart-1k"))
    engine = SearchEngine.build(catalogue, SearchConfig(dense=False))
    qids = sorted(labelled.queries)
    rng = np.random.default_rng(0)
    rng.shuffle(qids)
    half = len(qids) // 2
    train = {q: labelled.queries[q] for q in qids[:half]}
    held = {q: labelled.queries[q] for q in qids[half:]}
    ranker = LambdaRanker().fit(engine, train, labelled.qrels)
    f = measure(engine, ranker, held, k=10)
    row = {
        "data": "flipkart (labelled set, held-out half)",
        "ranker": "lambdarank (bm25 candidates)",
        "queries": f["queries"],
        "items": f["items"],
        "fidelity": round(f["fidelity"], 4) if f["fidelity"] is not None else None,
        "reason_groups": f["reason_groups"],
        "top_feature_groups": f["top_feature_groups"],
        "seconds": round(time.perf_counter() - started, 1),
    }
    _log(f"search fidelity: {row['fidelity']} on {row['items']} results")
    return [row]


def _plots(
    utility: list[dict[str, Any]], pop: list[dict[str, Any]], expo: list[dict[str, Any]]
) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    RESULTS.mkdir(exist_ok=True)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for key, label in (
        ("category", "category popularity: rel. L1 error (top 20)"),
        ("funnel", "daily purchase funnel: rel. L1 error"),
        ("trending", "trending top-10: share not in exact list"),
        ("rfm", "RFM segment shares: total variation"),
        ("cohorts", "cohort m1 retention: mean abs error"),
    ):
        axes[0].plot([r["epsilon"] for r in utility], [r[key] for r in utility], marker="o", label=label)
    axes[0].set_xscale("log")
    axes[0].set_xlabel("ε per release")
    axes[0].set_ylabel("error (lower is better)")
    axes[0].set_title("Private aggregates on Online Retail")
    axes[0].legend(fontsize=7)
    for mode in sorted({r["model"] for r in pop}):
        sel = [r for r in pop if r["model"] == mode]
        axes[1].plot([r["epsilon"] for r in sel], [r["ratio"] for r in sel], marker="o", label=mode)
    axes[1].axhline(1.0, color="grey", lw=0.8)
    axes[1].set_xscale("log")
    axes[1].set_xlabel("ε")
    axes[1].set_ylabel("NDCG@10 / exact counts")
    axes[1].set_title("Recommendations on DP counts")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    dp_png = RESULTS / "trust_dp_utility.png"
    fig.savefig(dp_png, dpi=110)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for data, group in sorted({(r["data"], r["group"]) for r in expo}):
        sel = [r for r in expo if r["data"] == data and r["group"] == group]
        ax.plot(
            [r["exposure_gap"] for r in sel],
            [r["ndcg@10"] for r in sel],
            marker="o",
            label=f"{data}: {group}",
        )
        for r in sel:
            ax.annotate(f"{r['lambda']:g}", (r["exposure_gap"], r["ndcg@10"]), fontsize=6)
    ax.set_xlabel("exposure gap (TVD vs catalogue shares; lower is fairer)")
    ax.set_ylabel("NDCG@10")
    ax.set_title("Calibrated exposure re-ranking (labels: λ)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    ex_png = RESULTS / "trust_exposure_tradeoff.png"
    fig.savefig(ex_png, dpi=110)
    plt.close(fig)
    return {"dp_utility": dp_png.name, "exposure_tradeoff": ex_png.name}


def _previous() -> dict[str, Any]:
    path = RESULTS / "trust.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def run() -> dict[str, Any]:
    """Every section, or (``TRUST_SECTIONS=shilling,fidelity,...``) only those named, the others
    carried over from the last ``trust.json`` with the date they were measured."""
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    started = time.perf_counter()
    wanted = {w for w in os.environ.get("TRUST_SECTIONS", "").split(",") if w}
    previous = _previous()
    carried: dict[str, str] = dict(previous.get("carried", {})) if wanted else {}
    lazy: dict[str, Any] = {}

    def data() -> dict[str, Any]:
        if "ds" not in lazy:
            lazy["ds"] = _datasets()
        return lazy["ds"]

    def section(key: str, compute: Any) -> Any:
        if wanted and key not in wanted and key in previous:
            carried.setdefault(key, previous.get("measured_at", "?"))
            return previous[key]
        carried.pop(key, None)
        return compute()

    refusal = section("ledger_refusal", ledger_refusal)
    shill = section("shilling", lambda: shilling(data(), previous.get("shilling")))
    seeds = section("shilling_seeds", lambda: shilling_seeds(data()))
    utility = section("dp_utility", dp_utility)
    pop = section("dp_popularity", lambda: dp_popularity(data()))
    expo = section("exposure_tradeoff", lambda: exposure(data()))
    fid = section("fidelity", lambda: fidelity(data()))
    sfid = section("search_fidelity", search_fidelity)
    plots = _plots(utility, pop, expo)
    load_after = Path("/proc/loadavg").read_text().split()[:3]
    push = [r for r in shill if r["attack"] == "push"]

    def verdict(r: dict[str, Any]) -> str:
        ok = r.get("acceptance", {})
        return "yes" if ok and all(ok.values()) else "no"

    flat = [
        {
            **r,
            **{f"accounts_{k}": v for k, v in r.get("other_defences", {}).get("accounts", {}).items()},
            "ok": verdict(r),
        }
        for r in shill
    ]

    sections = [
        "Shilling (EASE, the served default, and item-KNN; fake accounts = 3% (3 targets) or 10% "
        "(1 target) of real ones, bandwagon fillers from the 20 most popular items, a 1-hour burst at "
        "the end of training). Defence `weighted` (the default): a flagged account's events on the items "
        "it attacked and bots' events dropped, its other events weighted 0.1, and trimmed co-occurrence "
        "(unflagged throwaway accounts born in one hour count as at most 10 accounts on any one item — "
        "the flagged ones are weighted on their own and left out of the cohorts and of the popularity "
        "that makes a profile bandwagon-shaped, so real newcomers in an attack's hour are trimmed as "
        "with no attack; cap and weight chosen on REES46); `accounts` "
        "(phase 1): fit without every event of a flagged account. Every account keeps its own history "
        "when scored. Detector thresholds chosen on REES46 (in-sample), reported unchanged on Online "
        "Retail (out of sample). A nuke's lift is the exposure it takes away (clean − attacked). "
        "`ndcg_change`: defended vs undefended on the attacked data; `vs_clean`: defended vs a model "
        "that never saw the attack (the acceptance's loss, since an attack can *raise* the undefended "
        "model's NDCG); `no_attack`: the defence on the real data alone (its false alarms and trimming). "
        "`ok`: lift cut ≥ 80% (or no lift to cut) and NDCG@10 loss ≤ 2% on both comparisons. "
        "Where the NDCG goes (push rows): `ndcg_inflation_by_attack` is the undefended model's NDCG "
        "on the attacked data against the clean model's, `ndcg_inflation_by_fillers` the same for a "
        "fit on the attacked data without the fakes' events on the target (only their bandwagon "
        "fillers left); `fake_events_dropped` / `real_events_down_weighted`: the share of the fakes' "
        "events the weighted defence sets to 0, and of real shoppers' events it down-weights at all.",
        "",
        _table(
            flat,
            [
                "data",
                "model",
                "attack",
                "fake_share",
                "exposure_clean",
                "exposure_attacked",
                "exposure_defended",
                "attack_exposure_lift_without_defence",
                "attack_exposure_lift_with_defence",
                "lift_cut",
                "ndcg_change",
                "ndcg_change_vs_clean",
                "ndcg_change_without_attack",
                "accounts_lift_cut",
                "accounts_ndcg_change",
                "accounts_ndcg_change_vs_clean",
                "precision",
                "recall",
                "false_alarms_without_attack",
                "ndcg_inflation_by_attack",
                "ndcg_inflation_by_fillers",
                "fake_events_dropped",
                "real_events_down_weighted",
                "ok",
            ],
        ),
        "",
        "Acceptance (push, defence `weighted`): "
        + "; ".join(
            f"{r['data']} {r['model']} {r['fake_share']:.0%}: lift "
            f"{r['attack_exposure_lift_without_defence']} → {r['attack_exposure_lift_with_defence']}, "
            f"cut {r['lift_cut']}, NDCG@10 {r['ndcg_change']:+.4f} vs undefended, "
            f"{r['ndcg_change_vs_clean']:+.4f} vs clean"
            + (
                f" (the attack moved the undefended NDCG@10 by {r['ndcg_inflation_by_attack']:+.4f}, "
                f"its fillers alone by {r['ndcg_inflation_by_fillers']:+.4f})"
                if r.get("ndcg_inflation_by_attack") is not None
                else ""
            )
            + f": {verdict(r)}"
            for r in push
        ),
        *(
            [
                "",
                "Rows carried over from an earlier run (not re-measured): "
                + ", ".join(
                    sorted(
                        {
                            f"{r['data']} {r['model']} {r['attack']} ({r['carried_from']})"
                            for r in shill
                            if "carried_from" in r
                        }
                    )
                ),
            ]
            if any("carried_from" in r for r in shill)
            else []
        ),
        "",
        "The push at 3% with other seeds (other targets, fakes and burst times; defence `weighted`; "
        "REES46 is in-sample for the detector thresholds, and the cohort fix — flagged accounts left "
        "out of the cohort cap and of the popularity that shapes a bandwagon profile — was found on its "
        "seed 0):",
        "",
        _table(
            [{**r, "ok": verdict(r)} for r in seeds],
            [
                "data",
                "model",
                "seed",
                "fake_share",
                "attack_exposure_lift_without_defence",
                "attack_exposure_lift_with_defence",
                "lift_cut",
                "ndcg_change",
                "ndcg_change_vs_clean",
                "ndcg_change_without_attack",
                "precision",
                "recall",
                "ok",
            ],
        ),
        "",
        f"ε ledger through the CLI (budget 1.0; 0.6 then 0.6): first exit {refusal['first_exit']}, "
        f"second exit {refusal['second_exit']} with `{refusal['second_stderr']}`; "
        f"ε spent {refusal['spent_epsilon']} in {refusal['releases']} release(s).",
        "",
        f"Utility/ε of the private aggregates on Online Retail (mean of {REPEATS} releases; plot "
        f"`{plots['dp_utility']}`):",
        "",
        _table(utility, ["epsilon", "category", "funnel", "trending", "rfm", "cohorts"]),
        "",
        "Recommendations on DP counts (Online Retail, temporal split):",
        "",
        _table(pop, ["model", "epsilon", "ndcg@10", "ndcg@10_exact", "ratio"]),
        "",
        f"NDCG/exposure trade-off of the calibrated re-ranking (EASE; plot `{plots['exposure_tradeoff']}`):",
        "",
        _table(
            expo, ["data", "group", "lambda", "ndcg@10", "recall@10", "exposure_gap", "item_exposure_gini"]
        ),
        "",
        "Reason fidelity of the hybrid (top SHAP feature's reason = stated reason; 100 shoppers with "
        "≥ 3 events, top 10 each; old = the retriever that ranked the item best, 30 shoppers):",
        "",
        _table(fid, ["data", "items", "fidelity", "no_reason_share", "old_reasons_fidelity"]),
        "",
        "Reason fidelity of the search ranker (LambdaRank over BM25 candidates, trained on half of the "
        "Flipkart labelled queries, explained on the other half, top 10 each; a reason is stated only "
        "when the result's data backs it):",
        "",
        _table(sfid, ["data", "ranker", "queries", "items", "fidelity"]),
        "",
        *(
            [
                "Carried over unchanged from an earlier run (not re-measured in this one): "
                + ", ".join(f"{k} ({v})" for k, v in sorted(carried.items())),
                "",
            ]
            if carried
            else []
        ),
        f"Machine load average before {' '.join(load_before)}, after {' '.join(load_after)} "
        "(2 cores, shared).",
    ]
    return {
        "name": "trust",
        "table": "\n".join(sections),
        "shilling": shill,
        "shilling_seeds": seeds,
        "ledger_refusal": refusal,
        "dp_utility": utility,
        "dp_popularity": pop,
        "exposure_tradeoff": expo,
        "fidelity": fid,
        "search_fidelity": sfid,
        "carried": carried,
        "plots": plots,
        "load_before": load_before,
        "load_after": load_after,
        "seconds": round(time.perf_counter() - started, 1),
    }


if __name__ == "__main__":
    print(run()["table"])
