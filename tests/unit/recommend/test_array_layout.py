"""Served models keep the matrices a request reads by rows in C order, after fitting and after a
save and load (issue 14: EASE's B came out of LAPACK in Fortran order, so scoring one shopper,
a sparse history times B, walked each row with a stride of n floats: ~1 s a request at 4k items
instead of ~1 ms, and the hybrid, which asks EASE for candidates, paid it too)."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from shelfwise.recommend import make_model
from shelfwise.recommend.base import Recommender
from shelfwise.recommend.ease import EASERecommender
from tests.unit.recommend.slices import retail


def _row_major(model: Recommender) -> dict[str, bool]:
    """For every 2-D dense array of the model (and of a hybrid's retrievers): C-contiguous?"""
    out = {}
    for name, arr in model._arrays().items():
        if isinstance(arr, np.ndarray) and arr.ndim == 2 and min(arr.shape) > 1:
            out[name] = bool(arr.flags["C_CONTIGUOUS"])
    return out


@pytest.fixture(scope="module")
def ease() -> EASERecommender:
    model = make_model("ease", l2=200.0).fit(retail())
    assert isinstance(model, EASERecommender)
    return model


def test_ease_b_is_row_major_after_fitting(ease: EASERecommender) -> None:
    assert ease.b.flags["C_CONTIGUOUS"]


def test_ease_b_is_the_closed_form(ease: EASERecommender) -> None:
    """The C-order view changes nothing: B = I - P·diag(1/diag(P)) with a zero diagonal."""
    x = sp.csr_matrix(retail().matrix(), dtype=np.float64)
    gram = (x.T @ x).toarray() + 200.0 * np.eye(x.shape[1])
    p = np.linalg.inv(gram)
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    np.testing.assert_allclose(ease.b, b, atol=2e-5)


def test_ease_b_is_row_major_when_loaded_from_a_fortran_ordered_file(
    ease: EASERecommender, tmp_path: Path
) -> None:
    """Versions saved before the fix hold B in Fortran order on disk: loading puts it in C order."""
    old = copy.copy(ease)
    old.b = np.asfortranarray(ease.b)
    old.save(tmp_path / "m")
    on_disk = np.load(tmp_path / "m" / "model_b.npy")
    assert on_disk.flags["F_CONTIGUOUS"] and not on_disk.flags["C_CONTIGUOUS"]
    loaded = type(ease).load(tmp_path / "m")
    assert isinstance(loaded, EASERecommender)
    assert loaded.b.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(loaded.b, ease.b)


# the hybrid holds its retrievers' arrays too (EASE, item-KNN, ALS, content), so it covers them
@pytest.mark.parametrize("name", ["ease", "als", "hybrid"])
def test_served_models_read_row_major_matrices_after_a_save_and_load(name: str, tmp_path: Path) -> None:
    settings = {"rounds": 20} if name == "hybrid" else {}
    model = make_model(name, **settings).fit(retail())
    assert all(_row_major(model).values()), _row_major(model)
    model.save(tmp_path / name)
    loaded = type(model).load(tmp_path / name)
    assert all(_row_major(loaded).values()), _row_major(loaded)
