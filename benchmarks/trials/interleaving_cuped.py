# ruff: noqa
# As run by h-interleave on 2026-12-03 from the worktree root (see /work/notes/h-interleave.md). Not part of make bench.
# usage: python benchmarks/trials/interleaving_cuped.py SEED USERS position|cascade
import sys, numpy as np
from pathlib import Path
from shelfwise.features.dataset import Dataset
from shelfwise.evaluation.simulator import ShopperSimulator, SimulatorConfig, examination
from shelfwise.evaluation import simulated_experiments as sx
from shelfwise.evaluation.experiments import users_for_power

seed = int(sys.argv[1])
users = int(sys.argv[2])
cm = sys.argv[3]
ds = Dataset.from_file(Path("data/online_retail/online_retail.csv.gz"), "online-retail", limit=150_000)
sim = ShopperSimulator.fit(ds, SimulatorConfig(click_model=cm), seed=seed)
rng = np.random.default_rng(seed)
k = 10
candidates = 30
shoppers = sim.sample_shoppers(users, rng)
cand = sim.candidates(shoppers, candidates, rng)
attr = sim.attraction(shoppers, cand)
logits = sim.attraction_logits(shoppers, cand)
ideal = -np.sort(-attr, axis=1)[:, :k]
za, zb = rng.normal(size=cand.shape), rng.normal(size=cand.shape)
rows = np.arange(users)[:, None]
ranked = lambda s, z: np.argsort(-(logits + s * z), axis=1)[:, :k]
ndcg = lambda o: float(sx._ndcg(attr[rows, o], ideal).mean())
oa = ranked(1.0, za)
na = ndcg(oa)
lo, hi = 1.0, 50.0
for _ in range(40):
    mid = (lo + hi) / 2
    lo, hi = (mid, hi) if ndcg(ranked(mid, zb)) > na * 0.98 else (lo, mid)
ob = ranked((lo + hi) / 2, zb)
exam = examination(np.arange(1, k + 1))
v = shoppers.visits.astype(float)
cas = cm == "cascade"
M = {}
S = {}
for nm, o in (("a", oa), ("b", ob)):
    p = sx._slot_click_probs(attr[rows, o], exam, cas)
    m, s2 = sx._visit_moments(p, np.ones(k), cas)
    M[nm] = m
    S[nm] = s2
# pre-period covariate: clicks under production ranker A over an independent visit draw v'
Ev, Vv = v.mean(), v.var()
Ev2 = (v**2).mean()
varX = (Ev * S["a"]).mean() + (Ev2 * M["a"] ** 2).mean() - (Ev * M["a"].mean()) ** 2
tot = []
for nm in ("a", "b"):
    C = v * M[nm]
    R = C.mean() / Ev
    W = (v * S[nm]).mean()
    varY = W + (C - R * v).var()
    cov = Ev * Ev * np.cov(M[nm], M["a"], bias=True)[0, 1]
    adj = varY - cov**2 / varX
    tot.append((R, varY / Ev**2, adj / Ev**2, cov / np.sqrt(varY * varX)))
print("rho", tot[0][3], tot[1][3])
d = tot[0][0] - tot[1][0]
print(
    "ctr-delta users",
    2 * users_for_power(d, tot[0][1] + tot[1][1]),
    "ctr-delta+cuped(pre-period clicks)",
    2 * users_for_power(d, tot[0][2] + tot[1][2]),
)
