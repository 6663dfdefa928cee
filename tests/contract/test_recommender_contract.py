"""Every registered recommender passes the same suite, on a real slice of Online Retail purchases:
shapes and order of results, exclusion of what the user bought, filters, availability, fold-in of
a new shopper, similar items, and a save/load round trip (``.npy`` without pickle + checksums)
that gives identical recommendations.

A new model family (SASRec, two-tower…) joins by being registered and listed in ``SMALL``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from shelfwise.features.dataset import Dataset
from shelfwise.recommend import Filters, ModelError, Recommender, model_from_config, model_names
from tests.unit.recommend.slices import retail_purchases

# small settings so the whole suite stays fast; every registered model must appear here
SMALL: dict[str, dict[str, object]] = {
    "popular": {},
    "popular-category": {},
    "popular-decay": {"half_life_days": 3.0},
    "trending": {"window_days": 3.0},
    "itemknn": {"neighbours": 50},
    "userknn": {"neighbours": 30},
    "ease": {"l2": 100.0},
    "als": {"factors": 16, "iterations": 4},
    "bpr": {"factors": 16, "iterations": 10},
    "bought-together": {"min_support": 0.01},
    "sasrec": {"hidden": 16, "blocks": 1, "epochs": 3, "max_len": 20, "valid_users": 0, "threads": 1},
    "two-tower": {"hidden": 16, "epochs": 3, "threads": 1},
    "content-tfidf": {},
    "content-embed": {},
    "hybrid": {
        "retrievers": [
            {"model": "itemknn", "neighbours": 50},
            {"model": "popular-decay"},
            {"model": "content-tfidf"},
        ],
        "candidates": 30,
        "rounds": 30,
    },
}
K = 10


def test_every_registered_model_is_in_the_contract() -> None:
    assert sorted(SMALL) == model_names()


@pytest.fixture(scope="module")
def data() -> Dataset:
    return retail_purchases()


@pytest.fixture(scope="module", params=sorted(SMALL))
def fitted(request: pytest.FixtureRequest, data: Dataset) -> Recommender:
    model = model_from_config({"model": request.param, **SMALL[request.param]})
    assert model.fit(data) is model
    return model


@pytest.fixture(scope="module")
def active_users(data: Dataset) -> list[str]:
    counts = np.bincount(data.users, minlength=data.n_users)
    return data.user_map.to_external(np.argsort(-counts, kind="stable")[:15])


def _bought(data: Dataset, user: str) -> set[str]:
    u = int(data.user_map.to_internal([user])[0])
    return set(data.item_map.to_external(data.matrix()[u].indices))


def test_recommend_shapes_order_and_reasons(fitted: Recommender, active_users: list[str]) -> None:
    recs = fitted.recommend(active_users, k=K)
    assert [r.user for r in recs] == active_users
    for r in recs:
        assert len(r.items) == K and len(set(r.items)) == K
        assert len(r.scores) == len(r.reasons) == K
        assert all(a >= b for a, b in zip(r.scores, r.scores[1:], strict=False)), "best first"
        assert all(isinstance(x, str) and x for x in r.reasons)


def test_exclude_seen_is_honoured(fitted: Recommender, data: Dataset, active_users: list[str]) -> None:
    for r in fitted.recommend(active_users, k=K):
        assert not set(r.items) & _bought(data, r.user)
    # and turning it off lets personalised models bring bought items back for heavy buyers
    again = fitted.recommend(active_users, k=50, exclude_seen=False)
    if fitted.name not in ("popular", "bought-together"):
        assert any(set(r.items) & _bought(data, r.user) for r in again)


def test_filters_are_honoured(fitted: Recommender, data: Dataset, active_users: list[str]) -> None:
    attrs = data.item_attributes
    cats = attrs.category_names[attrs.category[data.items]]
    common = [str(c) for c, _ in zip(*np.unique(cats, return_counts=True), strict=True)]
    top_two = sorted(common, key=lambda c: -int((cats == c).sum()))[:2]
    f = Filters(categories=top_two, price_min=1.0, price_max=5.0)
    allowed = fitted.allowed_mask(f)
    assert allowed.sum() > K
    for r in fitted.recommend(active_users, k=K, filters=f):
        assert r.items, "there are enough items in the filter to recommend"
        idx = data.item_map.to_internal(r.items)
        assert set(attrs.category_names[attrs.category[idx]]) <= set(top_two)
        assert np.all((attrs.price[idx] >= 1.0) & (attrs.price[idx] <= 5.0))


def test_unavailable_items_are_never_returned(fitted: Recommender, active_users: list[str]) -> None:
    first = fitted.recommend(active_users[:3], k=K)
    hidden = sorted({i for r in first for i in r.items[:3]})
    fitted.set_availability(hidden, False)
    try:
        for r in fitted.recommend(active_users[:3], k=K):
            assert not set(r.items) & set(hidden)
        assert not set(fitted.recommend_for_events(hidden[:2], k=K).items) & set(hidden)
    finally:
        fitted.set_availability(hidden, True)


def test_new_shopper_from_a_few_events(fitted: Recommender, data: Dataset) -> None:
    session = data.item_map.to_external(data.items[-3:])  # the slice's last three purchases
    rec = fitted.recommend_for_events(session, k=K)
    assert len(rec.items) == K and not set(rec.items) & set(session)
    stranger = fitted.recommend(["never-seen-user"], k=K)[0]
    assert len(stranger.items) == K


def test_similar_items(fitted: Recommender, data: Dataset) -> None:
    item = data.item_map.to_external([int(np.bincount(data.items).argmax())])[0]
    [sim] = fitted.similar_items([item], k=K)
    assert sim.user == item and item not in sim.items and len(sim.items) == K


def test_save_load_round_trip(fitted: Recommender, active_users: list[str], tmp_path: Path) -> None:
    before = fitted.recommend(active_users, k=K)
    session = fitted.item_map.to_external([0, 1, 2])
    session_before = fitted.recommend_for_events(session, k=K)
    fitted.save(tmp_path)
    meta = json.loads((tmp_path / "metadata.json").read_text())
    assert meta["model"] == fitted.name and meta["files"]
    assert all(name.endswith(".npy") for name in meta["files"])
    for name in meta["files"]:  # nothing needs pickle to load
        np.load(tmp_path / name, allow_pickle=False)
    loaded = Recommender.load(tmp_path)
    assert type(loaded) is type(fitted) and loaded.config == fitted.config
    after = loaded.recommend(active_users, k=K)
    assert [r.items for r in after] == [r.items for r in before]
    assert [r.reasons for r in after] == [r.reasons for r in before]
    np.testing.assert_allclose([r.scores for r in after], [r.scores for r in before], rtol=1e-6)
    assert loaded.recommend_for_events(session, k=K).items == session_before.items


def test_tampered_artifact_is_refused(fitted: Recommender, tmp_path: Path) -> None:
    fitted.save(tmp_path)
    victim = tmp_path / "item_ids.npy"
    victim.write_bytes(victim.read_bytes()[:-4] + b"XXXX")
    with pytest.raises(ModelError, match="checksum"):
        Recommender.load(tmp_path)


def test_a_stranger_gets_the_popular_items(fitted: Recommender, data: Dataset) -> None:
    counts = np.asarray(data.matrix().sum(axis=0)).ravel()
    popular = set(data.item_map.to_external(np.argsort(-counts, kind="stable")[:K]))
    for rec in (
        fitted.recommend(["never-seen-user"], k=K)[0],
        fitted.recommend_for_events(["no-such-item"], k=K),
    ):
        assert len(rec.items) == K
        overall = getattr(fitted.config, "mode", None) == "overall"
        if fitted.popular_fallback or overall:
            assert set(rec.items) == popular, fitted.name
            assert set(rec.reasons) == {"popular overall"}
