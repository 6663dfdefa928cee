"""Experiments run against a :class:`ShopperSimulator`, where the truth is known: is a 52/48 split
flagged, how far off-policy estimates land from a policy's true click rate, and how many users A/B
testing and team-draft interleaving need to see a known 2% NDCG difference."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
from scipy import stats

from shelfwise.evaluation.experiments import (
    assign,
    srm_test,
    users_for_power,
)
from shelfwise.evaluation.simulator import (
    ShopperSimulator,
    chain_click_probs,
    continuation_of,
    draw_chain_clicks,
    examination,
    examination_of,
)

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


def team_drafts(order_a: np.ndarray, order_b: np.ndarray, n_items: int) -> dict[str, np.ndarray]:
    """Every team draft (Radlinski, Kurup & Joachims, CIKM 2008) of each row's two rankings at once.

    ``order_a`` and ``order_b`` are (n, k) item indices below ``n_items`` (k items each, so neither
    team runs out within k slots). Team draft flips a coin only when both teams have picked equally
    often, i.e. at the start of each round of two picks, so the 2^ceil(k/2) coin sequences are
    equally likely and listing them all gives the exact distribution of the shown lists (the same
    rule as :func:`~shelfwise.evaluation.experiments.team_draft`, which draws one of them).

    Returns ``shown`` (n, S, k) items, ``team`` (n, S, k) +1 for A and -1 for B, and ``shared``
    (n, S, k): the pick was a round's first and both teams' best item not yet shown was that item,
    so which team got it was the coin alone.
    """
    n, k = order_a.shape
    rounds = (k + 1) // 2
    coins = np.array(list(itertools.product((0, 1), repeat=rounds)), np.int64)
    s = len(coins)
    rows = np.arange(n)
    shown = np.empty((n, s, k), np.int64)
    team = np.empty((n, s, k), np.float64)
    shared = np.zeros((n, s, k), bool)
    for si, coin in enumerate(coins):
        seen = np.zeros((n, n_items), bool)
        ptr = [np.zeros(n, np.int64), np.zeros(n, np.int64)]
        for step in range(k):
            # the round's coin says who picks first; the other team picks second
            a_turn = bool(coin[step // 2] == 0) if step % 2 == 0 else bool(coin[step // 2] == 1)
            for side, order in ((0, order_a), (1, order_b)):
                p = ptr[side]
                while True:  # skip items the other team already showed
                    blocked = seen[rows, order[rows, np.minimum(p, k - 1)]] & (p < k)
                    if not blocked.any():
                        break
                    p += blocked
            if step % 2 == 0:
                shared[:, si, step] = order_a[rows, ptr[0]] == order_b[rows, ptr[1]]
            side = 0 if a_turn else 1
            item = (order_a, order_b)[side][rows, ptr[side]]
            seen[rows, item] = True
            shown[:, si, step] = item
            team[:, si, step] = 1.0 if a_turn else -1.0
            ptr[side] += 1
    return {"shown": shown, "team": team, "shared": shared}


def ips_credits(
    order_a: np.ndarray,
    order_b: np.ndarray,
    shown: np.ndarray,
    n_items: int,
    exam: np.ndarray,
    gain: np.ndarray | None = None,
) -> np.ndarray:
    """Inverse-propensity credit of a click on each slot of every team draft (``shown`` (n, S, k)
    from :func:`team_drafts`, the S drafts equally likely), as served
    (:func:`~shelfwise.evaluation.experiments.interleave`): ``(g_A(d) - g_B(d)) / q(d)``, ``g`` the
    DCG discount of the item's rank in each top k, ``q(d)`` = sum over drafts and slots of
    P(draft) × ``exam``[slot] where the draft shows ``d``. ``gain``: ``g`` by rank instead of the
    DCG discount (a trial compares shapes)."""
    n, s, k = shown.shape
    rows = np.arange(n)[:, None]
    disc = 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64)) if gain is None else gain
    w = np.zeros((n, n_items))
    w[rows, order_a] += disc
    w[rows, order_b] -= disc
    q = np.zeros((n, n_items))
    loc = np.broadcast_to(np.arange(n)[:, None, None], shown.shape)
    np.add.at(q, (loc, shown), np.broadcast_to(exam[:k] / s, shown.shape))
    credit = np.where(q > 0, w / np.where(q > 0, q, 1.0), 0.0)
    return credit[np.arange(n)[:, None, None], shown]


OPTIMIZED_CREDIT = "linear"  # chosen on seed 1 (5k users: 25,611 users vs inverse 43,187); reported on seed 0


def allowed_lists(order_a: np.ndarray, order_b: np.ndarray, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """Every list optimized interleaving may show (Radlinski & Craswell, WSDM 2013): each prefix is
    the union of a prefix of A and a prefix of B. Built by all 2^k sequences of "the next slot takes
    A's (or B's) best item not yet shown", vectorised over rows; a sequence that asks an exhausted
    ranker for an item is invalid. Returns ``shown`` (n, 2^k, k) and ``valid`` (n, 2^k)."""
    n, k = order_a.shape
    seqs = np.array(list(itertools.product((0, 1), repeat=k)), np.int64)
    s = len(seqs)
    r_, c_ = np.arange(n)[:, None], np.arange(s)[None, :]
    shown = np.empty((n, s, k), np.int64)
    valid = np.ones((n, s), bool)
    seen = np.zeros((n, s, n_items), bool)
    ptr = np.zeros((2, n, s), np.int64)
    orders = (order_a, order_b)
    for step in range(k):
        nxt = []
        for side in (0, 1):
            p = ptr[side]
            while True:  # skip items already shown
                item = np.take_along_axis(orders[side], np.minimum(p, k - 1), 1)
                blocked = seen[r_, c_, item] & (p < k)
                if not blocked.any():
                    break
                p += blocked
            nxt.append(item)
        take_a = seqs[None, :, step] == 0
        valid &= ~np.where(take_a, ptr[0] >= k, ptr[1] >= k)
        item = np.where(take_a, nxt[0], nxt[1])
        shown[:, :, step] = item
        seen[r_, c_, item] = True
        ptr[0] += take_a
        ptr[1] += ~take_a
    return shown, valid


def rank_credit(
    order_a: np.ndarray, order_b: np.ndarray, shown: np.ndarray, n_items: int, kind: str = "inverse"
) -> np.ndarray:
    """Optimized interleaving's credit of a click on each shown item (an item a ranker did not
    return has rank k+1), positive favours A: ``inverse`` 1/rank_A - 1/rank_B, ``linear``
    rank_B - rank_A (Radlinski & Craswell's inverse and linear rank differences)."""
    n, k = order_a.shape
    rows = np.arange(n)[:, None]
    ra = np.full((n, n_items), k + 1.0)
    rb = np.full((n, n_items), k + 1.0)
    ra[rows, order_a] = np.arange(1, k + 1)
    rb[rows, order_b] = np.arange(1, k + 1)
    r3 = np.arange(n)[:, None, None]
    if kind == "linear":
        return rb[r3, shown] - ra[r3, shown]
    return 1.0 / ra[r3, shown] - 1.0 / rb[r3, shown]


def optimized_interleaving(
    order_a: np.ndarray,
    order_b: np.ndarray,
    n_items: int,
    *,
    keep: int | None = None,
    credit: str | None = None,
) -> dict[str, np.ndarray]:
    """Optimized interleaving (Radlinski & Craswell, WSDM 2013) of each row's two rankings.

    Over the allowed lists (:func:`allowed_lists`) a linear programme (scipy's HiGHS) chooses the
    probabilities: they sum to one, and for every prefix length j a shopper clicking at random in
    the top j gives zero expected credit (``sum_L p_L sum_{i<=j} credit(L_i) = 0``), so a ranker
    gains credit only from clicks that follow relevance. Among those distributions it picks the one
    whose lists are most balanced, minimising ``sum_L p_L sum_j |sum_{i<=j} credit(L_i)|`` (our
    reading of the paper's sensitivity objective: a list on which random clicks already favour one
    ranker carries less information). Lists with the same prefix credits are interchangeable for
    the programme and are solved once. A basic optimum uses at most k+1 lists, so the result keeps
    the ``keep`` (default k+1) most likely lists per row: ``shown`` (n, keep, k), ``credit``
    (n, keep, k) and ``prob`` (n, keep), zero-padded. ``infeasible`` (n,) marks rows where no
    distribution is unbiased (the linear credit admits none for some pairs): those get the least
    biased one (the sum over prefix lengths of |expected random-click credit| minimised), so the
    scenario reports how many there are and what bias they carry.
    """
    from scipy.optimize import linprog

    n, k = order_a.shape
    keep = keep or k + 1
    shown, valid = allowed_lists(order_a, order_b, n_items)
    delta = rank_credit(order_a, order_b, shown, n_items, credit or OPTIMIZED_CREDIT)
    prefix = np.cumsum(delta, -1)
    out_shown = np.zeros((n, keep, k), np.int64)
    out_credit = np.zeros((n, keep, k))
    out_prob = np.zeros((n, keep))
    b_eq = np.r_[np.zeros(k), 1.0]
    infeasible = np.zeros(n, bool)
    for u in range(n):
        idx = np.flatnonzero(valid[u])
        _, first = np.unique(np.round(prefix[u, idx], 12), axis=0, return_index=True)
        idx = idx[first]
        c = prefix[u, idx]
        res = linprog(
            np.abs(c).sum(1),
            A_eq=np.vstack([c.T, np.ones(len(idx))]),
            b_eq=b_eq,
            bounds=(0, None),
            method="highs",
        )
        if res.status == 2:  # no unbiased distribution: the least biased one (slack on each prefix)
            infeasible[u] = True
            eye = np.vstack([np.eye(k), np.zeros((1, k))])
            res = linprog(
                np.r_[np.abs(c).sum(1), np.full(2 * k, 1e6)],
                A_eq=np.hstack([np.vstack([c.T, np.ones(len(idx))]), eye, -eye]),
                b_eq=b_eq,
                bounds=(0, None),
                method="highs",
            )
        if res.status != 0:
            raise RuntimeError(f"optimized interleaving: linear programme failed ({res.message})")
        res.x = res.x[: len(idx)]
        top = np.argsort(-res.x)[:keep]
        top = top[res.x[top] > 0]
        prob = res.x[top] / res.x[top].sum()
        m = len(top)
        out_shown[u, :m] = shown[u, idx[top]]
        out_credit[u, :m] = delta[u, idx[top]]
        out_prob[u, :m] = prob
        out_shown[u, m:] = shown[u, idx[top[0]]]  # padding: a real list with probability zero
        out_credit[u, m:] = delta[u, idx[top[0]]]
    return {"shown": out_shown, "credit": out_credit, "prob": out_prob, "infeasible": infeasible}


def _wilson(hits: int, runs: int, z: float = 1.96) -> list[float]:
    """Wilson score 95% interval of a binomial proportion."""
    if runs == 0:
        return [float("nan"), float("nan")]
    p = hits / runs
    centre = (p + z * z / (2 * runs)) / (1 + z * z / runs)
    half = z * np.sqrt(p * (1 - p) / runs + z * z / (4 * runs * runs)) / (1 + z * z / runs)
    return [float(centre - half), float(centre + half)]


def _slot_click_probs(attr_shown: np.ndarray, exam: np.ndarray, lam: float) -> np.ndarray:
    """P(click) at each slot of one visit (last axis = slots), from examination × attraction and the
    chance ``lam`` of going on after a click (1: the position model; 0 with ``exam`` all ones: the
    cascade model, P(the one click is there))."""
    return chain_click_probs(exam * attr_shown, lam)


def _draw_visits(prob: np.ndarray, rng: np.random.Generator, lam: float) -> np.ndarray:
    """Clicks (bool, same shape as ``prob``) of one visit per row, from the marginals ``prob``:
    independent per slot (lam = 1), at most one (lam = 0), or a click chain in between."""
    if lam == 0.0:
        cum = np.cumsum(prob, axis=-1)
        u = rng.random((*prob.shape[:-1], 1))
        first = (u >= cum).sum(-1, keepdims=True)
        return (np.arange(prob.shape[-1]) == first) & (u < cum[..., -1:])
    return draw_chain_clicks(prob, lam, rng)


def _visit_moments(prob: np.ndarray, weight: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of one visit's credit sum(click_j * weight_j), per row. With a click
    chain, P(c_i and c_j) = P(c_i) lam p_j / (1 - (1 - lam) sum_{l<=i} p_l) for i < j."""
    mean = (prob * weight).sum(-1)
    if lam >= 1.0:  # independent slots
        return mean, (prob * (1 - prob) * weight**2).sum(-1)
    second = (prob * weight**2).sum(-1)
    if lam > 0.0:
        looking_after = 1 - (1 - lam) * np.cumsum(prob, axis=-1)
        inner = np.cumsum(weight * prob / looking_after, axis=-1) - weight * prob / looking_after
        second = second + 2 * lam * (weight * prob * inner).sum(-1)
    return mean, second - mean**2


AB_ANALYSES = ("clicks-per-user", "ctr-delta", "ctr-delta-cuped")
AB_ANALYSIS = "ctr-delta-cuped"  # the strongest: never more users than the other two (same effect)
AB_ANALYSIS_TEXT = {
    "clicks-per-user": "clicks per user, two-sample z-test",
    "ctr-delta": "clicks per visit (a ratio metric) with delta-method variance (Deng, Knoblich & Lu 2018); "
    "equivalent to regression adjustment (CUPED) on the user's visits",
    "ctr-delta-cuped": "clicks per visit with delta-method variance and CUPED (Deng, Xu, Kohavi & Walker "
    "2013) on a pre-period covariate: each user's clicks per visit over the same number of visits to the "
    "production ranker (A) before the test, theta pooled over both arms",
}

INTERLEAVING_METHODS = ("team-draft", "optimized")
CREDIT_TEXT = {
    "team-draft": "team draft, inverse-propensity credit as served: a click on item d credits "
    "(g_A(d) - g_B(d)) / q(d), g = the DCG discount of d's rank in each top k, q(d) = P(team draft "
    "shows d at a slot) x P(a shopper examines that slot) under 1/log2(r+1), summed over slots",
    "optimized": "optimized interleaving (Radlinski & Craswell 2013): allowed lists = prefixes are "
    "unions of prefixes of A and B; list probabilities by a linear programme so that random clicks "
    "on every top-j give zero expected credit; a click credits rank_B - rank_A (linear rank difference)",
}


def _optimized_moments(
    order_a: np.ndarray,
    order_b: np.ndarray,
    attr: np.ndarray,
    exam: np.ndarray,
    lam: float,
    visits: np.ndarray,
    start: int,
    stop: int,
    n_items: int,
    rng: np.random.Generator,
    replicates: int,
    mean_out: np.ndarray,
    var_out: np.ndarray,
    pool_out: np.ndarray,
    bias_out: np.ndarray,
) -> None:
    """Per-user exact moments and stored draws of optimized interleaving's credit, users start:stop."""
    sub = 250  # the allowed lists of 250 users x 2^k sequences fit in memory
    for s0 in range(start, stop, sub):
        s1 = min(s0 + sub, stop)
        oi = optimized_interleaving(order_a[s0:s1], order_b[s0:s1], n_items)
        # residual expected credit of random clicks, max over prefix lengths (0 unless infeasible)
        prefix_bias = (oi["prob"][:, :, None] * np.cumsum(oi["credit"], -1)).sum(1)
        bias_out[s0:s1] = np.abs(prefix_bias).max(1) * oi["infeasible"]
        local = np.arange(s1 - s0)[:, None, None]
        p = _slot_click_probs(attr[s0:s1][local, oi["shown"]], exam, lam)  # (c, L, k)
        mu, s2 = _visit_moments(p, oi["credit"], lam)  # (c, L)
        m = (oi["prob"] * mu).sum(1)
        v = visits[s0:s1].astype(np.float64)
        mean_out[s0:s1] = v * m
        var_out[s0:s1] = v * ((oi["prob"] * (s2 + mu**2)).sum(1) - m**2)
        cflat = np.repeat(np.arange(s1 - s0), visits[s0:s1])
        cum = np.cumsum(oi["prob"], 1)
        for rep in range(replicates):
            u = rng.random(len(cflat)) * cum[cflat, -1]
            pick = np.minimum((u[:, None] >= cum[cflat]).sum(1), cum.shape[1] - 1)
            clicks = _draw_visits(p[cflat, pick], rng, lam)
            credit = (clicks * oi["credit"][cflat, pick]).sum(1)
            pool_out[s0:s1, rep] = np.bincount(cflat, weights=credit, minlength=s1 - s0)


def _cuped_ratio_z(arms: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> float:
    """z of the difference in clicks per visit between two arms, each given per-user (clicks,
    pre-period clicks, visits): delta-method linearisation of both ratios, then CUPED with theta
    pooled over the arms (Deng et al. 2013)."""
    ys, xs, rs, rxs = [], [], [], []
    for c, x, v in arms:
        vbar = v.mean()
        r, rx = c.sum() / v.sum(), x.sum() / v.sum()
        ys.append((c - r * v) / vbar)
        xs.append((x - rx * v) / vbar)
        rs.append(r)
        rxs.append(rx)
    y_all, x_all = np.concatenate(ys), np.concatenate(xs)
    theta = float(np.cov(y_all, x_all)[0, 1] / x_all.var(ddof=1))
    rx_all = float(sum(x.sum() for _, x, _ in arms) / sum(v.sum() for _, _, v in arms))
    est = [rs[i] - theta * (rxs[i] - rx_all) for i in (0, 1)]
    var = [float((ys[i] - theta * xs[i]).var(ddof=1) / len(ys[i])) for i in (0, 1)]
    return float((est[0] - est[1]) / np.sqrt(var[0] + var[1]))


def rank_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Mean Spearman correlation, row by row, of two rankers' scores over the same candidates
    (shoppers x candidates): 1 when they order every shopper's candidates alike."""
    ra = np.argsort(np.argsort(-a, axis=1), axis=1).astype(np.float64)
    rb = np.argsort(np.argsort(-b, axis=1), axis=1).astype(np.float64)
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    den = np.sqrt((ra * ra).sum(axis=1) * (rb * rb).sum(axis=1))
    ok = den > 0
    return float(np.mean((ra * rb).sum(axis=1)[ok] / den[ok])) if ok.any() else 0.0


def _pair_scores(
    logits: np.ndarray, attr: np.ndarray, za: np.ndarray, zb: np.ndarray, k: int, ndcg_drop: float, rho: float
) -> tuple[np.ndarray, np.ndarray, float]:
    """Ranker A's scores (truth + unit noise) and B's (truth + noise sharing ``rho`` with A's, its
    scale bisected so B's true NDCG@k is ``ndcg_drop`` lower), and B's noise scale."""
    rows = np.arange(len(logits))[:, None]
    ideal = -np.sort(-attr, axis=1)[:, :k]
    z = rho * za + np.sqrt(1.0 - rho * rho) * zb

    def ndcg(scores: np.ndarray) -> float:
        return float(_ndcg(attr[rows, np.argsort(-scores, axis=1)[:, :k]], ideal).mean())

    a = logits + za
    target = ndcg(a) * (1 - ndcg_drop)
    lo, hi = 1.0, 50.0
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if ndcg(logits + mid * z) > target else (lo, mid)
    sigma = (lo + hi) / 2
    return a, logits + sigma * z, sigma


def model_agreement(
    sim: ShopperSimulator,
    model_a: Any,
    model_b: Any,
    *,
    users: int = 3_000,
    candidates: int = 30,
    seed: int = 0,
) -> dict[str, Any]:
    """How alike two recommenders trained on the data ``sim`` was fitted on order the simulator's
    shoppers' candidates (``rank_agreement`` of their scores, exact ties broken at random), over
    the shoppers and candidates both models know. With ``correlation_for_agreement`` this gives
    ``interleaving_vs_ab_scenario`` rankers as alike as two real model versions."""
    if sim.user_ids is None or sim.item_ids is None:
        raise ValueError("the simulator keeps no shop ids (fitted by an older version): fit it again")
    rng = np.random.default_rng(seed)
    shoppers = sim.sample_shoppers(users, rng)
    cand = sim.candidates(shoppers, candidates, rng)
    ext_users, ext_items = sim.user_ids[shoppers.taste], sim.item_ids[cand]
    dense = []
    for model in (model_a, model_b):
        u = model.user_map.to_internal(ext_users, strict=False)
        it = model.item_map.to_internal(ext_items.ravel(), strict=False).reshape(cand.shape)
        dense.append((u, it))
    known = np.all([(u >= 0) & np.all(it >= 0, axis=1) for u, it in dense], axis=0)
    rows = np.flatnonzero(known)
    if len(rows) < 10:
        raise ValueError(
            f"the two models know only {len(rows)} of {users} simulated shoppers and their candidates"
        )
    scores = []
    for model, (u, it) in zip((model_a, model_b), dense, strict=True):
        out = np.empty((len(rows), candidates), np.float64)
        for lo in range(0, len(rows), 500):
            part = rows[lo : lo + 500]
            full = np.asarray(model.score_users(u[part]), np.float64)
            out[lo : lo + len(part)] = np.take_along_axis(full, it[part], axis=1)
        scale = np.abs(out).max(axis=1, keepdims=True) + 1e-12
        scores.append(out + rng.random(out.shape) * scale * 1e-9)  # ties at random, not by column
    return {"shoppers": len(rows), "rank_agreement": rank_agreement(scores[0], scores[1])}


def correlation_for_agreement(
    sim: ShopperSimulator,
    agreement: float,
    *,
    users: int = 3_000,
    candidates: int = 30,
    k: int = 10,
    ndcg_drop: float = 0.02,
    seed: int = 0,
) -> float:
    """The share of ranker B's errors it has in common with A's (``ranker_correlation`` of
    ``interleaving_vs_ab_scenario``) at which the simulator's pair orders the candidates as alike
    (``rank_agreement``) as ``agreement``, e.g. measured between two real model versions on the same
    shoppers' candidates. Clipped to [0, 0.99]."""
    rng = np.random.default_rng(seed)
    shoppers = sim.sample_shoppers(users, rng)
    cand = sim.candidates(shoppers, candidates, rng)
    logits = sim.attraction_logits(shoppers, cand)
    attr = sim.attraction(shoppers, cand)
    za, zb = rng.normal(size=cand.shape), rng.normal(size=cand.shape)

    def agree(rho: float) -> float:
        a, b, _ = _pair_scores(logits, attr, za, zb, k, ndcg_drop, rho)
        return rank_agreement(a, b)

    if agree(0.0) >= agreement:
        return 0.0
    lo, hi = 0.0, 0.99
    if agree(hi) <= agreement:
        return hi
    for _ in range(20):  # agreement grows with the shared share
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if agree(mid) < agreement else (lo, mid)
    return (lo + hi) / 2


def interleaving_vs_ab_scenario(
    sim: ShopperSimulator,
    *,
    users: int = 20_000,
    candidates: int = 30,
    k: int = 10,
    ndcg_drop: float = 0.02,
    power: float = 0.8,
    alpha: float = 0.05,
    check_runs: int = 500,
    replicates: int = 8,
    bootstrap: int = 200,
    seed: int = 0,
    interleaving: str = "team-draft",
    ranker_correlation: float = 0.0,
) -> dict[str, Any]:
    """Ranker A sorts candidates by the true attraction seen through noise; ranker B through more
    noise, tuned so its true NDCG@k (gains = true attraction probabilities) is ``ndcg_drop`` lower.
    ``ranker_correlation`` is the share of B's errors it has in common with A's: 0 (independent
    errors) is the least favourable to interleaving, whose lists then differ most; two real model
    versions order the same candidates more alike (``correlation_for_agreement`` finds the share
    that matches a measured ``rank_agreement``).

    A/B: each user sees one ranker on every visit (the same visits as under interleaving); the
    metric is clicks, analysed the strongest standard way (``AB_ANALYSIS``): clicks per visit with
    delta-method variance, which removes the spread of visits per user, plus CUPED on a pre-period
    covariate (each user's clicks per visit on ranker A over as many visits before the test), which
    removes the part of the spread of users' click rates that their past predicts. Without CUPED,
    and plain clicks per user (a two-sample z-test), are reported alongside.
    Interleaving: each visit shows a fresh team draft of A and B; the metric is, per user, the
    credit to A minus B over all the user's visits, tested against zero (a one-sample test on
    per-user sums, so a heavy user is one unit, not many). The headline credit is the one served
    (:func:`~shelfwise.evaluation.experiments.interleave`): inverse propensity, a click on item d
    credits ``(g_A(d) - g_B(d)) / q(d)`` (``ips_credits``), whose expectation under the position model
    is the two rankers' DCG difference over the items team draft can show; an item both rank alike
    carries almost no credit, where team draft would credit it fully to the coin's team. Team-draft
    credit is reported alongside, plain and with *shared picks* (a round's first pick when both
    teams' next item was the same one, so only the coin decided its team) credited to neither.

    Users needed: the z-test formula on exact moments — every user's click probabilities, every
    team draft enumerated (no draft sampling). The moments are means over ``users`` simulated
    users, so a ``bootstrap`` over users gives their 95% intervals. Each figure is then checked by
    simulating ``check_runs`` experiments of that size (users resampled with one of ``replicates``
    stored click draws each) and counting detections; the power estimates carry Wilson intervals.
    """
    if interleaving not in INTERLEAVING_METHODS:
        raise ValueError(
            f"interleaving must be one of {', '.join(INTERLEAVING_METHODS)}; got {interleaving!r}"
        )
    rng = np.random.default_rng(seed)
    shoppers = sim.sample_shoppers(users, rng)
    cand = sim.candidates(shoppers, candidates, rng)
    attr = sim.attraction(shoppers, cand)
    logits = sim.attraction_logits(shoppers, cand)
    za, zb = rng.normal(size=cand.shape), rng.normal(size=cand.shape)
    rows = np.arange(users)[:, None]
    rho = float(ranker_correlation)
    if not 0.0 <= rho < 1.0:
        raise ValueError(f"ranker_correlation must be in [0, 1); got {rho}")
    # bisection on B's noise with its draws fixed (NDCG falls as the noise grows)
    scores_a, scores_b, sigma_b = _pair_scores(logits, attr, za, zb, k, ndcg_drop, rho)
    order_a = np.argsort(-scores_a, axis=1)[:, :k]
    order_b = np.argsort(-scores_b, axis=1)[:, :k]
    ideal = -np.sort(-attr, axis=1)[:, :k]
    ndcg_a = float(_ndcg(attr[rows, order_a], ideal).mean())
    ndcg_b = float(_ndcg(attr[rows, order_b], ideal).mean())

    lam = continuation_of(sim.config)
    exam = examination_of(sim.config, k)
    visits = shoppers.visits
    fv = visits.astype(np.float64)
    flat = np.repeat(np.arange(users), visits)  # one row per visit
    z_alpha = float(stats.norm.ppf(1 - alpha / 2))

    # --- A/B on clicks per user: per-user exact moments, and `replicates` click draws per user
    ab_mean, ab_var, ab_pool = [], [], []
    for order in (order_a, order_b):
        p = _slot_click_probs(attr[rows, order], exam, lam)
        vm, vv = _visit_moments(p, np.ones(k), lam)
        ab_mean.append(fv * vm)
        ab_var.append(fv * vv)
        ab_pool.append(
            np.stack(
                [
                    np.bincount(flat, weights=_draw_visits(p[flat], rng, lam).sum(1), minlength=users)
                    for _ in range(replicates)
                ],
                axis=1,
            )
        )

    # --- a pre-period: the same users, the same visits, all on the production ranker A (CUPED's
    # covariate); its exact moments are arm A's, its click draws are fresh
    pre_mean, pre_var = ab_mean[0], ab_var[0]
    p_pre = _slot_click_probs(attr[rows, order_a], exam, lam)
    pre_pool = np.stack(
        [
            np.bincount(flat, weights=_draw_visits(p_pre[flat], rng, lam).sum(1), minlength=users)
            for _ in range(replicates)
        ],
        axis=1,
    )

    # --- interleaving: every team draft, two credit rules, per-user exact moments and draws
    rules: tuple[str, ...] = ("ips", "shared_uncredited", "team_draft")
    if interleaving == "optimized":
        rules += ("optimized",)
    head = "optimized" if interleaving == "optimized" else "ips"
    served_exam = examination(np.arange(1, k + 1))  # the curve served credits assume (``interleave``)
    opt_bias = np.zeros(users)
    d_mean = {r: np.empty(users) for r in rules}
    d_var = {r: np.empty(users) for r in rules}
    d_pool = {r: np.empty((users, replicates)) for r in rules}
    shared_click_share = 0.0
    chunk = 2_000
    for start in range(0, users, chunk):
        stop = min(start + chunk, users)
        drafts = team_drafts(order_a[start:stop], order_b[start:stop], candidates)
        local = np.arange(stop - start)[:, None, None]
        p = _slot_click_probs(attr[start:stop][local, drafts["shown"]], exam, lam)  # (c, S, k)
        weights = {
            "team_draft": drafts["team"],
            "shared_uncredited": drafts["team"] * ~drafts["shared"],
            "ips": ips_credits(
                order_a[start:stop], order_b[start:stop], drafts["shown"], candidates, served_exam
            ),
        }
        shared_click_share += float((p * drafts["shared"]).sum() / p.sum()) * (stop - start)
        v = fv[start:stop]
        for r in ("ips", "shared_uncredited", "team_draft"):
            mu, s2 = _visit_moments(p, weights[r], lam)  # (c, S): per draft
            d_mean[r][start:stop] = v * mu.mean(1)
            d_var[r][start:stop] = v * (s2.mean(1) + mu.var(1))
        cflat = np.repeat(np.arange(stop - start), visits[start:stop])
        for rep in range(replicates):
            pick = rng.integers(0, p.shape[1], len(cflat))  # each visit its own team draft
            clicks = _draw_visits(p[cflat, pick], rng, lam)
            for r in ("ips", "shared_uncredited", "team_draft"):
                credit = (clicks * weights[r][cflat, pick]).sum(1)
                d_pool[r][start:stop, rep] = np.bincount(cflat, weights=credit, minlength=stop - start)
        if interleaving == "optimized":
            _optimized_moments(
                order_a,
                order_b,
                attr,
                exam,
                lam,
                visits,
                start,
                stop,
                candidates,
                rng,
                replicates,
                d_mean["optimized"],
                d_var["optimized"],
                d_pool["optimized"],
                opt_bias,
            )

    def ab_users_for(idx: np.ndarray | None = None, analysis: str = AB_ANALYSIS) -> float:
        """Users (both arms) an A/B test needs. ``clicks-per-user``: Welch z-test on each user's
        clicks. ``ctr-delta``: clicks per visit, a ratio metric, its variance by the delta method
        (Deng, Knoblich & Lu, KDD 2018): Var(R) = Var(C - R V) / (n E[V]^2) per arm, which is also
        regression adjustment on visits (CUPED with a covariate the ranker cannot move here)."""
        sel = slice(None) if idx is None else idx
        if analysis == "ctr-delta-cuped":
            vv = fv[sel]
            vbar = vv.mean()
            x_dev = pre_mean[sel] - float(pre_mean[sel].mean() / vbar) * vv  # linearised covariate
            var_x = float(pre_var[sel].mean() + x_dev.var()) / vbar**2
            m, var_y, cov = [], [], []
            for i in (0, 1):
                r_i = float(ab_mean[i][sel].mean() / vbar)
                y_dev = ab_mean[i][sel] - r_i * vv
                m.append(r_i)
                var_y.append(float(ab_var[i][sel].mean() + y_dev.var()) / vbar**2)
                # within a user the pre-period and test clicks are independent draws: only the
                # users' expected rates covary
                cov.append(float(np.mean((y_dev - y_dev.mean()) * (x_dev - x_dev.mean()))) / vbar**2)
            theta = (cov[0] + cov[1]) / (2 * var_x) if var_x > 0 else 0.0
            var = [var_y[i] - 2 * theta * cov[i] + theta**2 * var_x for i in (0, 1)]
        elif analysis == "ctr-delta":
            vv = fv[sel]
            r = [float(x[sel].mean() / vv.mean()) for x in ab_mean]
            var = [
                float((ab_var[i][sel].mean() + (ab_mean[i][sel] - r[i] * vv).var()) / vv.mean() ** 2)
                for i in (0, 1)
            ]
            m = r
        else:
            m = [float(x[sel].mean()) for x in ab_mean]
            var = [float(ab_var[i][sel].mean() + ab_mean[i][sel].var()) for i in (0, 1)]
        return 2 * float(np.ceil(users_for_power(m[0] - m[1], var[0] + var[1], alpha=alpha, power=power)))

    def inter_users_for(rule: str, idx: np.ndarray | None = None) -> float:
        sel = slice(None) if idx is None else idx
        dm = d_mean[rule][sel]
        effect = float(dm.mean())
        if effect <= 0:
            return float("inf")
        return float(
            np.ceil(
                users_for_power(effect, float(d_var[rule][sel].mean() + dm.var()), alpha=alpha, power=power)
            )
        )

    ab_users = int(ab_users_for())
    ab_users_by = {a: int(ab_users_for(analysis=a)) for a in AB_ANALYSES}
    inter_users = {r: inter_users_for(r) for r in rules}
    out: dict[str, Any] = {
        "click_model": sim.config.click_model,
        "click_model_source": sim.config.click_model_source,
        "click_model_reason": sim.config.click_model_reason,
        "click_examination": [round(float(x), 4) for x in exam],
        "click_continuation": lam,
        "users_simulated": users,
        "k": k,
        "ndcg_a": ndcg_a,
        "ndcg_b": ndcg_b,
        "ndcg_relative_difference": 1 - ndcg_b / ndcg_a,
        "ranker_correlation": rho,
        "ranker_b_noise": sigma_b,
        "rank_agreement": rank_agreement(scores_a, scores_b),
        "power": power,
        "alpha": alpha,
        "ab_clicks_per_user_a": float(ab_mean[0].mean()),
        "ab_clicks_per_user_b": float(ab_mean[1].mean()),
        "ab_variance_per_user_a": float(ab_var[0].mean() + ab_mean[0].var()),
        "ab_variance_per_user_b": float(ab_var[1].mean() + ab_mean[1].var()),
        "ab_users": ab_users,
        "ab_analysis": AB_ANALYSIS_TEXT[AB_ANALYSIS],
        "ab_users_clicks_per_user": ab_users_by["clicks-per-user"],
        "ab_users_ctr_delta": ab_users_by["ctr-delta"],
        "ab_users_ctr_delta_cuped": ab_users_by["ctr-delta-cuped"],
        "ratio_ctr_delta_without_cuped": ab_users_by["ctr-delta"] / inter_users[head],
        "ratio_clicks_per_user": ab_users_by["clicks-per-user"] / inter_users[head],
        "interleaving": interleaving,
        "interleaving_credit": CREDIT_TEXT[interleaving],
        "interleaving_credit_difference_per_user": float(d_mean[head].mean()),
        "interleaving_effect_se": float(d_mean[head].std() / np.sqrt(users)),
        "interleaving_variance_per_user": float(d_var[head].mean() + d_mean[head].var()),
        "interleaving_users": int(inter_users[head]),
        "ratio": ab_users / inter_users[head],
        "interleaving_team_draft_variance_per_user": float(
            d_var["team_draft"].mean() + d_mean["team_draft"].var()
        ),
        "interleaving_users_team_draft": int(inter_users["team_draft"]),
        "ratio_team_draft": ab_users / inter_users["team_draft"],
        "interleaving_users_team_draft_shared_uncredited": int(inter_users["shared_uncredited"]),
        "ratio_team_draft_shared_uncredited": ab_users / inter_users["shared_uncredited"],
        "interleaving_users_ips": int(inter_users["ips"]),
        "ratio_ips": ab_users / inter_users["ips"],
        "shared_pick_click_share": shared_click_share / users,
    }
    if interleaving == "optimized":
        out.update(
            optimized_biased_users=int((opt_bias > 0).sum()),
            optimized_max_random_click_bias=float(opt_bias.max()),
        )
    # the per-user winner rule (Radlinski et al. 2008: +1 if A got more credited clicks, -1 if B,
    # 0 for a tie), plain team-draft credit, its moments from the stored click draws
    wins = np.sign(d_pool["team_draft"]).ravel()
    winner_users = float(
        np.ceil(users_for_power(float(wins.mean()), float(wins.var()), alpha=alpha, power=power))
    )
    out.update(
        interleaving_winner_rule_mean=float(wins.mean()),
        interleaving_users_winner_rule=int(winner_users),
        ratio_winner_rule=ab_users / winner_users,
    )
    # 95% intervals over the simulated users (the moments are means over them)
    if bootstrap:
        ab_b, in_b = [], []
        for _ in range(bootstrap):
            idx = rng.integers(0, users, users)
            ab_b.append(ab_users_for(idx))
            in_b.append(inter_users_for(head, idx))
        ab_arr, in_arr = np.array(ab_b), np.array(in_b)
        out.update(
            bootstrap=bootstrap,
            ab_users_ci95=[float(x) for x in np.percentile(ab_arr, [2.5, 97.5])],
            interleaving_users_ci95=[float(x) for x in np.percentile(in_arr, [2.5, 97.5])],
            ratio_ci95=[float(x) for x in np.percentile(ab_arr / in_arr, [2.5, 97.5])],
        )
    if check_runs:
        # The stored draws (users x replicates) are shifted so their mean is the exact mean: with
        # 8 draws per user their own mean is off by ~0.8/sqrt(8 users) per click, a sizeable share
        # of a 1.5% effect. The check tests the variance and the normal approximation, not the mean.
        ab_pool = [pool - (pool.mean() - m.mean()) for pool, m in zip(ab_pool, ab_mean, strict=True)]
        d_pool = {r: d_pool[r] - (d_pool[r].mean() - d_mean[r].mean()) for r in rules}
        per_arm = ab_users // 2
        hits = 0
        for _ in range(check_runs):
            stat_se = []
            for arm_pool in ab_pool:
                pick = rng.integers(0, arm_pool.size, per_arm)
                c = arm_pool.ravel()[pick]
                if AB_ANALYSIS == "ctr-delta-cuped":  # per arm: (clicks, pre clicks, visits)
                    vis = fv[pick // arm_pool.shape[1]]
                    stat_se.append((c, pre_pool.ravel()[pick], vis))
                    continue
                if AB_ANALYSIS == "ctr-delta":  # ratio of sums, delta-method standard error
                    vis = fv[pick // arm_pool.shape[1]]
                    r = c.sum() / vis.sum()
                    stat_se.append((r, (c - r * vis).var(ddof=1) / vis.mean() ** 2 / per_arm))
                else:
                    stat_se.append((c.mean(), c.var(ddof=1) / per_arm))
            if AB_ANALYSIS == "ctr-delta-cuped":
                zstat = _cuped_ratio_z(stat_se)
            else:
                zstat = (stat_se[0][0] - stat_se[1][0]) / np.sqrt(stat_se[0][1] + stat_se[1][1])
            hits += bool(abs(zstat) > z_alpha)
        out.update(
            check_runs=check_runs,
            ab_simulated_power=hits / check_runs,
            ab_power_ci95=_wilson(hits, check_runs),
        )
        checks = [
            (head, "interleaving"),
            ("team_draft", "interleaving_team_draft"),
            ("shared_uncredited", "interleaving_team_draft_shared_uncredited"),
        ]
        if interleaving == "optimized":
            checks.append(("ips", "interleaving_ips"))
        for r, key in checks:
            n = int(inter_users[r])
            pool = d_pool[r].ravel()
            hits = 0
            for _ in range(check_runs):
                x = pool[rng.integers(0, pool.size, n)]
                hits += bool(abs(x.mean() / (x.std(ddof=1) / np.sqrt(n))) > z_alpha)
            out[f"{key}_simulated_power"] = hits / check_runs
            out[f"{key}_power_ci95"] = _wilson(hits, check_runs)
    out["method"] = (
        "users needed: two-sided z-test formula on exact per-user moments (the simulator's click "
        "probabilities, every team draft enumerated); 95% intervals by a bootstrap over the simulated "
        "users; checked by simulated experiments at those sizes (users resampled, clicks drawn), "
        "power with Wilson 95% intervals"
    )
    return out
