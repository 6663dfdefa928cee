"""The canary guardrail: a canary whose conversion drops is rolled back within one evaluation
window of the drop (simulator fitted on the real Online Retail slice); a healthy one is kept."""

from __future__ import annotations

import numpy as np
import pytest

from shelfwise.evaluation.simulator import ShopperSimulator
from shelfwise.features.dataset import Dataset
from shelfwise.registry.canary_simulation import canary_rollback_scenario, timeline_markdown
from shelfwise.registry.guardrail import CanaryConfig, CanaryGuardrail, WindowCounts
from tests.conftest import ONLINE_RETAIL


@pytest.fixture(scope="module")
def sim() -> ShopperSimulator:
    return ShopperSimulator.fit(Dataset.from_file(ONLINE_RETAIL, "online-retail", limit=30_000), seed=0)


def test_a_dropping_canary_is_rolled_back_within_one_window(sim: ShopperSimulator) -> None:
    out = canary_rollback_scenario(sim, windows=6, sessions_per_window=20_000, drop_at_window=3, seed=0)
    broken = out["broken_canary"]
    assert broken["decision"] == "rollback" and broken["rolled_back_at_window"] == 3
    assert out["rolled_back_within_one_window"] and out["healthy_canary_kept"]
    drop = broken["timeline"][-1]["truth"]
    assert drop["canary_conversion_true"] < 0.9 * drop["control_conversion_true"]
    assert [r["decision"] for r in broken["timeline"][:2]] == ["continue", "continue"]
    text = timeline_markdown(out)
    assert "| 3 |" in text and "rollback" in text


def test_no_rollback_on_noise_and_nothing_changes_after_a_rollback() -> None:
    rng = np.random.default_rng(3)
    false_rollbacks = 0
    for _ in range(200):
        guard = CanaryGuardrail(CanaryConfig(max_windows=10))
        for _ in range(10):
            c = rng.binomial(8_000, 0.06)
            k = rng.binomial(2_000, 0.06)
            if guard.observe(WindowCounts(8_000, int(c), 2_000, int(k)))["decision"] != "continue":
                break
        false_rollbacks += guard.decision == "rollback"
    assert false_rollbacks <= 200 * 0.05  # alpha bounds it however many windows are read
    guard = CanaryGuardrail(CanaryConfig())
    assert guard.observe(WindowCounts(8_000, 480, 2_000, 40))["decision"] == "rollback"
    assert guard.observe(WindowCounts(8_000, 480, 2_000, 200))["decision"] == "rollback"
    assert len(guard.timeline) == 1
