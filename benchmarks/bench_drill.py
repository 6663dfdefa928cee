"""The full disaster-recovery drill (``shelfwise drill --scenario all``): HAProxy in front of two
API replicas, PostgreSQL, Redis; replica SIGKILL, store and cache outages, corrupt and bad model
releases, backup → drop → restore, and ``kill -9`` during an embedded-store ingest. Figures per
scenario: RTO, RPO (acknowledged events lost), error rate, p50/p99, throughput. The report (markdown,
JSON, timeline PNG) goes to ``benchmarks/results/drill/``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from shelfwise.drills import run_drill
from shelfwise.drills.report import markdown

HERE = Path(__file__).parent


def run() -> dict[str, Any]:
    result = run_drill(
        ["all"],
        report_dir=HERE / "results" / "drill",
        rate=float(os.environ.get("SHELFWISE_BENCH_DRILL_RATE", "30")),
        say=lambda m: print(m, file=sys.stderr),
    )
    table = markdown(result).split("## Checks")[0].split("\n", 4)[4]
    return {"name": "drill", "table": table, **result}


if __name__ == "__main__":
    print(run()["table"])
