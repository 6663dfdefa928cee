# ruff: noqa
# As run by h-interleave on 2026-12-03 from the worktree root (see /work/notes/h-interleave.md). Not part of make bench.
# usage: python benchmarks/trials/interleaving_explore.py SEED USERS  (A/B analyses; per-slot learned credit, Yue et al. 2010; Rao-Blackwellised team draft)
import sys, time, numpy as np
from pathlib import Path
from shelfwise.features.dataset import Dataset
from shelfwise.evaluation.simulator import ShopperSimulator, SimulatorConfig, examination
from shelfwise.evaluation import simulated_experiments as sx
from shelfwise.evaluation.experiments import users_for_power

t = time.process_time()
ds = Dataset.from_file(Path("data/online_retail/online_retail.csv.gz"), "online-retail", limit=150_000)
sim = ShopperSimulator.fit(ds, SimulatorConfig(), seed=int(sys.argv[1]))
print("fit", time.process_time() - t)
rng = np.random.default_rng(int(sys.argv[1]))
users = int(sys.argv[2])
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
print("visits mean/var", v.mean(), v.var())
# A/B
res = {}
for nm, o in (("a", oa), ("b", ob)):
    p = exam * attr[rows, o]
    m = p.sum(1)
    s2 = (p * (1 - p)).sum(1)
    res[nm] = (v * m, v * s2, m, s2)
ma, mb = res["a"][0].mean(), res["b"][0].mean()
va = res["a"][1].mean() + res["a"][0].var()
vb = res["b"][1].mean() + res["b"][0].var()
print("AB clicks/user", ma, mb, "var", va, vb, "within", res["a"][1].mean(), "between", res["a"][0].var())
ab = 2 * users_for_power(ma - mb, va + vb)
print("ab_users clicks/user", ab)


# delta-method CTR per visit: var of ratio ~ Var(C - R V)/E[V]^2
def dvar(nm):
    C, W, _, _ = res[nm]
    R = C.mean() / v.mean()
    # var of C - R V per user: within var W + between var of (C - R V)
    return (W.mean() + (C - R * v).var()) / v.mean() ** 2, R


(da, ra), (db, rb) = dvar("a"), dvar("b")
abd = 2 * users_for_power(ra - rb, da + db)
print("ab_users CTR delta", abd, "ratio", ab / abd)


# CUPED with visits as covariate (unaffected by treatment): residual var = var(C) - cov(C,v)^2/var(v)
def cvar(nm):
    C, W, _, _ = res[nm]
    tot = W.mean() + C.var()
    cov = np.cov(C, v)[0, 1]
    return tot - cov**2 / v.var()


abc = 2 * users_for_power(ma - mb, cvar("a") + cvar("b"))
print("ab_users cuped(visits)", abc)
# interleaving per slot features
F_mu = np.zeros((users, k))
F_cov = np.zeros((k, k))
for st in range(0, users, 2000):
    sp = min(st + 2000, users)
    d = sx.team_drafts(oa[st:sp], ob[st:sp], candidates)
    loc = np.arange(sp - st)[:, None, None]
    p = exam * attr[st:sp][loc, d["shown"]]
    w = d["team"] * ~d["shared"]
    m = p * w  # (c,S,k)
    mu = m.mean(1)  # per visit mean vector
    E2 = np.einsum("csj,csl->cjl", m, m) / m.shape[1]
    E2[:, np.arange(k), np.arange(k)] += (p * (1 - p) * np.abs(w)).mean(1)
    cov_u = E2 - np.einsum("cj,cl->cjl", mu, mu)
    vv = v[st:sp]
    F_mu[st:sp] = vv[:, None] * mu
    F_cov += (vv[:, None, None] * cov_u).sum(0)
Sig = F_cov / users + np.cov(F_mu.T, bias=True)
mu = F_mu.mean(0)
one = np.ones(k)
print("uniform users", users_for_power(one @ mu, one @ Sig @ one))
wopt = np.linalg.solve(Sig, mu)
wopt /= wopt[np.argmax(np.abs(wopt))]
print("per-slot mu/sd", np.round(mu / np.sqrt(np.diag(Sig)), 4))
print("w*", np.round(wopt, 3), "users", users_for_power(wopt @ mu, wopt @ Sig @ wopt))
np.save(f"/tmp/hi_w_seed{sys.argv[1]}.npy", np.stack([mu, *Sig]))


# Rao-Blackwellised team draft: average team over coin sequences giving the same shown list
def rb_weights(d):
    shown, team = d["shown"], d["team"]
    n, S, kk = shown.shape
    out = np.empty_like(team)
    # key per (user, seq): compare lists
    for s in range(S):
        same = (shown == shown[:, s : s + 1, :]).all(-1)  # (n,S)
        out[:, s, :] = (team * same[:, :, None]).sum(1) / same.sum(1)[:, None]
    return out


for cm in ("position",):
    tot_m = 0
    tot_v = []
    dm = {"rb": [], "su": [], "td": []}
    dv = {"rb": [], "su": [], "td": []}
    G_mu = np.zeros((users, k))
    G_cov = np.zeros((k, k))
    for st in range(0, users, 2000):
        sp = min(st + 2000, users)
        d = sx.team_drafts(oa[st:sp], ob[st:sp], candidates)
        loc = np.arange(sp - st)[:, None, None]
        p = exam * attr[st:sp][loc, d["shown"]]
        vv = v[st:sp]
        W = {"rb": rb_weights(d), "su": d["team"] * ~d["shared"], "td": d["team"]}
        for r, w in W.items():
            mu_, s2 = sx._visit_moments(p, w, False)
            dm[r].append(vv * mu_.mean(1))
            dv[r].append(vv * (s2.mean(1) + mu_.var(1)))
        w = W["rb"]
        m = p * w
        mu = m.mean(1)
        E2 = np.einsum("csj,csl->cjl", m, m) / m.shape[1]
        E2[:, np.arange(k), np.arange(k)] += (p * (1 - p) * w**2).mean(1)
        G_mu[st:sp] = vv[:, None] * mu
        G_cov += (vv[:, None, None] * (E2 - np.einsum("cj,cl->cjl", mu, mu))).sum(0)
    for r in dm:
        M = np.concatenate(dm[r])
        V = np.concatenate(dv[r])
        print(
            r,
            "effect",
            M.mean(),
            "var",
            V.mean() + M.var(),
            "users",
            users_for_power(M.mean(), V.mean() + M.var()),
        )
    Sig = G_cov / users + np.cov(G_mu.T, bias=True)
    mu = G_mu.mean(0)
    wopt = np.linalg.solve(Sig, mu)
    wopt /= wopt[np.argmax(np.abs(wopt))]
    print("rb w*", np.round(wopt, 3), "users", users_for_power(wopt @ mu, wopt @ Sig @ wopt))
