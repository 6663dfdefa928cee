"""The shopper simulator, fitted on a slice of the real Online Retail file: its clicks follow the
probabilities it reports, position matters, and the scenarios recover known truths."""

from __future__ import annotations

import numpy as np
import pytest

from shelfwise.evaluation.experiments import interleave, team_draft
from shelfwise.evaluation.simulated_experiments import (
    correlation_for_agreement,
    interleaving_vs_ab_scenario,
    ips_credits,
    model_agreement,
    ope_scenario,
    optimized_interleaving,
    rank_agreement,
    srm_scenario,
    team_drafts,
)
from shelfwise.evaluation.simulator import ShopperSimulator, SimulatorConfig, examination
from shelfwise.features.dataset import Dataset
from tests.conftest import ONLINE_RETAIL


@pytest.fixture(scope="module")
def retail() -> Dataset:
    return Dataset.from_file(ONLINE_RETAIL, "online-retail", limit=30_000)


@pytest.fixture(scope="module")
def sim(retail: Dataset) -> ShopperSimulator:
    return ShopperSimulator.fit(retail, SimulatorConfig(factors=8))


def test_fit_reads_real_behaviour_and_hits_the_target_click_rate(sim: ShopperSimulator) -> None:
    assert sim.meta["buyers"] > 100 and sim.meta["items"] > 500
    assert sim.meta["mean_visits"] >= 1
    rng = np.random.default_rng(0)
    shoppers = sim.sample_shoppers(2_000, rng)
    top = sim.attraction(shoppers, sim.candidates(shoppers, 10, rng))
    assert top.mean() == pytest.approx(sim.config.target_ctr, rel=0.15)


def test_simulated_clicks_follow_the_reported_probabilities_and_position_bias(sim: ShopperSimulator) -> None:
    rng = np.random.default_rng(1)
    shoppers = sim.sample_shoppers(20_000, rng)
    lists = sim.candidates(shoppers, 10, rng)
    out = sim.simulate(shoppers, lists, rng)
    observed = out["clicks"].mean(0)
    expected = out["p_click"].mean(0)
    se = np.sqrt(expected * (1 - expected) / len(shoppers))
    assert np.all(np.abs(observed - expected) < 4.5 * se)
    # the same items shown one slot lower are clicked less, by the examination ratio
    reversed_lists = lists[:, ::-1]
    p_rev = sim.click_probabilities(shoppers, reversed_lists)
    assert p_rev[:, -1].mean() == pytest.approx(
        out["p_click"][:, 0].mean() * examination(np.array([10]))[0], rel=1e-9
    )
    assert out["purchases"].sum() < out["clicks"].sum()


def test_fit_refuses_too_little_data() -> None:
    ds = Dataset.from_events(users=["a", "b"], items=["x", "y"], ts=[1, 2])
    with pytest.raises(ValueError, match="too little data"):
        ShopperSimulator.fit(ds)


def test_srm_scenario_flags_the_injected_split_only() -> None:
    out = srm_scenario(users=20_000, seed=3)
    assert out["injected"]["srm_flagged"] is True
    assert out["fair"]["srm_flagged"] is False


def test_off_policy_estimates_land_near_the_simulators_truth(sim: ShopperSimulator) -> None:
    out = ope_scenario(sim, logs=20_000, seed=0)
    assert 0 < out["true_value"] < 1
    assert out["dr_error"] < 0.10 and out["snips_error"] < 0.15
    # the candidate policy differs from the logging one, so the estimate is not a copy of the logs
    assert out["true_value"] != pytest.approx(out["logging_policy_click_rate"], rel=0.02)


def test_interleaving_vs_ab_uses_a_known_two_percent_ndcg_gap(sim: ShopperSimulator) -> None:
    out = interleaving_vs_ab_scenario(sim, users=1_500, replicates=2, bootstrap=20, check_runs=0, seed=0)
    assert out["ndcg_relative_difference"] == pytest.approx(0.02, abs=1e-3)
    assert out["ab_clicks_per_user_a"] > out["ab_clicks_per_user_b"]
    assert out["interleaving_credit_difference_per_user"] > 0
    assert out["ratio"] == pytest.approx(out["ab_users"] / out["interleaving_users"])
    assert out["ratio_winner_rule"] == pytest.approx(out["ab_users"] / out["interleaving_users_winner_rule"])
    # leaving shared picks uncredited keeps the expected credit and only removes variance; the
    # served inverse-propensity credit needs fewer users still
    assert out["interleaving_users_team_draft_shared_uncredited"] <= out["interleaving_users_team_draft"]
    assert out["interleaving_users"] == out["interleaving_users_ips"]
    assert out["interleaving_users"] < out["interleaving_users_team_draft_shared_uncredited"]
    lo, hi = out["ratio_ci95"]
    assert lo < hi


