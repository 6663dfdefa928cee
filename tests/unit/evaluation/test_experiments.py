"""Experiment statistics against known answers: simulated truth, many seeds."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from scipy import stats

from shelfwise.evaluation.experiments import (
    MixtureSPRT,
    assign,
    cuped,
    interleave,
    interleaving_credit,
    interleaving_result,
    interleaving_test,
    relative_lift_ci,
    shown_propensities,
    srm_test,
    team_draft,
    users_for_power,
)

ARMS = ("control", "treatment")


def test_assignment_is_deterministic_salted_and_follows_weights() -> None:
    users = [f"u{i}" for i in range(20_000)]
    first = [assign(u, "exp", "s1", ARMS) for u in users]
    assert first == [assign(u, "exp", "s1", ARMS) for u in users]
    resalted = [assign(u, "exp", "s2", ARMS) for u in users]
    agree = np.mean([a == b for a, b in zip(first, resalted, strict=True)])
    assert 0.47 < agree < 0.53  # a new salt reshuffles: about half keep their arm by chance
    counts = Counter(assign(u, "exp", "s1", ARMS, [0.9, 0.1]) for u in users)
    assert counts["treatment"] / len(users) == pytest.approx(0.1, abs=0.01)
    assert srm_test([Counter(first)[a] for a in ARMS], [0.5, 0.5])["flagged"] is False


def test_assignment_rejects_bad_weights() -> None:
    with pytest.raises(ValueError, match="weights"):
        assign("u", "e", "s", ARMS, [1.0, -1.0])
    with pytest.raises(ValueError, match="weights"):
        assign("u", "e", "s", ARMS, [1.0])


def test_srm_flags_a_52_48_split_at_20k_and_not_a_fair_one() -> None:
    assert srm_test([10_400, 9_600], [0.5, 0.5])["flagged"] is True
    assert srm_test([10_030, 9_970], [0.5, 0.5])["flagged"] is False
    rng = np.random.default_rng(0)
    # fair splits over many seeds: false positives near alpha; injected 52/48: always caught
    fair = rng.binomial(20_000, 0.5, size=10_000)
    fp = np.mean([srm_test([c, 20_000 - c], [0.5, 0.5], alpha=0.01)["flagged"] for c in fair])
    assert 0.005 < fp < 0.015
    # a true 52/48 at 20k users: z ~ 5.7 against a threshold of 3.3, so ~99% of draws are caught
    skew = rng.binomial(20_000, 0.52, size=1_000)
    caught = np.mean([srm_test([c, 20_000 - c], [0.5, 0.5])["flagged"] for c in skew])
    assert caught > 0.97


def _ratio_arm(rng: np.random.Generator, n: int, rate: float) -> tuple[np.ndarray, np.ndarray]:
    sessions = rng.poisson(3.0, n) + 1
    propensity = rng.beta(2, 8, n) * rate / 0.2  # users differ: clicks within a user correlate
    clicks = rng.binomial(sessions, np.clip(propensity, 0, 1))
    return clicks.astype(float), sessions.astype(float)


def test_delta_method_interval_covers_the_true_lift_about_95_percent() -> None:
    rng = np.random.default_rng(1)
    true_lift = 0.05
    covered = 0
    runs = 400
    for _ in range(runs):
        c = _ratio_arm(rng, 2_000, 0.20)
        t = _ratio_arm(rng, 2_000, 0.20 * (1 + true_lift))
        ci = relative_lift_ci(c[0], c[1], t[0], t[1])
        covered += ci["low"] <= true_lift <= ci["high"]
    assert 0.92 <= covered / runs <= 0.98


def test_cuped_reduces_variance_when_the_covariate_correlates_and_keeps_the_mean() -> None:
    rng = np.random.default_rng(2)
    pre = rng.gamma(2.0, 5.0, 10_000)
    y = 0.8 * pre + rng.normal(0, 3.0, pre.size)
    adjusted, theta = cuped(y, pre)
    assert theta == pytest.approx(0.8, abs=0.05)
    assert adjusted.mean() == pytest.approx(y.mean())
    assert adjusted.var() < 0.3 * y.var()
    unrelated, theta0 = cuped(y, rng.normal(size=pre.size))
    assert abs(theta0) < 0.3 and unrelated.var() == pytest.approx(y.var(), rel=0.02)


def test_mixture_sprt_is_safe_under_peeking_where_a_naive_test_is_not() -> None:
    rng = np.random.default_rng(3)
    runs, looks, per_look = 300, 20, 100
    naive_fp = sprt_fp = 0
    for _ in range(runs):
        c = rng.normal(0, 1, looks * per_look)
        t = rng.normal(0, 1, looks * per_look)
        test = MixtureSPRT(tau=0.1)
        naive = sprt = False
        for look in range(1, looks + 1):
            n = look * per_look
            naive |= stats.ttest_ind(t[:n], c[:n]).pvalue < 0.05
            sprt |= test.update(c[:n], t[:n])["reject"]
        naive_fp += naive
        sprt_fp += sprt
    assert sprt_fp / runs <= 0.05
    assert naive_fp / runs > 0.15  # peeking twenty times at a fixed-horizon test inflates it
    # and it does find a real effect
    test = MixtureSPRT(tau=0.1)
    c, t = rng.normal(0, 1, 4_000), rng.normal(0.15, 1, 4_000)
    assert test.update(c, t)["reject"] is True


def test_team_draft_takes_turns_fairly_and_credits_clicks() -> None:
    rng = np.random.default_rng(4)
    a, b = list("abcdefgh"), list("bdachgfe")
    shown, teams = team_draft(a, b, 6, rng)
    assert len(set(shown)) == 6 and abs(teams.count(0) - teams.count(1)) <= 1
    for item, team in zip(shown, teams, strict=True):
        ranking = a if team == 0 else b
        before = ranking[: ranking.index(item)]
        assert all(x in shown[: shown.index(item)] for x in before)  # each pick is the team's best left
    credit = interleaving_credit([0, 1, 0, 1], [True, False, True, True])
    assert credit == {"a": 2, "b": 1, "winner": "a"}
    assert interleaving_credit([0, 1], [False, False])["winner"] == "tie"


def test_interleaving_prefers_the_ranker_that_puts_clicked_items_first() -> None:
    rng = np.random.default_rng(5)
    good, bad = list(range(10)), list(range(9, -1, -1))
    wins = Counter()
    for _ in range(400):
        shown, teams = team_draft(good, bad, 5, rng)
        clicked = [rng.random() < (0.5 if item < 3 else 0.02) for item in shown]
        wins[interleaving_credit(teams, clicked)["winner"]] += 1
    assert wins["a"] > 3 * wins["b"]
    assert interleaving_test(wins["a"], wins["b"])["p"] < 1e-6


def test_interleave_credits_shared_picks_to_nobody_and_alike_items_by_propensity() -> None:
    rng = np.random.default_rng(6)
    same = interleave(list("abcdef"), list("abcdef"), 6, rng)
    assert same.items == list("abcdef") and same.ips == [0.0] * 6
    assert same.team[0::2] == [0, 0, 0]  # each round's first pick is both rankings' next item
    mixed = interleave(list("abcdef"), list("fedcba"), 6, rng)
    assert sorted(mixed.items) == list("abcdef")
    for item, ips in zip(mixed.items, mixed.ips or [], strict=True):
        ra, rb = "abcdef".index(item), "fedcba".index(item)
        assert (ips > 0) == (ra < rb) and (ips < 0) == (rb < ra)  # the ranking placing it higher
    # exact propensities for long lists too: q sums to the examination of the slots filled
    exam = [1.0] * 20
    q = shown_propensities(list(range(30)), list(range(30, 0, -1)), 20, exam)
    assert (
        sum(q.values()) == pytest.approx(20.0)
        and len(interleave(list(range(30)), list(range(30, 0, -1)), 20, rng).ips) == 20
    )
    assert interleave(list("ab"), list("ba"), 5, rng).items in (["a", "b"], ["b", "a"])


def test_interleaving_result_tests_the_per_shopper_credit_and_keeps_the_running_minimum() -> None:
    rng = np.random.default_rng(8)
    ahead = interleaving_result(rng.normal(0.2, 1.0, 2_000), tau=0.2)
    assert ahead["mean"] > 0 and ahead["low"] > 0 and ahead["p"] < 1e-6 and ahead["sequential_reject"]
    null = interleaving_result(rng.normal(0.0, 1.0, 2_000), tau=0.2, p_min=0.3)
    assert null["low"] < 0 < null["high"] and null["sequential_p"] <= 0.3
    assert interleaving_result(np.array([1.0]), tau=0.1)["p"] == 1.0


def test_users_for_power_matches_the_textbook_formula() -> None:
    # 80% power, alpha 0.05 two-sided: (1.96 + 0.84)^2 = 7.85 per unit of variance/effect^2
    assert users_for_power(0.1, 1.0) == pytest.approx(784.9, rel=0.01)
