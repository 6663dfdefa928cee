"""The data-quality report: what came in, what was kept, what was quarantined and why.

Written as JSON (for programs), markdown (for people) and a PNG bar chart of the reasons.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from shelfwise.core.clock import ms_to_datetime, now_ms
from shelfwise.store.base import Store


def build_quality_report(store: Store) -> dict[str, Any]:
    runs = [r for r in store.runs() if r["report"]]
    totals: dict[str, Counter[str]] = {}
    conversions: Counter[str] = Counter()
    for run in runs:
        rep = run["report"]
        key = f"{rep['source']} ({rep['kind']})"
        bucket = totals.setdefault(key, Counter())
        for name in ("records", "accepted", "duplicates", "quarantined", "guest_events", "pii_scrubbed"):
            bucket[name] += int(rep.get(name, 0))
        bucket["runs"] += 1
        conversions.update(rep.get("conversions", {}))
    return {
        "generated_at": ms_to_datetime(now_ms()).isoformat(timespec="seconds"),
        "store": store.safe_url,
        "rows": store.counts(),
        "sources": {k: dict(v) for k, v in totals.items()},
        "runs": [
            {
                k: run["report"].get(k)
                for k in (
                    "run_id",
                    "source",
                    "kind",
                    "path",
                    "records",
                    "accepted",
                    "duplicates",
                    "quarantined",
                    "seconds",
                    "reasons",
                )
            }
            for run in runs
        ],
        "quarantine": store.quarantine_summary(),
        "conversions": dict(conversions),
        "suspected_bots": store.suspected_bots(),
        "examples": {
            reason: [_example(r) for r in store.quarantined(reason=reason, limit=2)]
            for reason in store.quarantine_summary()["by_reason"]
        },
    }


def _example(row: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (row[k][:200] if isinstance(row[k], str) else row[k])
        for k in ("source", "line_no", "field", "reason", "detail", "record")
    }


def render_markdown(report: dict[str, Any], *, plot: str | None = None) -> str:
    lines = ["# Data quality report", "", f"Store `{report['store']}`, {report['generated_at']}.", ""]
    lines += [
        "## Ingested, by source",
        "",
        "| source | runs | records | accepted | duplicates | quarantined | guest events |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for source, t in report["sources"].items():
        lines.append(
            f"| {source} | {t.get('runs', 0)} | {t.get('records', 0):,} | {t.get('accepted', 0):,} | "
            f"{t.get('duplicates', 0):,} | {t.get('quarantined', 0):,} | {t.get('guest_events', 0):,} |"
        )
    lines += ["", "## Rows in the store", "", "| table | rows |", "|---|---:|"]
    lines += [f"| {name} | {n:,} |" for name, n in report["rows"].items()]
    q = report["quarantine"]
    lines += ["", f"## Quarantine: {q['total']:,} records", "", "| reason | records |", "|---|---:|"]
    lines += [f"| {reason} | {n:,} |" for reason, n in sorted(q["by_reason"].items(), key=lambda kv: -kv[1])]
    lines += ["", "| field | records |", "|---|---:|"]
    lines += [f"| {field} | {n:,} |" for field, n in sorted(q["by_field"].items(), key=lambda kv: -kv[1])]
    if report["conversions"]:
        lines += ["", "## Conversions", ""]
        lines += [f"- {name}: {n:,}" for name, n in report["conversions"].items()]
    lines += ["", f"Users flagged as likely bots: {report['suspected_bots']:,}.", ""]
    if report["examples"]:
        lines += ["## Examples", ""]
        for reason, rows in report["examples"].items():
            for row in rows:
                lines.append(
                    f"- `{reason}` {row['source']} line {row['line_no']}, field `{row['field']}`: "
                    f"{row['detail']}"
                )
        lines.append("")
    if plot:
        lines += [f"![quarantine by reason and field]({plot})", ""]
    return "\n".join(lines)


def plot_quarantine(report: dict[str, Any], path: Path) -> Path | None:
    q = report["quarantine"]
    if not q["by_reason"]:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        1, 2, figsize=(11, max(2.5, 0.45 * max(len(q["by_reason"]), len(q["by_field"])) + 1))
    )
    for ax, (title, counts) in zip(
        axes, (("by reason", q["by_reason"]), ("by field", q["by_field"])), strict=True
    ):
        ordered = sorted(counts.items(), key=lambda kv: kv[1])
        ax.barh([k for k, _ in ordered], [v for _, v in ordered], color="#c0504d")
        ax.set_title(f"Quarantined records {title}")
        ax.set_xlabel("records")
        for i, (_, v) in enumerate(ordered):
            ax.text(v, i, f" {v:,}", va="center", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_quality_report(store: Store, out_dir: Path) -> tuple[dict[str, Any], dict[str, Path]]:
    """Build the report and write ``quality_report.{json,md,png}`` into ``out_dir``. Its examples
    are quarantined records (pseudonymised), so it is written beside ``out_dir`` and published only
    if nobody it names was erased meanwhile (``publish_checked``); else it is built once more."""
    from shelfwise.store.erasure import ErasedDuringBuild, building_path, publish_checked

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    for attempt in (1, 2):
        started = now_ms()
        tmp = building_path(out_dir)
        tmp.mkdir(parents=True, exist_ok=True)
        report = build_quality_report(store)
        png = plot_quarantine(report, tmp / "quality_report.png")
        (tmp / "quality_report.json").write_text(json.dumps(report, indent=2, default=str))
        (tmp / "quality_report.md").write_text(render_markdown(report, plot=png.name if png else None))
        try:
            publish_checked(tmp, out_dir, erased_since=store.erased_since, started_ms=started, merge=True)
            break
        except ErasedDuringBuild:
            if attempt == 2:
                raise
    paths = {"json": out_dir / "quality_report.json", "markdown": out_dir / "quality_report.md"}
    if png is not None:
        paths["plot"] = out_dir / png.name
    return report, paths
