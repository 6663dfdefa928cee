"""The shopper simulator, fitted on a slice of the real Online Retail file: its clicks follow the
probabilities it reports, position matters, and the scenarios recover known truths."""

from __future__ import annotations

import numpy as np
import pytest

from shelfwise.evaluation.simulated_experiments import (
    interleaving_vs_ab_scenario,
    ope_scenario,
    srm_scenario,
)
from shelfwise.evaluation.simulator import ShopperSimulator, SimulatorConfig, examination
from shelfwise.features.dataset import Dataset
from tests.conftest import ONLINE_RETAIL


@pytest.fixture(scope="module")
def sim() -> ShopperSimulator:
    ds = Dataset.from_file(ONLINE_RETAIL, "online-retail", limit=30_000)
    return ShopperSimulator.fit(ds, SimulatorConfig(factors=8))


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
    out = interleaving_vs_ab_scenario(sim, users=1_500, drafts=4, check_runs=0, seed=0)
    assert out["ndcg_relative_difference"] == pytest.approx(0.02, abs=1e-3)
    assert out["ab_clicks_per_user_a"] > out["ab_clicks_per_user_b"]
    assert out["interleaving_credit_difference_per_user"] > 0
    assert out["ratio"] == pytest.approx(out["ab_users"] / out["interleaving_users"])
    assert out["ratio_winner_rule"] == pytest.approx(out["ab_users"] / out["interleaving_users_winner_rule"])


def test_cascade_clicks_at_most_once_per_visit_at_the_first_attractive_slot(sim: ShopperSimulator) -> None:
    from dataclasses import replace

    cascade = replace(sim, config=sim.config.model_copy(update={"click_model": "cascade"}))
    rng = np.random.default_rng(2)
    shoppers = cascade.sample_shoppers(20_000, rng)
    lists = cascade.candidates(shoppers, 10, rng)
    out = cascade.simulate(shoppers, lists, rng)
    assert out["clicks"].sum(1).max() == 1
    attraction = cascade.attraction(shoppers, lists)
    assert out["p_click"].sum(1) == pytest.approx(1 - np.prod(1 - attraction, axis=1))
    assert out["clicks"].mean(0) == pytest.approx(out["p_click"].mean(0), abs=0.005)
    # a slot is clicked less when the slots above it are attractive: examination is earned, not fixed
    assert (out["p_click"] <= attraction + 1e-12).all()
