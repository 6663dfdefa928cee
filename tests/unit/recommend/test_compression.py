"""Serving at float16/int8: the memory really shrinks, the ranking barely moves, artifacts stay exact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shelfwise.features.dataset import Dataset
from shelfwise.recommend.base import Recommender
from shelfwise.recommend.compression import QuantizedMatrix
from shelfwise.recommend.registry import make_model
from tests.unit.recommend.slices import retail_purchases


def _data() -> Dataset:
    return retail_purchases()


@pytest.mark.parametrize(("precision", "ratio"), [("float16", 2.0), ("int8", 3.5)])
def test_compressed_factors_are_smaller_and_rank_alike(precision: str, ratio: float, tmp_path: Path) -> None:
    data = _data()
    full = make_model("als", factors=32, iterations=5).fit(data)
    small = make_model("als", factors=32, iterations=5, serving_precision=precision).fit(data)
    assert full.items.nbytes / small.items.nbytes >= ratio
    users = data.user_map.external[::7].tolist()
    overlap = [
        len(set(a.items) & set(b.items)) / 10
        for a, b in zip(full.recommend(users, k=10), small.recommend(users, k=10), strict=True)
    ]
    assert np.mean(overlap) >= 0.9
    item = data.item_map.external[int(np.argmax(np.bincount(data.items)))]
    near, near_full = small.similar_items([item], k=5)[0].items, full.similar_items([item], k=5)[0].items
    # the nearest item stays; neighbours with almost equal scores may swap places under int8
    assert near[0] == near_full[0] and len(set(near) & set(near_full)) >= 4
    # a saved model keeps float32 factors and comes back at its serving precision
    loaded = Recommender.load(small.save(tmp_path / "m"))
    assert loaded.items.precision == precision
    assert np.array_equal(loaded.recommend(users, k=10)[0].items, small.recommend(users, k=10)[0].items)


def test_int8_scores_match_dequantised_product() -> None:
    m = np.random.default_rng(1).normal(size=(300, 32)).astype(np.float32)
    q = QuantizedMatrix.from_array(m, "int8")
    v = np.random.default_rng(2).normal(size=(4, 32)).astype(np.float32)
    assert np.allclose(q.scores(v), v @ q.dense().T, atol=1e-4)
    assert np.abs(q.dense() - m).max() <= np.abs(m).max() / 127 / 2 + 1e-6
    with pytest.raises(ValueError, match="unknown precision"):
        QuantizedMatrix.from_array(m, "int4")  # type: ignore[arg-type]
