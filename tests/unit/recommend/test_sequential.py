"""SASRec and the two-tower model on real slices: order matters to SASRec (and not to the
two-tower), save/load gives the very same scores, three session events personalise, early
stopping never trains on its validation items, and the augmentations keep sequences well formed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shelfwise.evaluation.protocol import fit_and_evaluate
from shelfwise.features.splits import leave_one_out
from shelfwise.recommend import Recommender, make_model
from shelfwise.recommend.sequential import PAD, SASRecRecommender, crop, left_pad, mask_items, reorder
from tests.unit.recommend.slices import beauty, retail_purchases

# full softmax here (explicitly; the default "auto" picks it for small catalogues): both losses get exercised
TINY = {
    "hidden": 32,
    "blocks": 1,
    "epochs": 20,
    "batch_size": 64,
    "loss": "softmax",
    "valid_users": 0,
    "threads": 1,
}


@pytest.fixture(scope="module")
def beauty_split():  # type: ignore[no-untyped-def]
    return leave_one_out(beauty())


@pytest.fixture(scope="module")
def sasrec(beauty_split) -> SASRecRecommender:  # type: ignore[no-untyped-def]
    model = make_model("sasrec", **TINY).fit(beauty_split.train)
    assert isinstance(model, SASRecRecommender)
    return model


def _session(model: Recommender) -> list[str]:
    counts = np.asarray(model.state.history.sum(axis=0)).ravel()
    return model.item_map.to_external(np.argsort(-counts, kind="stable")[[30, 60, 90]])


@pytest.mark.shared_data
def test_order_of_the_session_changes_sasrec_scores(sasrec: SASRecRecommender) -> None:
    items = sasrec.item_map.to_internal(_session(sasrec))
    forward, backward = sasrec._score_sessions([items, items[::-1]])
    assert not np.allclose(forward, backward, atol=1e-4)
    # the most recent item weighs most: each order's top-10 differ
    a = sasrec.recommend_for_events(_session(sasrec), k=10).items
    b = sasrec.recommend_for_events(_session(sasrec)[::-1], k=10).items
    assert a != b


@pytest.mark.shared_data
def test_two_tower_ignores_order_but_not_content(beauty_split) -> None:  # type: ignore[no-untyped-def]
    model = make_model("two-tower", hidden=32, epochs=3, threads=1).fit(beauty_split.train)
    session = _session(model)
    a = model.recommend_for_events(session, k=10)
    assert a.items == model.recommend_for_events(session[::-1], k=10).items
    assert a.items != model.recommend_for_events(session[:1], k=10).items


@pytest.mark.shared_data
def test_save_load_gives_identical_scores(sasrec: SASRecRecommender, tmp_path: Path) -> None:
    users = np.arange(50)
    before = sasrec.score_users(users)
    sasrec.save(tmp_path)
    loaded = Recommender.load(tmp_path)
    assert isinstance(loaded, SASRecRecommender)
    np.testing.assert_array_equal(loaded.score_users(users), before)
    items = sasrec.item_map.to_internal(_session(sasrec))
    np.testing.assert_array_equal(loaded._score_sessions([items]), sasrec._score_sessions([items]))


@pytest.mark.shared_data
def test_sasrec_beats_popularity_and_a_session_personalises(
    sasrec: SASRecRecommender,
    beauty_split,  # type: ignore[no-untyped-def]
) -> None:
    from shelfwise.evaluation.ranking import evaluate

    ours = evaluate(sasrec, beauty_split).metrics["ndcg@10"]
    _, popular = fit_and_evaluate(beauty_split, {"model": "popular"})
    assert ours > 1.3 * popular.metrics["ndcg@10"], (ours, popular.metrics["ndcg@10"])
    # a shopper with three session events and no history gets their own list, with reasons
    popular_list = make_model("popular").fit(beauty_split.train).recommend(["nobody"], k=10)[0].items
    rec = sasrec.recommend_for_events(_session(sasrec), k=10)
    assert len(set(rec.items) - set(popular_list)) >= 3
    assert any(r.startswith("similar to") for r in rec.reasons)


def test_early_stopping_never_trains_on_its_validation_items() -> None:
    model = SASRecRecommender(valid_users=4, max_len=3)
    rng = np.random.default_rng(0)
    histories = [np.arange(n) + 10 * u for u, n in enumerate([1, 2, 3, 4, 5, 6, 7, 8, 9, 10] * 3)]
    train, valid = model._train_valid(histories, rng)
    assert len(valid) == 4 and len(train) == 27  # one-item users have nothing to learn from
    trained_targets = {int(x) for s in train for x in s[1:]}
    for v in valid:
        assert len(v) <= 4  # max_len inputs and the target
        assert int(v[-1]) not in trained_targets


def test_sampled_softmax_and_augmentations_train() -> None:
    data = retail_purchases()
    model = make_model(
        "sasrec",
        hidden=16,
        blocks=1,
        epochs=3,
        threads=1,
        loss="sampled",
        negatives=64,
        augment=["crop", "mask", "reorder"],
        augment_prob=0.5,
        valid_users=50,
    ).fit(data)
    log = model.fit_log  # type: ignore[attr-defined]
    assert log[-1]["loss"] < log[0]["loss"]
    assert all("valid_ndcg@10" in e for e in log)


def test_augmentations_keep_sequences_well_formed() -> None:
    rng = np.random.default_rng(1)
    seq = np.arange(1, 11)
    for _ in range(20):
        c = crop(seq, 0.6, rng)
        assert len(c) == 6 and np.array_equal(c, np.arange(c[0], c[0] + 6))  # contiguous
        r = reorder(seq, 0.3, rng)
        assert len(r) == 10 and sorted(r) == sorted(seq)
        assert (r != seq).sum() <= 3
    assert len(crop(seq[:2], 0.1, rng)) == 2  # never shorter than one input and one target
    padded = left_pad([seq[:3], seq], 5)
    assert padded.shape == (2, 5)
    assert padded[0].tolist() == [PAD, PAD, 1, 2, 3] and padded[1].tolist() == [6, 7, 8, 9, 10]
    masked = mask_items(padded[0], 0.5, token=99, rng=rng)
    assert masked[:2].tolist() == [PAD, PAD]  # padding is never masked
    assert (masked == 99).sum() == 2 and ((masked == 99) | (masked == padded[0])).all()


def test_auto_loss_is_full_softmax_up_to_the_cut_off_only() -> None:
    auto = make_model("sasrec", softmax_max_items=100)
    assert isinstance(auto, SASRecRecommender)
    assert auto.config.loss == "auto"  # the served default
    assert auto._full_softmax(100) and not auto._full_softmax(101)
    sampled = make_model("sasrec", loss="sampled")
    softmax = make_model("sasrec", loss="softmax", softmax_max_items=100)
    assert isinstance(sampled, SASRecRecommender) and isinstance(softmax, SASRecRecommender)
    assert not sampled._full_softmax(10) and softmax._full_softmax(10**6)
