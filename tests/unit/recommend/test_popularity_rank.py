"""Popularity ranks one list for everyone and walks it per shopper (``PopularityRecommender._rank``);
it must give exactly the lists of scoring a full row per shopper (the generic ``Recommender._rank``):
the same items, scores, tie order (lower item id first) and -1 padding, with seen items, filters,
unavailable items and k beyond what is left."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from shelfwise.features.dataset import Dataset
from shelfwise.recommend.base import Filters, Recommender, csr_rows
from shelfwise.recommend.registry import model_from_config
from shelfwise.registry.toplists import top_lists


def _dataset(seed: int) -> Dataset:
    rng = np.random.default_rng(seed)
    n_items, n_events = 60, 400
    items = rng.integers(0, n_items, n_events)  # few events per item: many tied counts
    users = rng.integers(0, 40, n_events)
    ts = np.sort(rng.integers(0, 30 * 86_400_000, n_events))
    catalogue = {
        f"i{i}": SimpleNamespace(
            category=f"c{i % 4}",
            brand=f"b{i % 3}",
            price=float(i),
            available=bool(i % 7),  # every 7th item unavailable
            title=f"item {i}",
        )
        for i in range(n_items + 5)  # five catalogue items without events (cold)
    }
    return Dataset.from_events(
        users=[f"u{u}" for u in users], items=[f"i{i}" for i in items], ts=ts.tolist()
    ).with_items(catalogue)


FILTERS = [
    None,
    Filters(categories=["c1", "c2"]),
    Filters(brands=["b0"], price_min=10.0, price_max=40.0),
    Filters(price_min=1_000.0),  # nothing left: every slot pads
]


@pytest.mark.parametrize("mode", ["overall", "decay", "trending"])
@pytest.mark.parametrize("seed", [0, 1])
def test_walking_one_ranking_gives_the_lists_of_scoring_every_row(mode: str, seed: int) -> None:
    model = model_from_config({"model": "popular", "mode": mode}).fit(_dataset(seed))
    st = model.state
    rows = np.arange(len(st.user_map))
    for k in (1, 5, 30, 200):
        for filters in FILTERS:
            for exclude in (csr_rows(st.seen, rows), None):
                args = (csr_rows(st.history, rows), rows, k)
                fast = model._rank(*args, exclude=exclude, filters=filters)
                full = Recommender._rank(model, *args, exclude=exclude, filters=filters)
                assert np.array_equal(fast[0], full[0]), (k, filters)
                assert np.array_equal(fast[1], full[1]), (k, filters)
    # and through the public paths: a recommendation and the batch-scored lists kept with a version
    users = st.user_map.external[:10].tolist()
    for rec in model.recommend(users, 12):
        dense = st.user_map.index[rec.user]
        seen = set(st.seen.indices[st.seen.indptr[dense] : st.seen.indptr[dense + 1]].tolist())
        assert not seen & set(model.item_map.to_internal(rec.items).tolist())
        assert rec.scores == sorted(rec.scores, reverse=True)
    lists = top_lists(model, k=20)
    expected = Recommender._rank(
        model, csr_rows(st.history, rows), rows, 20, exclude=csr_rows(st.seen, rows), filters=None
    )
    assert np.array_equal(lists.items, expected[0])


def test_a_refit_ranks_by_the_new_scores() -> None:
    model = model_from_config({"model": "popular"}).fit(_dataset(0))
    rows = np.array([0])
    hist = csr_rows(model.state.history, rows)
    first = model._rank(hist, rows, 5, exclude=None, filters=None)[0]
    model.fit(_dataset(1))
    again = model._rank(hist, rows, 5, exclude=None, filters=None)[0]
    assert np.array_equal(again, Recommender._rank(model, hist, rows, 5, exclude=None, filters=None)[0])
    assert not np.array_equal(first, again)
