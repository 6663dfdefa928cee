"""ALS fold-in keeps YᵀY + λI between requests (issue 14: recomputing it was most of a fold-in, and
the hybrid folds a shopper in to explain each precomputed list), and rebuilds it when the item
factors change."""

from __future__ import annotations

import pickle

import numpy as np
import scipy.sparse as sp

from shelfwise.features.dataset import Dataset
from shelfwise.recommend import make_model
from shelfwise.recommend.factorization import ALSRecommender


def _shop() -> Dataset:
    rng = np.random.default_rng(0)
    users = [f"u{u}" for u in range(60) for _ in range(8)]
    items = [f"i{int(rng.integers(40))}" for _ in users]
    return Dataset.from_events(users=users, items=items, ts=list(range(len(users))))


def _reference(model: ALSRecommender, histories: sp.csr_matrix) -> np.ndarray:
    """The fold-in computed from scratch (as before the cache)."""
    y = model.item_factors.astype(np.float64)
    base = y.T @ y + model.config.regularization * np.eye(y.shape[1])
    out = np.zeros((histories.shape[0], y.shape[1]), np.float32)
    for r in range(histories.shape[0]):
        idx = histories.indices[histories.indptr[r] : histories.indptr[r + 1]]
        conf = model.config.alpha * histories.data[histories.indptr[r] : histories.indptr[r + 1]]
        yi = y[idx]
        a = base + (yi * (conf - 1.0)[:, None]).T @ yi
        out[r] = np.linalg.solve(a, (yi * conf[:, None]).sum(axis=0))
    return out


def _histories(n_items: int) -> sp.csr_matrix:
    rows = [[1, 5, 7], [2], [3, 4, 9, 11, 30]]
    r = np.repeat(np.arange(len(rows)), [len(x) for x in rows])
    c = np.concatenate(rows)
    return sp.csr_matrix((np.ones(len(c), np.float32), (r, c)), shape=(len(rows), n_items))


def test_fold_in_with_the_cached_gram_equals_the_computation_from_scratch() -> None:
    model = make_model("als", factors=8, iterations=3).fit(_shop())
    assert isinstance(model, ALSRecommender)
    h = _histories(model.n_items)
    first = model._fold_in(h)
    assert "_gram_cache" in model.__dict__
    np.testing.assert_allclose(first, _reference(model, h), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(model._fold_in(h), first)  # from the cache: the same


def test_new_item_factors_replace_the_cached_gram() -> None:
    model = make_model("als", factors=8, iterations=3).fit(_shop())
    assert isinstance(model, ALSRecommender)
    h = _histories(model.n_items)
    before = model._fold_in(h)
    arrays = model._arrays()
    model._set_arrays({**arrays, "item_factors": arrays["item_factors"] * 2.0})
    after = model._fold_in(h)
    np.testing.assert_allclose(after, _reference(model, h), rtol=1e-5, atol=1e-6)
    assert not np.allclose(after, before)


def test_pickles_leave_the_cache_behind() -> None:
    model = make_model("als", factors=8, iterations=3).fit(_shop())
    model._fold_in(_histories(model.n_items))
    copy = pickle.loads(pickle.dumps(model))
    assert "_gram_cache" not in copy.__dict__
    h = _histories(model.n_items)
    np.testing.assert_allclose(copy._fold_in(h), model._fold_in(h), rtol=1e-6)
