"""The exploration slot: its propensities are the probabilities of what it shows."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from shelfwise.recommend.exploration import epsilon_greedy_slot, thompson_slot

RANKED = ["85123A", "71053", "84406B", "84029G", "84029E", "22752"]


def test_epsilon_greedy_propensities_match_the_frequencies() -> None:
    rng = np.random.default_rng(0)
    runs = [epsilon_greedy_slot(RANKED, slot=1, epsilon=0.3, pool=4, rng=rng) for _ in range(20_000)]
    shown = Counter(r.items[1] for r in runs)
    for r in runs[:50]:
        assert sorted(r.items) == sorted(RANKED) and r.items[0] == RANKED[0]
        assert [p for i, p in enumerate(r.propensities) if i != 1] == [1.0] * 5
        assert r.propensities[1] == pytest.approx(shown[r.items[1]] / len(runs), abs=0.01)
    assert set(shown) == set(RANKED[1:5])


def test_thompson_prefers_items_that_were_clicked_and_logs_its_propensity() -> None:
    rng = np.random.default_rng(1)
    stats = {"71053": (60.0, 100.0), "84406B": (5.0, 100.0), "84029G": (0.0, 0.0)}
    runs = [thompson_slot(RANKED, stats, slot=1, pool=3, rng=rng, draws=4_000) for _ in range(3_000)]
    shown = Counter(r.items[1] for r in runs)
    assert shown["71053"] > shown["84029G"] > shown["84406B"]
    for item in shown:
        logged = np.mean([r.propensities[1] for r in runs if r.items[1] == item])
        assert logged == pytest.approx(shown[item] / len(runs), abs=0.03), item
    with pytest.raises(ValueError, match="clicks <= impressions"):
        thompson_slot(RANKED, {"71053": (5.0, 1.0)}, slot=1, pool=3, rng=rng)
    with pytest.raises(ValueError, match="outside a list"):
        epsilon_greedy_slot(RANKED, slot=9, epsilon=0.1, pool=3, rng=rng)
