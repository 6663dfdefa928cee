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
from shelfwise.recommend.compression import Precision, QuantizedMatrix
from shelfwise.recommend.memory import CSR_ENTRY, MatrixShape


def _implicit() -> Any:
    try:
        import implicit.cpu.als
        import implicit.cpu.bpr
    except ImportError as exc:  # pragma: no cover - it is a dependency
        raise ModelError("ALS/BPR need the `implicit` package", hint="pip install implicit") from exc
    return implicit


def _quiet_progress() -> bool:
    return os.environ.get("SHELFWISE_PROGRESS", "1") != "0"


class FactorConfig(ModelConfig):
    serving_precision: Precision = Field(
        default="float32",
        description="how item factors are held while serving: float32, float16 or int8 (per-row scale); "
        "artifacts keep float32",
    )


class _FactorModel(Recommender):
    config: FactorConfig
    user_factors: np.ndarray
    items: QuantizedMatrix  # item factors, at the serving precision

    @property
    def item_factors(self) -> np.ndarray:
        """Item factors as float32 (a temporary copy unless served at float32)."""
        return self.items.codes if self.items.precision == "float32" else self.items.dense()

    def _keep_items(self, item_factors: np.ndarray) -> None:
        self.items = QuantizedMatrix.from_array(item_factors, self.config.serving_precision)
        norms = np.linalg.norm(self.items.dense(), axis=1)
        norms[norms == 0] = 1
        self._norms = norms.astype(np.float32)

    def serving_bytes(self) -> int:
        """Bytes of the factor arrays a server holds (users at float32, items at serving precision)."""
        return int(self.user_factors.nbytes + self.items.nbytes)

    def _score(self, histories: sp.csr_matrix, users: np.ndarray) -> np.ndarray:
        users = np.asarray(users, np.int64)
        vectors = np.empty((len(users), self.items.shape[1]), np.float32)
        known = users >= 0
        if known.any():
            vectors[known] = self.user_factors[users[known]]
        if (~known).any():
            vectors[~known] = self._fold_in(sp.csr_matrix(histories)[np.flatnonzero(~known)])
        return self.items.scores(vectors)

    def _fold_in(self, histories: sp.csr_matrix) -> np.ndarray:
        raise NotImplementedError

    def _train(self, model: Any, matrix: sp.csr_matrix) -> None:
        """Fit an ``implicit`` model and keep its factors."""
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, "blas"):  # implicit parallelises itself; BLAS threads fight it
            model.fit(sp.csr_matrix(matrix, dtype=np.float32), show_progress=_quiet_progress())
        self.user_factors = np.ascontiguousarray(model.user_factors, np.float32)
        self._keep_items(np.ascontiguousarray(model.item_factors, np.float32))

    def _cosine(self, rows: np.ndarray, cols: np.ndarray | None = None) -> np.ndarray:
        """Cosine similarity of item ``rows`` to item ``cols`` (all items when None)."""
        left = self.items.rows(rows) / self._norms[rows][:, None]
        if cols is None:
            return self.items.scores(left) / self._norms[None, :]
        return left @ (self.items.rows(cols) / self._norms[cols][:, None]).T

    def _similar_scores(self, items: np.ndarray) -> np.ndarray:
        return self._cosine(items)

    def _reasons(self, history: np.ndarray, items: np.ndarray) -> list[str]:
        if not len(history):
            return [self.reason_default] * len(items)
        block = self._cosine(np.asarray(history), np.asarray(items))  # only the cells the reasons need
        best = block.argmax(axis=0)
        return [f"similar to {self._label(history[b])}" for b in best]

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"user_factors": self.user_factors, "item_factors": self.item_factors}

    def _set_arrays(self, a: dict[str, np.ndarray]) -> None:
        self.user_factors = a["user_factors"]
        self._keep_items(a["item_factors"])


class ALSConfig(FactorConfig):
    factors: int = Field(default=64, ge=1)
    regularization: float = Field(default=1.0, ge=0)
    alpha: float = Field(default=20.0, gt=0, description="confidence per event: c = alpha · count")
    iterations: int = Field(default=15, ge=1)
    seed: int = 0


class ALSRecommender(_FactorModel):
    name = "als"
    Config = ALSConfig
    config: ALSConfig

    def _fit_bytes(self, shape: MatrixShape) -> int:
        # implicit keeps the matrix and its transpose (float32 + int32 + indptr), and the factors
        # with a solver's copies of them
        return 4 * shape.nnz * (CSR_ENTRY + 4) + 4 * (shape.n_users + shape.n_items) * self.config.factors * 4

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

    def __getstate__(self) -> dict[str, Any]:
        """Copies and pickles leave the fold-in cache behind (rebuilt on first use)."""
        return {k: v for k, v in self.__dict__.items() if k != "_gram_cache"}

    def _gram(self) -> tuple[np.ndarray, np.ndarray]:
        """(Y as float64, YᵀY + λI): the same for every shopper folded in, so computed once per set
        of item factors (recomputing them cost n·f² per request: ~15M multiply-adds at 3.9k items
        and 64 factors, most of a fold-in's time)."""
        items = self.items
        cached = self.__dict__.get("_gram_cache")
        if cached is None or cached[0] is not items:
            y = self.item_factors.astype(np.float64)
            base = y.T @ y + self.config.regularization * np.eye(y.shape[1])
            cached = (items, y, base)
            self._gram_cache = cached  # one assignment: a concurrent reader sees old or new
        return cached[1], cached[2]

    def _fold_in(self, histories: sp.csr_matrix) -> np.ndarray:
        y, base = self._gram()
        f = y.shape[1]
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


class BPRConfig(FactorConfig):
    factors: int = Field(default=64, ge=1)
    learning_rate: float = Field(default=0.05, gt=0)
    regularization: float = Field(default=0.01, ge=0)
    iterations: int = Field(default=100, ge=1)
    seed: int = 0


class BPRRecommender(_FactorModel):
    name = "bpr"
    Config = BPRConfig
    config: BPRConfig

    def _fit_bytes(self, shape: MatrixShape) -> int:
        return 4 * shape.nnz * (CSR_ENTRY + 4) + 4 * (shape.n_users + shape.n_items) * self.config.factors * 4

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
