"""Experiments run against a :class:`ShopperSimulator`, where the truth is known: is a 52/48 split
flagged, how far off-policy estimates land from a policy's true click rate, and how many users A/B
testing and team-draft interleaving need to see a known 2% NDCG difference."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

from shelfwise.evaluation.experiments import (
    assign,
    srm_test,
    team_draft,
    users_for_power,
)
from shelfwise.evaluation.simulator import ShopperSimulator, examination

# --- sample ratio mismatch ----------------------------------------------------------------------


def srm_scenario(*, users: int = 20_000, seed: int = 0, alpha: float = 0.001) -> dict[str, Any]:
    """Assign ``users`` by salted hash; 'injected' sends 52% to control (a broken split), 'fair' 50%.
    Both are tested against the intended 50/50."""
    salt = f"seed-{seed}"
    ids = [f"shopper-{i}" for i in range(users)]
    out: dict[str, Any] = {"users": users, "alpha": alpha}
    for name, weights in (("injected", (0.52, 0.48)), ("fair", (0.5, 0.5))):
        arms = [assign(u, "srm-check", salt, ("control", "treatment"), weights) for u in ids]
        counts = [arms.count("control"), arms.count("treatment")]
        r = srm_test(counts, [0.5, 0.5], alpha=alpha)
        out[name] = {"srm_flagged": r["flagged"], "p": r["p"], "chi2": r["chi2"], "counts": counts}
    return out


# --- off-policy evaluation ----------------------------------------------------------------------


def _fit_logistic(x: np.ndarray, y: np.ndarray, *, l2: float = 1e-3, iters: int = 25) -> np.ndarray:
    """Newton-Raphson logistic regression with an intercept and a small ridge penalty."""
    xb = np.column_stack([np.ones(len(x)), x])
    w = np.zeros(xb.shape[1])
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(xb @ w)))
        grad = xb.T @ (p - y) + l2 * w
        hess = (xb * (p * (1 - p))[:, None]).T @ xb + l2 * np.eye(len(w))
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w


def _predict(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(w[0] + x @ w[1:])))


def off_policy_estimates(
    rewards: np.ndarray,
    propensities: np.ndarray,
    target_prob_of_logged: np.ndarray,
    q_logged: np.ndarray,
    q_target: np.ndarray,
) -> dict[str, float]:
    """IPS, self-normalised IPS and doubly robust estimates of a target policy's mean reward
    (Dudík, Langford & Li, ICML 2011). ``q_target`` is the reward model's expectation under the
    target policy, ``q_logged`` its prediction for the logged action."""
    w = target_prob_of_logged / propensities
    ips_terms = w * rewards
    dr_terms = q_target + w * (rewards - q_logged)
    n = len(rewards)
    snips = float(np.sum(ips_terms) / np.sum(w)) if w.sum() > 0 else float("nan")
    # SNIPS's standard error by the delta method for a ratio of means
    snips_se = float(np.std(ips_terms - snips * w, ddof=1) / np.mean(w) / np.sqrt(n)) if n > 1 else 0.0
    return {
        "ips": float(np.mean(ips_terms)),
        "snips": snips,
        "dr": float(np.mean(dr_terms)),
        "ips_se": float(np.std(ips_terms, ddof=1) / np.sqrt(n)) if n > 1 else 0.0,
        "snips_se": snips_se,
        "dr_se": float(np.std(dr_terms, ddof=1) / np.sqrt(n)) if n > 1 else 0.0,
    }


def ope_scenario(
    sim: ShopperSimulator,
    *,
    logs: int = 200_000,
    candidates: int = 10,
    epsilon: float = 0.5,
    seed: int = 0,
) -> dict[str, Any]:
    """One recommendation slot. The logging policy is ε-greedy over popularity (propensities
    logged); the candidate policy shows each shopper the top item of a personalised model (the true
    affinity seen through noise). Reward: a click. Truth: the candidate policy's exact expected
    click rate on the logged shoppers, from the simulator's probabilities.

    The estimates' standard errors are returned too: with click rates near 0.1 the Bernoulli noise
    of the few logs whose action the candidate policy would also take bounds every estimator, so
    an error is only meaningful next to its standard error (logs and epsilon set it)."""
    rng = np.random.default_rng(seed)
    shoppers = sim.sample_shoppers(logs, rng)
    cand = sim.candidates(shoppers, candidates, rng)
    p_click = sim.attraction(shoppers, cand) * examination(np.array([1]))[0]
    pop = sim.popularity[cand]
    model_score = sim.attraction_logits(shoppers, cand) + rng.normal(0, 1.0, cand.shape)
    rows = np.arange(logs)
    greedy = np.argmax(pop, axis=1)
    explore = rng.random(logs) < epsilon
    action = np.where(explore, rng.integers(0, candidates, logs), greedy)
    propensity = np.where(action == greedy, 1 - epsilon + epsilon / candidates, epsilon / candidates)
    reward = (rng.random(logs) < p_click[rows, action]).astype(np.float64)
    target = np.argmax(model_score, axis=1)
    truth = float(p_click[rows, target].mean())
    # reward model: logistic on what the shop knows (popularity, its model's score), cross-fitted
    feats = np.stack([pop, model_score], axis=2)  # (n, m, 2)
    folds = rng.integers(0, 2, logs)
    q_logged = np.empty(logs)
    q_target = np.empty(logs)
    for f in (0, 1):
        train, test = folds != f, folds == f
        w = _fit_logistic(feats[train, action[train]], reward[train])
        q_logged[test] = _predict(w, feats[test, action[test]])
        q_target[test] = _predict(w, feats[test, target[test]])
    est = off_policy_estimates(reward, propensity, (action == target).astype(np.float64), q_logged, q_target)
    logging_value = float(reward.mean())
    return {
        "logs": logs,
        "candidates": candidates,
        "epsilon": epsilon,
        "true_value": truth,
        "logging_policy_click_rate": logging_value,
        "estimates": est,
        "ips_error": abs(est["ips"] - truth) / truth,
        "snips_error": abs(est["snips"] - truth) / truth,
        "dr_error": abs(est["dr"] - truth) / truth,
        "dr_relative_se": est["dr_se"] / truth,
        "matched_logs": int((action == target).sum()),
    }


# --- interleaving versus A/B --------------------------------------------------------------------


def _ndcg(gains_in_order: np.ndarray, ideal: np.ndarray) -> np.ndarray:
    disc = examination(np.arange(1, gains_in_order.shape[1] + 1))
    return (gains_in_order * disc).sum(1) / (ideal * disc).sum(1)


def interleaving_vs_ab_scenario(
    sim: ShopperSimulator,
    *,
    users: int = 20_000,
    candidates: int = 30,
    k: int = 10,
    ndcg_drop: float = 0.02,
    power: float = 0.8,
    alpha: float = 0.05,
    check_runs: int = 100,
    drafts: int = 16,
    seed: int = 0,
) -> dict[str, Any]:
    """Ranker A sorts candidates by the true attraction seen through noise; ranker B through more
    noise, tuned so its true NDCG@k (gains = true attraction probabilities) is ``ndcg_drop`` lower.

    A/B: each user sees one ranker on every visit; the metric is clicks per user; the users needed
    (both arms) follow from the exact per-user mean and variance the simulator's probabilities give.
    Interleaving: each visit shows a fresh team-draft mix; the metric is A's credited clicks minus
    B's per user, tested against zero; its moments are averaged over ``drafts`` team drafts per user.
    Both figures are then checked by simulating ``check_runs`` experiments of that size (users
    resampled, clicks drawn) and counting how often a t-test at ``alpha`` detects the difference.
    """
    rng = np.random.default_rng(seed)
    shoppers = sim.sample_shoppers(users, rng)
    cand = sim.candidates(shoppers, candidates, rng)
    attr = sim.attraction(shoppers, cand)
    logits = sim.attraction_logits(shoppers, cand)
    ideal = -np.sort(-attr, axis=1)[:, :k]
    za, zb = rng.normal(size=cand.shape), rng.normal(size=cand.shape)
    rows = np.arange(users)[:, None]

    def ranked(noise: float, z: np.ndarray) -> np.ndarray:
        return np.argsort(-(logits + noise * z), axis=1)[:, :k]

    def ndcg(order: np.ndarray) -> float:
        return float(_ndcg(attr[rows, order], ideal).mean())

    sigma_a = 1.0
    order_a = ranked(sigma_a, za)
    ndcg_a = ndcg(order_a)
    target = ndcg_a * (1 - ndcg_drop)
    lo, hi = sigma_a, 50.0
    for _ in range(40):  # bisection on B's noise with its draws fixed: NDCG falls as noise grows
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if ndcg(ranked(mid, zb)) > target else (lo, mid)
    sigma_b = (lo + hi) / 2
    order_b = ranked(sigma_b, zb)
    ndcg_b = ndcg(order_b)

    exam = examination(np.arange(1, k + 1))
    visits = shoppers.visits.astype(np.float64)
    out: dict[str, Any] = {
        "click_model": sim.config.click_model,
        "users_simulated": users,
        "k": k,
        "ndcg_a": ndcg_a,
        "ndcg_b": ndcg_b,
        "ndcg_relative_difference": 1 - ndcg_b / ndcg_a,
        "power": power,
        "alpha": alpha,
    }
    # A/B on clicks per user: Var(Y) = E[Var(Y|user)] + Var(E[Y|user])
    moments = []
    probs = []
    cascade = sim.config.click_model == "cascade"
    for order in (order_a, order_b):
        # cascade: at most one click per visit, P(click) = 1 - prod(1 - attraction)
        p = 1 - np.prod(1 - attr[rows, order], axis=1, keepdims=True) if cascade else exam * attr[rows, order]
        probs.append(p)
        mean_u = visits * p.sum(1)
        var_u = visits * (p * (1 - p)).sum(1)
        moments.append((float(mean_u.mean()), float(var_u.mean() + mean_u.var())))
    (mean_a, var_a), (mean_b, var_b) = moments
    per_arm = users_for_power(mean_a - mean_b, var_a + var_b, alpha=alpha, power=power)
    ab_users = 2 * int(np.ceil(per_arm))
    out.update(ab_clicks_per_user_a=mean_a, ab_clicks_per_user_b=mean_b, ab_users=ab_users)
    # interleaving: each visit a fresh team draft; `drafts` of them per user estimate its moments
    signed = np.zeros((users, drafts, k))  # click probability × (+1 credited to A, -1 to B)
    for u in range(users):
        a_list, b_list = cand[u, order_a[u]].tolist(), cand[u, order_b[u]].tolist()
        attr_of = dict(zip(cand[u].tolist(), attr[u].tolist(), strict=True))
        for r in range(drafts):
            shown, teams = team_draft(a_list, b_list, k, rng)
            r_shown = np.array([attr_of[i] for i in shown])
            if cascade:  # P(the first click is at slot j) = r_j prod_{i<j} (1 - r_i)
                p = r_shown * np.concatenate([[1.0], np.cumprod(1 - r_shown)[:-1]])
            else:
                p = exam[: len(shown)] * r_shown
            signed[u, r, : len(shown)] = np.where(np.array(teams) == 0, p, -p)
    per_draft_mean = signed.sum(2)  # (users, drafts)
    if cascade:  # credit is -1, 0 or +1: E[c^2] = P(a click)
        per_draft_var = np.abs(signed).sum(2) - per_draft_mean**2
    else:
        per_draft_var = (np.abs(signed) * (1 - np.abs(signed))).sum(2)
    visit_mean = per_draft_mean.mean(1)
    visit_var = per_draft_var.mean(1) + per_draft_mean.var(1)
    d_mean = visits * visit_mean
    effect = float(d_mean.mean())
    variance = float((visits * visit_var).mean() + d_mean.var())
    inter_users = int(np.ceil(users_for_power(effect, variance, alpha=alpha, power=power)))
    out.update(
        interleaving_credit_difference_per_user=effect,
        interleaving_effect_monte_carlo_se=float(d_mean.std() / np.sqrt(users)),
        interleaving_users=inter_users,
        ratio=ab_users / inter_users,
    )
    # the per-user winner rule (Radlinski et al. 2008: +1 if A got more credited clicks, -1 if B,
    # 0 for a tie), its moments by drawing each user's clicks `drafts` times
    wins = np.concatenate(
        [
            np.sign(_session_credit(signed, shoppers.visits, np.arange(users), rng, exclusive=cascade))
            for _ in range(drafts)
        ]
    )
    winner_users = int(
        np.ceil(users_for_power(float(wins.mean()), float(wins.var()), alpha=alpha, power=power))
    )
    out.update(
        interleaving_winner_rule_mean=float(wins.mean()),
        interleaving_users_winner_rule=winner_users,
        ratio_winner_rule=ab_users / winner_users,
    )
    if check_runs:
        out["check_runs"] = check_runs
        out["ab_simulated_power"] = _ab_power(probs, shoppers.visits, ab_users // 2, check_runs, alpha, rng)
        out["interleaving_simulated_power"] = _interleaving_power(
            signed, shoppers.visits, inter_users, check_runs, alpha, rng, exclusive=cascade
        )
    out["method"] = (
        "power analysis (two-sided z-test) on the exact per-user moments from the simulator's "
        "click probabilities; interleaving moments averaged over the team drafts drawn"
    )
    return out


def _visit_clicks(
    p: np.ndarray, visits: np.ndarray, rng: np.random.Generator, *, exclusive: bool = False
) -> np.ndarray:
    """Per user, the sum over its visits of clicks drawn from ``p`` (signed: clicks × sign). With
    ``exclusive`` (the cascade model) ``|p|`` are the probabilities of one click at each slot,
    at most one per visit."""
    flat = np.repeat(np.arange(len(visits)), visits)
    prob = p[flat]
    if exclusive:
        cum = np.cumsum(np.abs(prob), axis=-1)
        u = rng.random(len(prob))
        slot = np.minimum((u[:, None] >= cum).sum(-1), prob.shape[-1] - 1)
        per_visit = np.where(u < cum[:, -1], np.sign(prob[np.arange(len(prob)), slot]), 0.0)
        return np.bincount(flat, weights=per_visit, minlength=len(visits))
    clicks = (rng.random(prob.shape) < np.abs(prob)) * np.sign(prob)
    per_visit = clicks.sum(-1)
    return np.bincount(flat, weights=per_visit, minlength=len(visits))


def _ab_power(
    probs: list[np.ndarray],
    visits: np.ndarray,
    per_arm: int,
    runs: int,
    alpha: float,
    rng: np.random.Generator,
) -> float:
    hits = 0
    for _ in range(runs):
        ys = []
        for p in probs:
            pick = rng.integers(0, len(visits), per_arm)
            ys.append(_visit_clicks(p[pick], visits[pick], rng))
        hits += bool(stats.ttest_ind(ys[0], ys[1]).pvalue < alpha)
    return hits / runs


def _interleaving_power(
    signed: np.ndarray,
    visits: np.ndarray,
    n: int,
    runs: int,
    alpha: float,
    rng: np.random.Generator,
    *,
    exclusive: bool = False,
) -> float:
    hits = 0
    for _ in range(runs):
        per_user = _session_credit(signed, visits, rng.integers(0, len(visits), n), rng, exclusive=exclusive)
        hits += bool(stats.ttest_1samp(per_user, 0.0).pvalue < alpha)
    return hits / runs


def _session_credit(
    signed: np.ndarray,
    visits: np.ndarray,
    users: np.ndarray,
    rng: np.random.Generator,
    *,
    exclusive: bool = False,
) -> np.ndarray:
    """A's credited clicks minus B's over each given user's visits, each visit a random stored draft."""
    v = visits[users]
    flat = np.repeat(users, v)
    draft = rng.integers(0, signed.shape[1], len(flat))
    d = _visit_clicks(signed[flat, draft], np.ones(len(flat), np.int64), rng, exclusive=exclusive)
    return np.bincount(np.repeat(np.arange(len(users)), v), weights=d, minlength=len(users))
