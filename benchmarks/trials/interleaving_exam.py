# ruff: noqa
# As run by h-interleave on 2026-12-03 from the worktree root (see /work/notes/h-interleave.md). Not part of make bench.
# usage: python benchmarks/trials/interleaving_exam.py SEED flat|dcg|inv_rank|sqrt   (position model, 20k users)
import json, sys, numpy as np
from pathlib import Path
from shelfwise.features.dataset import Dataset
from shelfwise.evaluation.simulator import ShopperSimulator, SimulatorConfig, examination as dcg_disc
from shelfwise.evaluation import simulated_experiments as sx

curve = sys.argv[2]


def exam(r):
    r = np.asarray(r, float)
    return {"flat": np.ones_like(r), "inv_rank": 1 / r, "dcg": dcg_disc(r), "sqrt": 1 / np.sqrt(r)}[curve]


def ndcg(g, ideal):
    d = dcg_disc(np.arange(1, g.shape[1] + 1))
    return (g * d).sum(1) / (ideal * d).sum(1)


sx.examination = exam
sx._ndcg = ndcg
ds = Dataset.from_file(Path("data/online_retail/online_retail.csv.gz"), "online-retail", limit=150_000)
sim = ShopperSimulator.fit(ds, SimulatorConfig(), seed=int(sys.argv[1]))
d = sx.interleaving_vs_ab_scenario(sim, users=20000, seed=int(sys.argv[1]), check_runs=0)
print(
    curve,
    d["ab_users"],
    d["interleaving_users"],
    round(d["ratio"], 2),
    [round(x, 1) for x in d["ratio_ci95"]],
    round(d["ratio_clicks_per_user"], 1),
)