def test_rankers_sharing_errors_agree_more_and_interleaving_needs_fewer_users(sim: ShopperSimulator) -> None:
    """B keeps its 2% NDCG gap whatever share of A's errors it has; the more it shares, the more
    alike the two order the candidates and the fewer users interleaving needs (A/B does not care)."""
    kw = {"users": 2_000, "replicates": 2, "bootstrap": 0, "check_runs": 0, "seed": 0}
    apart = interleaving_vs_ab_scenario(sim, **kw)
    alike = interleaving_vs_ab_scenario(sim, ranker_correlation=0.8, **kw)
    assert apart["ranker_correlation"] == 0.0 and alike["ranker_correlation"] == 0.8
    for out in (apart, alike):
        assert out["ndcg_relative_difference"] == pytest.approx(0.02, abs=1e-3)
    assert alike["rank_agreement"] > apart["rank_agreement"] + 0.1
    assert alike["interleaving_users"] < 0.7 * apart["interleaving_users"]
    assert alike["ab_users"] == pytest.approx(apart["ab_users"], rel=0.35)
    with pytest.raises(ValueError, match="ranker_correlation"):
        interleaving_vs_ab_scenario(sim, users=400, check_runs=0, ranker_correlation=1.0)


def test_rank_agreement_and_the_share_of_errors_that_matches_it(sim: ShopperSimulator) -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(50, 30))
    assert rank_agreement(a, a) == pytest.approx(1.0)
    assert rank_agreement(a, -a) == pytest.approx(-1.0)
    assert abs(rank_agreement(a, rng.normal(size=a.shape))) < 0.1
    low, high = (correlation_for_agreement(sim, t, users=800) for t in (0.65, 0.85))
    assert 0.0 < low < high < 0.99
    assert correlation_for_agreement(sim, -0.5, users=800) == 0.0  # less alike than independent errors


def test_model_agreement_reads_real_models_on_the_simulators_shoppers(
    sim: ShopperSimulator, retail: Dataset
) -> None:
    """Models trained on the data the simulator was fitted on score its shoppers' candidates (the
    simulator keeps the shop's ids of its rows and columns); a model agrees with itself."""
    from shelfwise.recommend import make_model

    ds = retail
    als = make_model("als", factors=16, iterations=5).fit(ds)
    same = model_agreement(sim, als, als, users=600)
    assert same["shoppers"] > 500 and same["rank_agreement"] > 0.99
    other = model_agreement(sim, als, make_model("itemknn").fit(ds), users=600)
    assert 0.0 < other["rank_agreement"] < 0.95


def test_ab_side_uses_the_delta_method_on_clicks_per_visit_and_its_power_holds(sim: ShopperSimulator) -> None:
    out = interleaving_vs_ab_scenario(sim, users=4_000, replicates=4, bootstrap=0, check_runs=300, seed=2)
    # the headline A/B figure is the strongest analysis (delta method + CUPED on the pre-period),
    # and all three are reported
    assert out["ab_users"] == out["ab_users_ctr_delta_cuped"]
    assert out["ab_users"] <= min(out["ab_users_ctr_delta"], out["ab_users_clicks_per_user"])
    assert out["ratio_ctr_delta_without_cuped"] == pytest.approx(
        out["ab_users_ctr_delta"] / out["interleaving_users"]
    )
    # visits per user vary, so dividing them out must remove variance: a real gain, not a tie
    assert out["ab_users_ctr_delta"] < 0.9 * out["ab_users_clicks_per_user"]
    assert out["ratio_clicks_per_user"] == pytest.approx(
        out["ab_users_clicks_per_user"] / out["interleaving_users"]
    )
    # simulated experiments of that size, analysed by the delta method with CUPED, detect the gap
    # ~80% of the time (the CUPED variance formula is right, not optimistic)
    lo, hi = out["ab_power_ci95"]
    assert lo < 0.8 + 0.06 and hi > 0.8 - 0.06


