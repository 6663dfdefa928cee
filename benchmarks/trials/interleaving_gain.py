# ruff: noqa
# Trial (not part of make bench): is the served inverse-propensity credit leaving sensitivity on the table?
# (1) the gain g(rank) in the credit (g_A(d) - g_B(d)) / q(d): DCG's 1/log2(r+1) against other shapes;
# (2) weighting shoppers by their visits (v^-beta) in the interleaving test, and the A/B test under the same weights;
# (3) where the per-shopper variance of the credit comes from: click noise (Bernoulli clicks on a given list),
#     the draft's coins, and shoppers' own preferences differing (between shoppers).
# Position click model, the scenario's headline pair (independent errors, 2% NDCG apart); chosen on seed 1 (5,000
# users), reported on seed 0 (20,000 users). Writes benchmarks/results/interleaving_gain_trial.json.
# usage: PYTHONPATH=. python benchmarks/trials/interleaving_gain.py
import json, time
from pathlib import Path
import numpy as np
from shelfwise.evaluation import simulated_experiments as sx
from shelfwise.evaluation.simulator import ShopperSimulator, continuation_of, examination_of, examination
from shelfwise.features.dataset import Dataset

OUT = Path(__file__).resolve().parents[1] / "results" / "interleaving_gain_trial.json"
K, CANDIDATES = 10, 30
Z2 = (1.959964 + 0.841621) ** 2  # alpha 0.05 two-sided, power 0.8
R = np.arange(1, K + 1, dtype=float)
GAINS = {
    "dcg 1/log2(r+1) (served)": 1 / np.log2(R + 1),
    "uniform (precision@10)": np.ones(K),
    "linear (11-r)/10": (K + 1 - R) / K,
    "1/r": 1 / R,
    "1/sqrt(r)": 1 / np.sqrt(R),
    "top 5 uniform": (R <= 5).astype(float),
    "1/log2(r+1)^2": 1 / np.log2(R + 1) ** 2,
}
BETAS = (0.0, -0.25, 0.25, 0.5, 1.0)


def run(sim, seed, users):
    rng = np.random.default_rng(seed)
    shoppers = sim.sample_shoppers(users, rng)
    cand = sim.candidates(shoppers, CANDIDATES, rng)
    attr, logits = sim.attraction(shoppers, cand), sim.attraction_logits(shoppers, cand)
    za, zb = rng.normal(size=cand.shape), rng.normal(size=cand.shape)
    sa, sb, _ = sx._pair_scores(logits, attr, za, zb, K, 0.02, 0.0)
    oa, ob = np.argsort(-sa, axis=1)[:, :K], np.argsort(-sb, axis=1)[:, :K]
    lam, exam = continuation_of(sim.config), examination_of(sim.config, K)
    served = examination(R)
    v = shoppers.visits.astype(float)
    rows = np.arange(users)[:, None]
    ab = [
        sx._visit_moments(sx._slot_click_probs(attr[rows, o], exam, lam), np.ones(K), lam) for o in (oa, ob)
    ]
    mu = {g: np.empty(users) for g in GAINS}
    noise = {g: np.empty(users) for g in GAINS}
    coins = {g: np.empty(users) for g in GAINS}
    for start in range(0, users, 2000):
        stop = min(start + 2000, users)
        d = sx.team_drafts(oa[start:stop], ob[start:stop], CANDIDATES)
        loc = np.arange(stop - start)[:, None, None]
        p = sx._slot_click_probs(attr[start:stop][loc, d["shown"]], exam, lam)
        for g, gain in GAINS.items():
            m, var = sx._visit_moments(
                p, sx.ips_credits(oa[start:stop], ob[start:stop], d["shown"], CANDIDATES, served, gain), lam
            )
            mu[g][start:stop], noise[g][start:stop], coins[g][start:stop] = m.mean(1), var.mean(1), m.var(1)
    out = {"users": users, "seed": seed, "gains": {}, "weights": {}}
    for g in GAINS:
        mean = v * mu[g]
        var = (v * (noise[g] + coins[g])).mean() + mean.var()
        out["gains"][g] = {
            "interleaving_users": round(Z2 * var / mean.mean() ** 2),
            "effect": float(mean.mean()),
        }
    head = "dcg 1/log2(r+1) (served)"
    out["variance_parts"] = {
        "click_noise": float((v * noise[head]).mean()),
        "draft_coins": float((v * coins[head]).mean()),
        "between_shoppers": float((v * mu[head]).var()),
    }
    for beta in BETAS:
        a = v**-beta
        mean = a * v * mu[head]
        second = a**2 * (v * (noise[head] + coins[head]) + (v * mu[head]) ** 2)
        n_il = Z2 * (second.mean() - mean.mean() ** 2) / mean.mean() ** 2
        var_ab, rates = 0.0, []
        for m, s2 in ab:
            r = (a * v * m).sum() / (a * v).sum()
            var_ab += (a**2 * (v * s2 + (v * m - r * v) ** 2)).mean() / (a * v).mean() ** 2
            rates.append(r)
        n_ab = 2 * Z2 * var_ab / (rates[0] - rates[1]) ** 2
        out["weights"][f"v^{-beta:g}"] = {
            "interleaving_users": round(n_il),
            "ab_users_same_weights_no_cuped": round(n_ab),
        }
    return out


def main():
    t = time.time()
    data = Dataset.from_file(Path("data/online_retail/online_retail.csv.gz"), "online-retail", limit=150_000)
    sim = ShopperSimulator.fit(data, seed=0)
    result = {"chosen_on": run(sim, 1, 5_000), "reported_on": run(sim, 0, 20_000)}
    result["seconds"] = round(time.time() - t, 1)
    result["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
