"""The re-ranking functions behind the diversity knob."""

from __future__ import annotations

import numpy as np

from shelfwise.merchandising.diversity import calibrated_order, intra_list_diversity, mmr_order

REL = np.linspace(1.0, 0.0, 12)
LABELS = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 2, 2, -1])


def test_zero_strength_keeps_the_order() -> None:
    assert mmr_order(REL, LABELS, strength=0.0, k=5).tolist() == [0, 1, 2, 3, 4]
    assert calibrated_order(REL, LABELS, np.array([1.0, 1.0, 1.0]), strength=0.0, k=5).tolist() == [
        0,
        1,
        2,
        3,
        4,
    ]


def test_calibrated_follows_the_target_shares() -> None:
    order = calibrated_order(REL, LABELS, np.array([0.5, 0.25, 0.25]), strength=0.9, k=4)
    assert sorted(np.bincount(LABELS[order], minlength=3).tolist()) == [1, 1, 2]
    assert np.bincount(LABELS[order], minlength=3)[0] == 2


def test_mmr_parents_spread_across_departments() -> None:
    labels = np.array([0, 1, 2, 3])  # four categories …
    parents = np.array([0, 0, 0, 1])  # … three in one department
    rel = np.array([1.0, 0.95, 0.9, 0.8])
    flat = mmr_order(rel, labels, strength=0.3, k=2)
    nested = mmr_order(rel, labels, strength=0.3, k=2, parents=parents)
    assert flat.tolist() == [0, 1] and nested.tolist() == [0, 3]


def test_intra_list_diversity() -> None:
    assert intra_list_diversity(np.array([0, 0, 1, 1])) == 1 - 2 / 6
    assert intra_list_diversity(np.array([-1, -1])) == 1.0  # unlabelled items differ from all
    assert intra_list_diversity(np.array([3])) == 0.0