def test_team_drafts_lists_every_draw_of_the_team_draft_rule() -> None:
    rng = np.random.default_rng(5)
    n, m, k = 40, 14, 6
    order_a = np.stack([rng.permutation(m)[:k] for _ in range(n)])
    order_b = np.stack([rng.permutation(m)[:k] for _ in range(n)])
    order_b[:5] = order_a[:5]  # identical rankers: every pick is shared
    out = team_drafts(order_a, order_b, m)
    assert out["shown"].shape == (n, 2 ** (k // 2), k)
    assert out["shared"][:5, :, ::2].all()
    for u in range(n):
        pairs = zip(out["shown"][u].tolist(), out["team"][u].tolist(), strict=True)
        enumerated = {(tuple(s), tuple(t)) for s, t in pairs}
        for _ in range(10):
            shown, teams = team_draft(order_a[u].tolist(), order_b[u].tolist(), k, rng)
            assert (tuple(shown), tuple(1.0 if t == 0 else -1.0 for t in teams)) in enumerated
    # a shared pick is always a round's first, and both rankers' next item
    assert not out["shared"][:, :, 1::2].any()


def test_shared_uncredited_credit_is_antisymmetric_and_keeps_the_team_draft_mean(
    sim: ShopperSimulator,
) -> None:
    rng = np.random.default_rng(2)
    shoppers = sim.sample_shoppers(300, rng)
    cand = sim.candidates(shoppers, 20, rng)
    attr = sim.attraction(shoppers, cand)
    noisy = np.log(attr)[None] + rng.normal(size=(2, *attr.shape))
    order_a, order_b = (np.argsort(-x, axis=1)[:, :8] for x in noisy)
    p_of = examination(np.arange(1, 9))
    means = {}
    for name, (x, y) in {"ab": (order_a, order_b), "ba": (order_b, order_a)}.items():
        d = team_drafts(x, y, 20)
        p = p_of * attr[np.arange(300)[:, None, None], d["shown"]]
        means[name] = (
            float((p * d["team"]).sum(-1).mean()),
            float((p * d["team"] * ~d["shared"]).sum(-1).mean()),
        )
    # swapping the rankers flips the sign exactly (every coin sequence has its mirror)
    assert means["ab"][0] == pytest.approx(-means["ba"][0], abs=1e-12)
    assert means["ab"][1] == pytest.approx(-means["ba"][1], abs=1e-12)
    # a shared pick's credit has mean zero, so dropping it leaves the expected credit as it was
    assert means["ab"][1] == pytest.approx(means["ab"][0], abs=1e-12)
    assert means["ab"][0] != 0.0


def test_ips_credit_is_the_served_one_and_unbiased_for_the_dcg_difference() -> None:
    """The scenario's vectorised inverse-propensity credit is what ``interleave`` serves, and under
    the position model a click's expected credit over every draft is the two rankings' DCG
    difference over the items team draft can show (all of them when both top ks fit in k slots)."""
    rng = np.random.default_rng(7)
    n, m, k = 30, 16, 6
    order_a = np.stack([rng.permutation(m)[:k] for _ in range(n)])
    order_b = np.stack([rng.permutation(m)[:k] for _ in range(n)])
    order_b[:3] = order_a[:3]  # identical rankings: no credit at all
    exam = examination(np.arange(1, k + 1))
    d = team_drafts(order_a, order_b, m)
    credit = ips_credits(order_a, order_b, d["shown"], m, exam)
    assert np.all(credit[:3] == 0.0)
    attr = rng.uniform(0.05, 0.6, (n, m))
    rows = np.arange(n)[:, None, None]
    expected = (exam * attr[rows, d["shown"]] * credit).sum(-1).mean(-1)
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    gap = np.zeros((n, m))
    gap[np.arange(n)[:, None], order_a] += disc
    gap[np.arange(n)[:, None], order_b] -= disc
    showable = np.zeros((n, m), bool)
    showable[rows, d["shown"]] = True
    assert expected == pytest.approx((gap * attr * showable).sum(1), abs=1e-9)
    assert np.abs(expected[3:]).max() > 0.01
    for u in range(3, n):  # the served credits of a drawn list are the enumerated draft's
        served = interleave(order_a[u].tolist(), order_b[u].tolist(), k, rng)
        s = next(i for i in range(d["shown"].shape[1]) if d["shown"][u, i].tolist() == served.items)
        assert served.ips == pytest.approx(credit[u, s].tolist(), abs=1e-5)


def _is_allowed(shown: list[int], a: list[int], b: list[int]) -> bool:
    """Every prefix of ``shown`` is the union of a prefix of ``a`` and a prefix of ``b``."""
    unions = {frozenset(a[:i]) | frozenset(b[:j]) for i in range(len(a) + 1) for j in range(len(b) + 1)}
    return len(set(shown)) == len(shown) and all(
        frozenset(shown[:j]) in unions for j in range(1, len(shown) + 1)
    )


@pytest.mark.parametrize("k", [6, 10])
def test_optimized_interleaving_is_unbiased_under_random_clicks_and_shows_only_allowed_lists(k: int) -> None:
    rng = np.random.default_rng(11)
    n, m = (40 if k == 6 else 6), 3 * k
    base = rng.normal(size=(n, m))
    order_a = np.argsort(-(base + rng.normal(size=(n, m))), axis=1)[:, :k]
    order_b = np.argsort(-(base + 2 * rng.normal(size=(n, m))), axis=1)[:, :k]
    order_b[0] = order_a[0]  # identical rankers
    order_b[1] = np.setdiff1d(np.arange(m), order_a[1])[:k]  # disjoint rankers
    out = optimized_interleaving(order_a, order_b, m)
    prob, credit, shown = out["prob"], out["credit"], out["shown"]
    assert np.all(prob >= 0)
    assert np.allclose(prob.sum(1), 1.0, atol=1e-9)
    # a shopper clicking at random among the top j: expected credit zero for every j
    # (the linear credit admits no unbiased distribution for a few pairs: those are flagged)
    prefix = np.cumsum(credit, axis=-1)
    feasible = ~out["infeasible"]
    assert feasible.mean() > 0.9 and feasible[:2].all()
    assert np.abs((prob[feasible, :, None] * prefix[feasible]).sum(1)).max() < 1e-9
    # the credit is the linear rank difference, an absent item ranked k+1
    for u in range(n):
        ra = {int(x): i + 1 for i, x in enumerate(order_a[u])}
        rb = {int(x): i + 1 for i, x in enumerate(order_b[u])}
        for li in np.flatnonzero(prob[u] > 0):
            lst = shown[u, li].tolist()
            assert _is_allowed(lst, order_a[u].tolist(), order_b[u].tolist())
            expected = [rb.get(x, k + 1) - ra.get(x, k + 1) for x in lst]
            assert credit[u, li].tolist() == pytest.approx(expected)
    # identical rankers: every click credits zero
    assert np.all(credit[0] == 0)
    # sampling a list by its probability gives an allowed list
    for u in range(n):
        li = rng.choice(prob.shape[1], p=prob[u] / prob[u].sum())
        assert _is_allowed(shown[u, li].tolist(), order_a[u].tolist(), order_b[u].tolist())


def test_interleaving_vs_ab_runs_optimized_interleaving_and_refuses_unknown_methods(
    sim: ShopperSimulator,
) -> None:
    out = interleaving_vs_ab_scenario(
        sim, users=400, replicates=2, bootstrap=10, check_runs=20, seed=0, interleaving="optimized"
    )
    assert out["interleaving"] == "optimized"
    assert out["ratio"] == pytest.approx(out["ab_users"] / out["interleaving_users"])
    assert out["interleaving_users_team_draft_shared_uncredited"] > 0
    assert 0 <= out["interleaving_simulated_power"] <= 1
    with pytest.raises(ValueError, match="interleaving must be one of"):
        interleaving_vs_ab_scenario(sim, users=400, check_runs=0, interleaving="balanced")


@pytest.mark.parametrize("lam", [0.0, 0.4, 1.0])
def test_click_chain_moments_match_drawn_clicks(lam: float) -> None:
    from shelfwise.evaluation.simulated_experiments import _draw_visits, _slot_click_probs, _visit_moments

    rng = np.random.default_rng(7)
    attr = rng.uniform(0.05, 0.6, (3, 8))
    weight = rng.choice([-1.0, 0.0, 1.0, 2.5], (3, 8))
    p = _slot_click_probs(attr, examination(np.arange(1, 9)), lam)
    mean, var = _visit_moments(p, weight, lam)
    draws = _draw_visits(np.repeat(p[:, None, :], 200_000, axis=1), rng, lam)
    credit = (draws * weight[:, None, :]).sum(-1)
    assert np.allclose(draws.mean(1), p, atol=4e-3)  # the drawn clicks have the stated marginals
    assert np.allclose(credit.mean(1), mean, atol=0.01)
    assert np.allclose(credit.var(1), var, rtol=0.02)
    if lam == 0.0:
        assert draws.sum(-1).max() == 1  # at most one click a visit
    if lam < 1.0:  # a click makes later clicks rarer than the position model would have them
        assert (p < examination(np.arange(1, 9)) * attr + 1e-12).all()
        assert (p[:, 1:] < examination(np.arange(2, 9)) * attr[:, 1:]).all()
