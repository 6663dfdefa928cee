"""Every model family estimates its fit's memory and refuses, before allocating, what cannot fit;
``model: auto`` picks a family by catalogue size and memory (issue 19, item 0)."""

from __future__ import annotations

import numpy as np
import pytest

from shelfwise.core.memory import format_bytes, memory_budget, parse_bytes
from shelfwise.features.dataset import Dataset
from shelfwise.recommend.ease import EASERecommender
from shelfwise.recommend.memory import MatrixShape, MemoryRefusedError
from shelfwise.recommend.registry import make_model, model_names
from shelfwise.recommend.sizing import choose_model

# the shop from the issue: EASE died with SIGSEGV inside OpenBLAS's potrf on it
SHOPPERS, ITEMS, EVENTS = 20_000, 37_355, 300_000


def _issue_shop() -> Dataset:
    """300k events over 37,355 items (Zipf-like popularity) and 20,000 shoppers: cheap, sparse."""
    rng = np.random.default_rng(19)
    weights = 1.0 / np.arange(1, ITEMS + 1) ** 0.9
    items = rng.choice(ITEMS, EVENTS, p=weights / weights.sum())
    items[:ITEMS] = np.arange(ITEMS)  # every item seen at least once
    users = rng.integers(0, SHOPPERS, EVENTS)
    return Dataset.from_events(
        users=[f"u{u}" for u in users], items=[f"i{i}" for i in items], ts=np.arange(EVENTS) * 1000
    )


def test_ease_refuses_the_catalogue_that_crashed_it_before_allocating(monkeypatch):
    monkeypatch.setenv("SHELFWISE_MEMORY_LIMIT", "2GB")
    ds = _issue_shop()
    model = EASERecommender()
    with pytest.raises(MemoryRefusedError) as err:
        model.fit(ds)
    message = str(err.value)
    assert "\n" not in message
    assert "37,355" in message and "dense" in message and "SHELFWISE_MEMORY_LIMIT" in message
    assert "als or itemknn" in message  # the hint says what to do instead
    need = model.fit_bytes(MatrixShape(SHOPPERS, ITEMS, EVENTS))
    assert need >= 4 * ITEMS * ITEMS  # at least the dense float32 matrix: 5.6 GB
    assert model._state is None  # refused before fitting anything


def test_the_same_shop_trains_with_a_family_that_fits(monkeypatch):
    monkeypatch.setenv("SHELFWISE_MEMORY_LIMIT", "2GB")
    ds = _issue_shop()
    config, why = choose_model(MatrixShape.of(ds.matrix()))
    assert config == {"model": "als"}, why
    model = make_model("itemknn").fit(ds)  # a sparse family: well inside 2 GB
    assert model.recommend(["u1"], k=5)[0].items


@pytest.mark.parametrize("name", model_names())
def test_every_family_estimates_and_refuses_a_million_items(name):
    model = make_model(name)
    small = model.fit_bytes(MatrixShape(10_000, 10_000, 100_000))
    big_shape = MatrixShape(1_000_000, 1_000_000, 10_000_000)
    big = model.fit_bytes(big_shape)
    assert 0 < small < big  # grows with the shop
    with pytest.raises(MemoryRefusedError) as err:
        model.check_fits(big_shape, budget=small)
    assert model.name in str(err.value) and format_bytes(big) in str(err.value)


def test_ease_estimate_is_quadratic_in_items():
    ease = EASERecommender()
    at = {n: ease.fit_bytes(MatrixShape(20_000, n, 300_000)) for n in (20_000, 40_000)}
    assert 3.2 < at[40_000] / at[20_000] < 4.5
    f64 = EASERecommender(precision="float64").fit_bytes(MatrixShape(20_000, 20_000, 300_000))
    assert f64 > 2.5 * at[20_000]


def test_auto_prefers_ease_on_small_catalogues_and_popularity_when_nothing_else_fits():
    assert choose_model(MatrixShape(5_000, 3_000, 100_000), budget=8 * 10**9)[0] == {"model": "ease"}
    assert choose_model(MatrixShape(5_000, 19_000, 100_000), budget=10**9)[0] != {"model": "ease"}
    tiny = choose_model(MatrixShape(10**6, 10**6, 10**8), budget=10**8)
    assert tiny[0] == {"model": "popular"} and "passed over" in tiny[1]


def test_memory_budget_reads_the_setting(monkeypatch):
    monkeypatch.setenv("SHELFWISE_MEMORY_LIMIT", "750MB")
    assert memory_budget() == 750_000_000
    monkeypatch.delenv("SHELFWISE_MEMORY_LIMIT")
    assert 0 < memory_budget() < 10**15
    assert parse_bytes("2GiB") == 2**31
    with pytest.raises(Exception, match="not a memory size"):
        parse_bytes("lots")


def test_in_place_ease_equals_the_closed_form():
    """The memory-lean fit (in-place Cholesky inverse, blocked symmetrisation) is still Steck's B."""
    rng = np.random.default_rng(3)
    n_users, n_items = 400, 300
    users, items = rng.integers(0, n_users, 6000), rng.integers(0, n_items, 6000)
    ds = Dataset.from_events(
        users=[f"u{u}" for u in users], items=[f"i{i}" for i in items], ts=np.arange(6000)
    )
    model = EASERecommender(precision="float64", l2=50.0)
    from shelfwise.recommend import ease

    x = ds.matrix().toarray().astype(np.float64)
    p = np.linalg.inv(x.T @ x + 50.0 * np.eye(x.shape[1]))
    expected = p / -np.diag(p)[None, :]
    np.fill_diagonal(expected, 0.0)
    model._fit(ds, ds.matrix())
    np.testing.assert_allclose(model.b, expected.astype(np.float32), rtol=1e-4, atol=1e-6)
    block = np.arange(25.0).reshape(5, 5)
    ease._symmetrise_upper(block, block=2)
    np.testing.assert_array_equal(block, np.triu(block) + np.triu(block, 1).T)
