"""Click-model fitting picks the model that generated the clicks, on held-out sessions."""

import numpy as np
import pytest

from shelfwise.evaluation.click_models import (
    ClickLog,
    compare_click_models,
    fit_dependent,
    fit_position,
    generate_log,
    log_from_impressions,
    split_sessions,
)

ALPHA = np.random.default_rng(1).beta(1, 6, 200)
TRUE_GAMMA = 1.0 / np.log2(np.arange(2, 12))


@pytest.mark.parametrize("truth", ["position", "cascade", "dependent"])
def test_held_out_likelihood_picks_the_generating_model(truth: str) -> None:
    log = generate_log(truth, sessions=6_000, alpha=ALPHA, lam=0.6, seed=2)
    train, test = split_sessions(log, seed=3)
    result = compare_click_models(train, test)
    assert result["best"] == truth, result["models"]
    if truth != "cascade":  # the DCM nests the cascade (lambda = 0), so there it can only tie
        assert result["margin"] > 3 * result["margin_se"]


def test_position_model_recovers_the_examination_curve() -> None:
    log = generate_log("position", sessions=20_000, alpha=ALPHA, seed=4)
    gamma = fit_position(log).gamma
    assert gamma is not None
    np.testing.assert_allclose(gamma[:6] / gamma[0], TRUE_GAMMA[:6], atol=0.06)


def test_dependent_model_recovers_continuation() -> None:
    log = generate_log("dependent", sessions=20_000, alpha=ALPHA, lam=0.3, seed=5)
    lam = fit_dependent(log).lam
    assert lam is not None
    # the last rank has nothing below it, so its lambda is not identified
    np.testing.assert_allclose(lam[:-1], 0.3, atol=0.08)


def test_cascade_rules_out_a_second_click() -> None:
    log = generate_log("position", sessions=3_000, alpha=ALPHA, seed=6)
    result = compare_click_models(*split_sessions(log, seed=0))
    multi = int((split_sessions(log, seed=0)[1].clicks.sum(1) > 1).sum())
    assert multi > 0
    assert result["models"]["cascade"]["impossible_sessions"] == multi
    assert result["models"]["position"]["impossible_sessions"] == 0


class _Imp:
    def __init__(self, answer_id: str, items: list[str]) -> None:
        self.answer_id, self.items = answer_id, items


def test_log_from_impressions_maps_cited_positions_and_drops_short_lists() -> None:
    imps = [_Imp("a", ["x", "y", "z"]), _Imp("b", ["y", "x"]), _Imp("c", ["z", "x", "w", "v"])]
    log, ids = log_from_impressions(imps, [("a", 2), ("c", 1), ("c", 9), ("b", 1)], k=3)
    assert ids == ["x", "y", "z", "w"]
    np.testing.assert_array_equal(log.items, [[0, 1, 2], [2, 0, 3]])
    np.testing.assert_array_equal(log.clicks, [[False, True, False], [True, False, False]])
    assert isinstance(log, ClickLog)
