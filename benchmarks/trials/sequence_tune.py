"""Trial: one SASRec configuration on a dataset's *validation* split (never the test items).

    PYTHONPATH=src:. python benchmarks/trials/sequence_tune.py [beauty|retail|rees46] CONFIG_JSON

Leave-one-out: the model is fitted on every user's events but the last two, and scored on the
second-to-last (``split.valid`` / ``split.valid_train``); the last event (the test target) is never
read. Prints one JSON line: validation NDCG@10 / HR@10, epochs, wall and CPU seconds of ``fit``, the
per-epoch log. This is how the defaults of ``sasrec`` were chosen (on Beauty only); not run by
``make bench``.
"""

import json
import os
import sys
import time

os.environ.setdefault("SHELFWISE_PROGRESS", "0")

from benchmarks.bench_sequence import BEAUTY, REES46, RETAIL

from shelfwise.evaluation.ranking import evaluate
from shelfwise.features.dataset import Dataset
from shelfwise.features.splits import Split, leave_one_out
from shelfwise.recommend import model_from_config

name = sys.argv[1]
cfg = json.loads(sys.argv[2])
if name == "beauty":
    ds = Dataset.from_file(BEAUTY, "amazon-beauty")
elif name == "retail":
    ds = Dataset.from_file(RETAIL, "online-retail")
    ds = ds.select(ds.type_mask(["purchase"]))
else:
    ds = Dataset.from_file(REES46, "rees46")
split = leave_one_out(ds)
assert split.valid is not None and split.valid_train is not None
vsplit = Split(protocol="loo", train=split.valid_train, test=split.valid)
model = model_from_config({"model": "sasrec", **cfg})
cpu, wall = time.process_time(), time.perf_counter()
model.fit(vsplit.train)
cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
m = evaluate(model, vsplit).metrics
out = {
    "set": name,
    "cfg": cfg,
    "valid_ndcg@10": round(m["ndcg@10"], 5),
    "valid_hr@10": round(m["recall@10"], 5),
    "epochs": len(model.fit_log),
    "wall": round(wall, 1),
    "cpu": round(cpu, 1),
    "log": [(e["epoch"], round(e.get("valid_ndcg@10", 0), 4), e["core_seconds"]) for e in model.fit_log],
}
print(json.dumps(out), flush=True)
