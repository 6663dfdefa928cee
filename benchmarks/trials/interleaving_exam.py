# ruff: noqa
# Trial (not part of make bench): the interleaving-vs-A/B ratio under other examination curves of the position model,
# given through SimulatorConfig(examination=...) (the scenario reads the curve from the config; an earlier version of
# this script patched a module function the scenario no longer calls).
# usage: PYTHONPATH=. python benchmarks/trials/interleaving_exam.py dcg inv_rank inv_rank_0.5 inv_rank_1.5
# 2026-12-04, seed 0, 20k users, no bootstrap: dcg (1/log2(r+1), the default) A/B 124,060 / interleaving 30,983 = 4.0x
# (8.0x by clicks per user); inv_rank (1/r) 147,192 / 51,412 = 2.86x (4.9x): a steeper curve makes interleaving
# relatively weaker here, not stronger.
import sys, time, numpy as np
from pathlib import Path
from shelfwise.features.dataset import Dataset
from shelfwise.evaluation.simulator import ShopperSimulator, SimulatorConfig
from shelfwise.evaluation import simulated_experiments as sx

ds = Dataset.from_file(Path("data/online_retail/online_retail.csv.gz"), "online-retail", limit=150_000)
r = np.arange(1, 11, dtype=float)
for name in sys.argv[1:]:
    curve = {
        "dcg": None,
        "inv_rank": list(1 / r),
        "inv_rank_0.5": list(r**-0.5),
        "inv_rank_1.5": list(r**-1.5),
    }[name]
    sim = ShopperSimulator.fit(ds, SimulatorConfig(examination=curve), seed=0)
    t = time.time()
    d = sx.interleaving_vs_ab_scenario(sim, users=20000, seed=0, check_runs=0, bootstrap=0)
    print(
        name,
        d["ab_users"],
        d["interleaving_users"],
        round(d["ratio"], 2),
        round(d["ratio_clicks_per_user"], 1),
        round(time.time() - t),
        flush=True,
    )
