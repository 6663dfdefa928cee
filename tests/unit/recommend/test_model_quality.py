"""What a shop would notice about the models' quality, on real slices with full-ranking evaluation:
personalised models beat popularity, a session of three items personalises without retraining."""

from __future__ import annotations

import numpy as np
import pytest

from shelfwise.evaluation.protocol import fit_and_evaluate
from shelfwise.evaluation.significance import paired_test
from shelfwise.features.splits import leave_one_out
from shelfwise.recommend import make_model
from tests.unit.recommend.slices import beauty, retail_purchases


@pytest.fixture(scope="module")
def beauty_split():  # type: ignore[no-untyped-def]
    return leave_one_out(beauty())


@pytest.fixture(scope="module")
def popular_result(beauty_split):  # type: ignore[no-untyped-def]
    return fit_and_evaluate(beauty_split, {"model": "popular"})[1]


@pytest.mark.shared_data
@pytest.mark.parametrize(
    ("name", "settings"),
    [
        ("ease", {"l2": 300.0}),
        ("itemknn", {}),
        ("userknn", {}),
        ("als", {}),
    ],
)
def test_personalised_models_beat_popularity_on_amazon_beauty(
    beauty_split, popular_result, name: str, settings: dict[str, object]
) -> None:  # type: ignore[no-untyped-def]
    """Leave-one-out, full ranking, on 3,044 real shoppers: each beats popularity by a margin the
    paired test says is no accident."""
    _, result = fit_and_evaluate(beauty_split, {"model": name, **settings})
    ours, theirs = result.metrics["ndcg@10"], popular_result.metrics["ndcg@10"]
    assert ours > 1.3 * theirs, (name, ours, theirs)
    test = paired_test(result.per_user["ndcg@10"], popular_result.per_user["ndcg@10"])
    assert test["p_value"] < 0.01 and test["ci_low"] > 0, test


def test_three_session_events_personalise_without_retraining() -> None:
    data = retail_purchases()
    popular = make_model("popular").fit(data)
    popular_list = popular.recommend(["nobody"], k=10)[0].items
    # a shopper who just bought three items from one product line (real codes from the slice)
    counts = np.bincount(data.items, minlength=data.n_items)
    session = data.item_map.to_external(np.argsort(-counts, kind="stable")[20:23])
    for name in ("ease", "itemknn", "userknn", "als", "bought-together"):
        model = make_model(name).fit(data)
        rec = model.recommend_for_events(session, k=10)
        assert rec.items != popular_list, name
        assert len(set(rec.items) - set(popular_list)) >= 3, name
        assert any(r.startswith(("similar to", "bought together with", "liked by")) for r in rec.reasons), (
            name
        )


def test_als_fold_in_matches_the_trained_user_vector() -> None:
    # folding a training user's own history in should give (nearly) the vector ALS learned for them
    data = retail_purchases()
    model = make_model("als", factors=16, iterations=15, regularization=0.1).fit(data)
    u = int(np.argmax(np.bincount(data.users)))
    hist = model.state.history[[u]]
    folded = model._fold_in(hist)[0]  # checking the solver itself
    learned = model.user_factors[u]
    cos = folded @ learned / (np.linalg.norm(folded) * np.linalg.norm(learned))
    assert cos > 0.99
