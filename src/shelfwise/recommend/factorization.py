"""Matrix factorisation through the ``implicit`` library (CPU): ALS and BPR.

We train with ``implicit`` and keep only its factor arrays, so scoring, fold-in and artifacts are
plain NumPy. ALS fold-in solves the user's least-squares step exactly as ``implicit`` does
(``A = YᵀY + λI + Σ (c-1)·y yᵀ``, ``b = Σ c·y``); BPR has no closed form, so a new shopper's
vector is the mean of their items' vectors (a cheap, common approximation).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from shelfwise.features.dataset import Dataset
from shelfwise.recommend.base import ModelConfig, ModelError, Recommender


def _implicit() -> Any:
    try:
        import implicit.cpu.als
        import implicit.cpu.bpr
    except ImportError as exc:  # pragma: no cover - it is a dependency
        raise ModelError("ALS/BPR need the `implicit` package", hint="pip install implicit") from exc
    return implicit


def _quiet_progress() -> bool:
    return os.environ.get("SHELFWISE_PROGRESS", "1") != "0"


class _FactorModel(Recommender):
    user_factors: np.ndarray
    item_factors: np.ndarray

    def _score(self, histories: sp.csr_matrix, users: np.ndarray) -> np.ndarray:
        users = np.asarray(users, np.int64)
        vectors = np.empty((len(users), self.item_factors.shape[1]), np.float32)
        known = users >= 0
        if known.any():
            vectors[known] = self.user_factors[users[known]]
        if (~known).any():
            vectors[~known] = self._fold_in(sp.csr_matrix(histories)[np.flatnonzero(~known)])
        return vectors @ self.item_factors.T

    def _fold_in(self, histories: sp.csr_matrix) -> np.ndarray:
        raise NotImplementedError

    def _train(self, model: Any, matrix: sp.csr_matrix) -> None:
        """Fit an ``implicit`` model and keep its factors (dropping the cached unit-norm copy)."""
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, "blas"):  # implicit parallelises itself; BLAS threads fight it
            model.fit(sp.csr_matrix(matrix, dtype=np.float32), show_progress=_quiet_progress())
        self.user_factors = np.ascontiguousarray(model.user_factors, np.float32)
        self.item_factors = np.ascontiguousarray(model.item_factors, np.float32)
        self.__dict__.pop("_unit", None)

    def _unit_factors(self) -> np.ndarray:
        unit = self.__dict__.get("_unit")
        if unit is None or unit.shape != self.item_factors.shape:
            norms = np.linalg.norm(self.item_factors, axis=1)
            norms[norms == 0] = 1
            unit = np.ascontiguousarray(self.item_factors / norms[:, None], np.float32)
            self._unit = unit
        return unit

    def _similar_scores(self, items: np.ndarray) -> np.ndarray:
        unit = self._unit_factors()
        return unit[items] @ unit.T

    def _reasons(self, history: np.ndarray, items: np.ndarray) -> list[str]:
        if not len(history):
            return [self.reason_default] * len(items)
        unit = self._unit_factors()
        block = unit[history] @ unit[items].T  # only the cells the reasons need
        best = block.argmax(axis=0)
        return [f"similar to {self._label(history[b])}" for b in best]

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"user_factors": self.user_factors, "item_factors": self.item_factors}

    def _set_arrays(self, a: dict[str, np.ndarray]) -> None:
        self.user_factors = a["user_factors"]
        self.item_factors = a["item_factors"]
        self.__dict__.pop("_unit", None)


class ALSConfig(ModelConfig):
    factors: int = Field(default=64, ge=1)
    regularization: float = Field(default=1.0, ge=0)
    alpha: float = Field(default=20.0, gt=0, description="confidence per event: c = alpha · count")
    iterations: int = Field(default=15, ge=1)
    seed: int = 0


class ALSRecommender(_FactorModel):
    name = "als"
    Config = ALSConfig
    config: ALSConfig

    def _fit(self, dataset: Dataset, matrix: sp.csr_matrix) -> None:
        c = self.config
        model = _implicit().cpu.als.AlternatingLeastSquares(
            factors=c.factors,
            regularization=c.regularization,
            alpha=c.alpha,
            iterations=c.iterations,
            random_state=c.seed,
        )
        self._train(model, matrix)

    def _fold_in(self, histories: sp.csr_matrix) -> np.ndarray:
        y = self.item_factors.astype(np.float64)
        f = y.shape[1]
        base = y.T @ y + self.config.regularization * np.eye(f)
        out = np.zeros((histories.shape[0], f), np.float32)
        for r in range(histories.shape[0]):
            lo, hi = histories.indptr[r], histories.indptr[r + 1]
            idx = histories.indices[lo:hi]
            if not len(idx):
                continue
            conf = self.config.alpha * histories.data[lo:hi].astype(np.float64)
            yi = y[idx]
            a = base + (yi * (conf - 1.0)[:, None]).T @ yi
            b = (yi * conf[:, None]).sum(axis=0)
            out[r] = np.linalg.solve(a, b)
        return out


class BPRConfig(ModelConfig):
    factors: int = Field(default=64, ge=1)
    learning_rate: float = Field(default=0.05, gt=0)
    regularization: float = Field(default=0.01, ge=0)
    iterations: int = Field(default=100, ge=1)
    seed: int = 0


class BPRRecommender(_FactorModel):
    name = "bpr"
    Config = BPRConfig
    config: BPRConfig

    def _fit(self, dataset: Dataset, matrix: sp.csr_matrix) -> None:
        c = self.config
        model = _implicit().cpu.bpr.BayesianPersonalizedRanking(
            factors=c.factors,
            learning_rate=c.learning_rate,
            regularization=c.regularization,
            iterations=c.iterations,
            random_state=c.seed,
        )
        # implicit appends a bias column: item_factors[:, -1] is the item bias, user_factors[:, -1] = 1
        self._train(model, matrix)

    def _fold_in(self, histories: sp.csr_matrix) -> np.ndarray:
        h = sp.csr_matrix(histories, dtype=np.float32)
        counts = np.asarray(h.sum(axis=1)).ravel()
        counts[counts == 0] = 1
        v = np.asarray(h @ self.item_factors) / counts[:, None]
        v[:, -1] = 1.0  # the bias column always counts in full
        return v.astype(np.float32)
