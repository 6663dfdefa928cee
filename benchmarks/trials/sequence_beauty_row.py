# ruff: noqa
# As run by h-seq3 on 2026-12-03 (paths as used then; see /work/notes/h-seq3.md). Not part of make bench.
"""Beauty test row of the served default, outside the bench lock (fallback if the lock never comes)."""

import json, os, time

os.environ.setdefault("SHELFWISE_PROGRESS", "0")
from benchmarks import bench_sequence as b  # sets OMP_WAIT_POLICY=PASSIVE before torch loads
from shelfwise.features.dataset import Dataset
from shelfwise.features.splits import leave_one_out

t = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
ds = Dataset.from_file(b.BEAUTY, "amazon-beauty")
row = {
    "dataset": "Amazon Beauty",
    "model": b.DEFAULT[0],
    "started": t,
    "outside_lock": True,
    **b._fit(leave_one_out(ds), b.DEFAULT[1]),
}
open("/tmp/hseq3/beauty_fallback.json", "w").write(json.dumps(row, indent=2, default=str))
print(json.dumps({k: v for k, v in row.items() if k != "config"}))
