"""A markdown evaluation report with plots (matplotlib, Agg): the metrics table with bootstrap
intervals, paired tests against the first model, metric@k curves and where targets ranked.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from shelfwise.evaluation.ranking import EvalResult
from shelfwise.evaluation.significance import bootstrap_ci, paired_test

TABLE_METRICS = ("recall@10", "ndcg@10", "recall@20", "ndcg@20", "mrr", "auc", "coverage@10", "novelty@10")


def confidence_intervals(result: EvalResult, *, n_resamples: int = 1000) -> dict[str, tuple[float, float]]:
    return {k: bootstrap_ci(v, n_resamples=n_resamples) for k, v in result.per_user.items()}


def write_report(
    results: Sequence[EvalResult],
    out_dir: Path,
    *,
    title: str = "Evaluation",
    context: dict[str, Any] | None = None,
    n_resamples: int = 1000,
) -> dict[str, Path]:
    """Write ``report.md``, ``metrics.json`` and PNG plots to ``out_dir``; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    cis = [confidence_intervals(r, n_resamples=n_resamples) for r in results]
    lines = [f"# {title}", ""]
    for key, value in (context or {}).items():
        lines.append(f"- **{key}**: {value}")
    if context:
        lines.append("")
    shown = [m for m in TABLE_METRICS if m in results[0].metrics]
    lines.append("| model | " + " | ".join(shown) + " | train s |")
    lines.append("|---" * (len(shown) + 2) + "|")
    for r, ci in zip(results, cis, strict=True):
        cells = []
        for m in shown:
            v = r.metrics[m]
            cells.append(f"{v:.4f} [{ci[m][0]:.4f}, {ci[m][1]:.4f}]" if m in ci else f"{v:.4f}")
        lines.append(f"| {r.model} | " + " | ".join(cells) + f" | {r.info.get('train_seconds', '')} |")
    lines += ["", "Intervals: 95% bootstrap over users (percentile).", ""]
    tests: dict[str, Any] = {}
    if len(results) > 1:
        base = results[0]
        lines += [f"## Paired tests against {base.model} (NDCG@10, same users)", ""]
        lines += ["| model | diff | 95% CI | p |", "|---|---|---|---|"]
        for r in results[1:]:
            if not np.array_equal(r.users, base.users):
                continue
            t = paired_test(r.per_user["ndcg@10"], base.per_user["ndcg@10"])
            tests[r.model] = t
            interval = f"[{t['ci_low']:+.4f}, {t['ci_high']:+.4f}]"
            lines.append(f"| {r.model} | {t['diff']:+.4f} | {interval} | {t['p_value']:.4g} |")
        lines.append("")

    paths: dict[str, Path] = {}
    ks = sorted({int(k.split("@")[1]) for k in results[0].metrics if k.startswith("ndcg@")})
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for r in results:
        axes[0].plot(ks, [r.metrics[f"recall@{k}"] for k in ks], marker="o", label=r.model)
        axes[1].plot(ks, [r.metrics[f"ndcg@{k}"] for k in ks], marker="o", label=r.model)
    axes[0].set_title("Recall@k")
    axes[1].set_title("NDCG@k")
    for ax in axes:
        ax.set_xlabel("k")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    paths["metrics_plot"] = out_dir / "metrics_at_k.png"
    fig.savefig(paths["metrics_plot"], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in results:
        first = np.array([rk.min() for rk in r.ranks if len(rk)], dtype=np.float64)
        if first.size:
            xs = np.sort(first) + 1
            ax.plot(xs, np.arange(1, len(xs) + 1) / len(xs), label=r.model)
    ax.set_xscale("log")
    ax.set_xlabel("rank of the first target (log)")
    ax.set_ylabel("share of users")
    ax.set_title("Where targets ranked (full ranking)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths["rank_plot"] = out_dir / "target_ranks.png"
    fig.savefig(paths["rank_plot"], dpi=110)
    plt.close(fig)

    lines += ["![metrics at k](metrics_at_k.png)", "", "![target ranks](target_ranks.png)", ""]
    paths["markdown"] = out_dir / "report.md"
    paths["markdown"].write_text("\n".join(lines))
    paths["json"] = out_dir / "metrics.json"
    paths["json"].write_text(
        json.dumps(
            {
                "results": [
                    {**r.to_dict(), "ci95": {k: list(v) for k, v in ci.items()}}
                    for r, ci in zip(results, cis, strict=True)
                ],
                "paired_tests": tests,
                "context": context or {},
            },
            indent=2,
            default=str,
        )
    )
    return paths
