"""The drill's report: JSON (every figure), markdown (for the on-call team) and a timeline plot
of latency and errors with every fault marked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from shelfwise.drills.load import Record

COLUMNS = (
    ("name", "scenario"),
    ("passed", "passed"),
    ("requests", "requests"),
    ("error_rate", "error rate"),
    ("p50_ms", "p50 ms"),
    ("p99_ms", "p99 ms"),
    ("throughput_rps", "req/s"),
    ("acknowledged_events", "acked events"),
    ("lost_events", "lost (RPO)"),
    ("rto_seconds", "RTO s"),
)


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# shelfwise disaster-recovery drill",
        "",
        f"{result['started_at']} · {result['seconds']:.0f} s · "
        f"{'**all passed**' if result['passed'] else '**FAILED**'}",
        "",
        "| " + " | ".join(h for _, h in COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for s in result["scenarios"]:
        cells = []
        for key, _ in COLUMNS:
            v = s.get(key)
            if key == "passed":
                v = "yes" if v else "**no**"
            elif key == "error_rate" and v is not None:
                v = f"{v:.3%}"
            cells.append("–" if v is None else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Checks", ""]
    for s in result["scenarios"]:
        lines.append(f"### {s['name']}")
        for check, ok in s.get("checks", {}).items():
            lines.append(f"- {'✅' if ok else '❌'} {check.replace('_', ' ')}")
        extra = {
            k: v
            for k, v in s.items()
            if k not in {c for c, _ in COLUMNS} | {"checks", "started_s", "ended_s"}
            and not isinstance(v, dict | list)
        }
        if extra:
            lines.append("")
            lines.append(", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in extra.items()))
        if "error" in s:
            lines.append(f"\nerror: `{s['error']}`")
        lines.append("")
    if result.get("topology"):
        lines += ["## Topology", "", "```", json.dumps(result["topology"], indent=2), "```", ""]
    if result.get("plot"):
        lines += [f"![timeline]({Path(result['plot']).name})", ""]
    lines += [
        "RTO: replica kill — fault until the service answered without errors again (capacity "
        "restored is reported separately); store outage — store back until every event acknowledged "
        "before its return is in the store (journal replayed); bad model — release until the previous "
        "version served everywhere; primary loss — kill until writes are stored directly in the promoted "
        "standby and every journaled event is replayed; cache primary loss — kill until the service's "
        "consent switches reach the Redis replica the Sentinels promoted. RPO: acknowledged events "
        "not found in the store.",
    ]
    return "\n".join(lines) + "\n"


def plot(records: list[Record], faults: list[tuple[float, str]], origin: float, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(12, 6), sharex=True, height_ratios=(3, 1))
    t = np.array([r.t - origin for r in records])
    ms = np.array([r.ms for r in records])
    ok = np.array([r.ok for r in records], dtype=bool)
    if len(t):
        for kind, colour in (("rec", "tab:blue"), ("search", "tab:green"), ("event", "tab:purple")):
            sel = ok & np.array([r.kind == kind for r in records])
            ax.scatter(t[sel], ms[sel], s=4, alpha=0.5, color=colour, label=kind)
        ax.scatter(t[~ok], ms[~ok], s=18, marker="x", color="red", label="error")
        bins = np.arange(0, t.max() + 1.0, 1.0)
        ax2.hist(t[~ok], bins=bins, color="red", label="errors / s")
        journaled = np.array([r.journaled for r in records], dtype=bool)
        ax2.hist(t[journaled], bins=bins, color="orange", alpha=0.6, label="journaled writes / s")
    ax.set_yscale("log")
    ax.set_ylabel("latency (ms)")
    ax2.set_ylabel("per second")
    ax2.set_xlabel("seconds since the drill started")
    for when, label in faults:
        for a in (ax, ax2):
            a.axvline(when, color="black", lw=0.8, ls="--")
        ax.annotate(
            label[:42], (when, 1.0), xycoords=("data", "axes fraction"), rotation=90, va="top", fontsize=7
        )
    ax.legend(loc="upper right", fontsize=7)
    ax2.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def write(
    result: dict[str, Any],
    records: list[Record],
    faults: list[tuple[float, str]],
    origin: float,
    out_dir: Path,
) -> dict[str, Any]:
    out_dir.mkdir(parents=True, exist_ok=True)
    result["plot"] = str(plot(records, faults, origin, out_dir / "timeline.png"))
    (out_dir / "drill.json").write_text(json.dumps(result, indent=2, default=str))
    (out_dir / "drill.md").write_text(markdown(result))
    return result
