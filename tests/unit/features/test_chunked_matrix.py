"""Issue 19: training data built in chunks equals the one-shot build.

``interaction_matrix`` (what ``Dataset.matrix`` uses) adds one partial CSR matrix per chunk of
events; ``InteractionColumns`` (what ``Store.interactions`` streams rows into) encodes ids a chunk
at a time. Both are checked against the whole-array build they replaced, on a generated shop.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import scipy.sparse as sp

from shelfwise.data.synthetic import ShopConfig, generate_events
from shelfwise.features.dataset import interaction_matrix
from shelfwise.store.interaction_columns import InteractionColumns

TYPES = ("view", "cart", "purchase", "return")


@functools.cache
def _shop(events: int = 12_000) -> dict[str, np.ndarray]:
    cfg = ShopConfig(events=events, items=500, users=800, seed=19)
    parts = list(generate_events(cfg))
    return {k: np.concatenate([p[k] for p in parts]) for k in ("user", "item", "ts", "kind")}


def _one_shot(
    users: np.ndarray, items: np.ndarray, data: np.ndarray, shape: tuple[int, int]
) -> sp.csr_matrix:
    m = sp.csr_matrix((data, (users, items)), shape=shape, dtype=np.float32)
    m.sum_duplicates()
    return m


@pytest.mark.parametrize("chunk", [1_000, 4_099, 1 << 20])
@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("masked", [False, True])
def test_chunked_matrix_equals_one_shot(chunk: int, binary: bool, masked: bool) -> None:
    shop = _shop()
    users, items = shop["user"].astype(np.int32), shop["item"].astype(np.int32)
    weight = (shop["kind"] + 1).astype(np.float32)  # unequal weights: sums must add up per cell
    mask = shop["kind"] != 0 if masked else None
    shape = (800, 500)
    got = interaction_matrix(users, items, None if binary else weight, shape=shape, mask=mask, chunk=chunk)
    keep = np.ones(len(users), bool) if mask is None else mask
    want = _one_shot(users[keep], items[keep], np.ones(int(keep.sum())) if binary else weight[keep], shape)
    if binary:
        want.data[:] = 1
    assert got.shape == want.shape and got.dtype == np.float32
    assert got.indices.dtype == np.int32 and got.indptr.dtype == np.int32
    assert got.has_canonical_format
    np.testing.assert_array_equal(got.indptr, want.indptr)
    np.testing.assert_array_equal(got.indices, want.indices)
    np.testing.assert_array_equal(got.data, want.data)
    if not binary:
        assert got.data.max() > 1  # repeated events did add up


def test_empty_events_give_an_empty_matrix() -> None:
    empty = np.array([], np.int32)
    m = interaction_matrix(empty, empty, None, shape=(3, 4))
    assert m.shape == (3, 4) and m.nnz == 0


@pytest.mark.parametrize("chunk", [97, 4_096, 100_000])
def test_interaction_columns_in_chunks_equal_np_unique(chunk: int) -> None:
    shop = _shop()
    # ids as the store holds them (text), in an order where sorted != first seen
    rows = [
        (f"u{u * 7919 % 800}", f"i{i}", TYPES[k], int(t), 1 + (u % 3))
        for u, i, k, t in zip(
            shop["user"].tolist(),
            shop["item"].tolist(),
            shop["kind"].tolist(),
            shop["ts"].tolist(),
            strict=True,
        )
    ]
    built = InteractionColumns(TYPES)
    for lo in range(0, len(rows), chunk):
        built.add(rows[lo : lo + chunk])
    got = built.finish()
    user_col, item_col, type_col, ts_col, qty_col = zip(*rows, strict=True)
    user_ids, user_idx = np.unique(np.array(user_col, dtype=object), return_inverse=True)
    item_ids, item_idx = np.unique(np.array(item_col, dtype=object), return_inverse=True)
    assert got.user_ids.tolist() == user_ids.tolist() and got.item_ids.tolist() == item_ids.tolist()
    np.testing.assert_array_equal(got.users, user_idx.astype(np.int32))
    np.testing.assert_array_equal(got.items, item_idx.astype(np.int32))
    np.testing.assert_array_equal(got.ts, np.array(ts_col, np.int64))
    np.testing.assert_array_equal(got.types, np.array([TYPES.index(t) for t in type_col], np.int8))
    np.testing.assert_array_equal(got.quantity, np.array(qty_col, np.int32))
    assert got.users.dtype == np.int32 and got.items.dtype == np.int32


def test_interaction_columns_with_no_rows() -> None:
    got = InteractionColumns(TYPES).finish()
    assert len(got) == 0 and got.user_ids.size == 0 and got.type_names == TYPES
