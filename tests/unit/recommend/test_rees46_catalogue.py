"""On the REES46 sample (real views, carts and purchases with brands and categories; research data
read from ../shared/data, skipped when absent): brand filters, exclusion by event type, profiles."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from shelfwise.features.dataset import Dataset
from shelfwise.features.profiles import item_profiles, user_profiles
from shelfwise.recommend import Filters, make_model
from tests.conftest import SHARED

REES46 = SHARED / "rees46_sample" / "events.csv"
pytestmark = pytest.mark.shared_data


@functools.cache
def _rees46() -> Dataset:
    if not REES46.is_file():
        pytest.skip(f"{REES46} is absent")
    return Dataset.from_file(REES46, "rees46")


def test_brand_filter_returns_only_that_brand() -> None:
    ds = _rees46()
    attrs = ds.item_attributes
    brand = attrs.brand_names[np.bincount(attrs.brand[attrs.brand >= 0]).argmax()]  # the commonest brand
    model = make_model("itemknn").fit(ds)
    counts = np.bincount(ds.users, minlength=ds.n_users)
    users = ds.user_map.to_external(np.argsort(-counts, kind="stable")[:20])
    for rec in model.recommend(users, k=10, filters=Filters(brands=[str(brand)])):
        assert rec.items
        assert set(attrs.brand_names[attrs.brand[ds.item_map.to_internal(rec.items)]]) == {brand}


def test_viewed_items_stay_recommendable_when_only_purchases_are_excluded() -> None:
    ds = _rees46()
    views = ds.matrix(types=["view"])
    u = int(np.argmax(np.diff(views.indptr)))  # the busiest viewer
    user = ds.user_map.external[u]
    viewed = set(ds.item_map.to_external(views[u].indices))
    everything = make_model("itemknn").fit(ds).recommend([user], k=ds.n_items)[0]
    purchases_only = make_model("itemknn", exclude_types=["purchase"]).fit(ds).recommend([user], k=50)[0]
    assert not viewed & set(everything.items)
    assert viewed & set(purchases_only.items)  # re-surfacing what they looked at is allowed


def test_profiles_from_views_carts_and_purchases() -> None:
    ds = _rees46()
    items = item_profiles(ds)
    known = ~np.isnan(items.conversion_rate)
    assert known.any() and np.all((items.conversion_rate[known] >= 0) & (items.conversion_rate[known] <= 1))
    assert (items.conversion_rate[known] > 0).any()
    users = user_profiles(ds)
    has_brand = np.asarray(users.brand_affinity.sum(axis=1)).ravel() > 0
    assert has_brand.mean() > 0.5
    assert (users.price_band >= 0).mean() > 0.9
