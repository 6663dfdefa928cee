"""Splits cannot leak the future, and share id maps with the data they came from."""

from __future__ import annotations

import numpy as np

from shelfwise.features.dataset import IdMap
from shelfwise.features.profiles import item_profiles, user_profiles
from shelfwise.features.splits import leave_one_out, temporal_split
from tests.unit.recommend.slices import retail, retail_purchases


def test_id_map_round_trip() -> None:
    m = IdMap.from_values(["17850", "13047", "17850", "12583"])
    assert m.external.tolist() == ["17850", "13047", "12583"]
    assert m.to_internal(["12583", "17850"]).tolist() == [2, 0]
    assert m.to_internal(["nobody"], strict=False).tolist() == [-1]
    assert m.to_external([1]) == ["13047"]


def test_dataset_from_real_file_keeps_time_order_and_prices() -> None:
    ds = retail_purchases()
    assert np.all(np.diff(ds.ts) >= 0)
    assert ds.n_users > 500 and ds.n_items > 1000
    assert np.isfinite(ds.item_attributes.price).mean() > 0.99
    m = ds.matrix()
    assert m.shape == (ds.n_users, ds.n_items) and m.max() == 1
    counts = ds.matrix(binary=False)
    assert counts.sum() == ds.weight.sum()  # quantities add up


def test_leave_one_out_holds_out_each_users_last_event() -> None:
    ds = retail_purchases()
    split = leave_one_out(ds)
    hist = ds.histories()
    checked = 0
    for u in split.test_users[:200]:
        assert split.test[u].indices.tolist() == [hist[u][-1]]
        assert split.valid is not None and split.valid[u].indices.tolist() == [hist[u][-2]]
        last = ds.ts[ds.users == u].max()
        # training holds the user's events strictly before the target: not the rest of that invoice
        assert split.train.ts[split.train.users == u].max(initial=0) < last
        assert (split.train.users == u).sum() == ((ds.users == u) & (ds.ts < last)).sum()
        checked += 1
    assert checked == 200
    assert split.info["dropped_same_time_as_target"] > 0  # type: ignore[index]  # invoices have many lines
    # users with fewer than three events are never evaluated
    short = np.flatnonzero(np.bincount(ds.users, minlength=ds.n_users) < 3)
    assert split.test[short].nnz == 0
    assert split.train.user_map is ds.user_map and split.train.item_map is ds.item_map


def test_temporal_split_trains_only_on_the_past() -> None:
    ds = retail_purchases()
    split = temporal_split(ds, test_fraction=0.25)
    cutoff = split.info["cutoff_ms"]  # type: ignore[index]
    assert split.train.ts.max() < cutoff
    later = ds.select(ds.ts >= cutoff)
    test_pairs = set(zip(*split.test.nonzero(), strict=True))
    later_pairs = set(zip(later.users.tolist(), later.items.tolist(), strict=True))
    assert test_pairs and test_pairs <= later_pairs
    # targets are new to the user: nothing they had bought before the cut-off
    seen = split.train.matrix()
    assert seen.multiply(split.test).nnz == 0


def test_profiles_use_only_what_they_are_given() -> None:
    ds = retail()
    split = temporal_split(ds, test_fraction=0.3)
    items_train = item_profiles(split.train)
    items_all = item_profiles(ds)
    assert items_train.popularity.sum() < items_all.popularity.sum()
    sold_late_only = (items_train.events == 0) & (items_all.events > 0)
    assert sold_late_only.any() and np.all(items_train.popularity[sold_late_only] == 0)
    users = user_profiles(split.train)
    active = np.flatnonzero(users.frequency > 0)
    assert np.all(users.recency_days[active] >= 0)
    rows = users.category_affinity[active].sum(axis=1)
    np.testing.assert_allclose(np.asarray(rows).ravel(), 1.0, rtol=1e-5)
    assert set(np.unique(users.price_band[active])) <= {0, 1, 2, 3}
    assert np.all(users.active_days[active] >= 1)


def test_leave_one_out_on_sequences_holds_out_exactly_one_event() -> None:
    from shelfwise.features.dataset import Dataset
    from tests.unit.recommend.slices import retail_sequences_file

    ds = Dataset.from_file(retail_sequences_file(), "sequences")  # one distinct time per position
    split = leave_one_out(ds)
    assert split.info["dropped_same_time_as_target"] == 0  # type: ignore[index]
    assert len(split.train) == len(ds) - split.test.nnz
