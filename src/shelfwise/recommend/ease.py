"""EASE (Steck 2019): a closed-form item-item linear model, B = I - P·diag(1/diag(P)),
P = (XᵀX + λI)⁻¹, with a zero diagonal. Dense items×items: fine to ~30k items on one machine
(memory 8·n² bytes while fitting). Scoring a new shopper is the same product: fold-in is free.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.linalg as la
import scipy.sparse as sp
from pydantic import Field

from shelfwise.features.dataset import Dataset
from shelfwise.recommend.base import ModelConfig, ModelError, Recommender

MAX_ITEMS = 40_000


class EASEConfig(ModelConfig):
    l2: float = Field(default=250.0, gt=0, description="λ, the ridge penalty")
    precision: Literal["float32", "float64"] = Field(
        default="float32", description="float32 halves memory and time; λ keeps the system well conditioned"
    )


class EASERecommender(Recommender):
    name = "ease"
    Config = EASEConfig
    config: EASEConfig

    def _fit(self, dataset: Dataset, matrix: sp.csr_matrix) -> None:
        n = matrix.shape[1]
        if n > MAX_ITEMS:
            raise ModelError(
                f"EASE needs a dense {n:,}×{n:,} matrix", hint=f"use itemknn or als above {MAX_ITEMS:,} items"
            )
        dtype = np.float32 if self.config.precision == "float32" else np.float64
        potrf, potri = la.get_lapack_funcs(("potrf", "potri"), dtype=dtype)
        x = sp.csr_matrix(matrix, dtype=dtype)
        gram = np.asarray((x.T @ x).toarray(), dtype=dtype)
        gram[np.diag_indices(n)] += self.config.l2
        # P = G⁻¹ through Cholesky (G is symmetric positive definite): half the work of inv()
        c, info = potrf(gram, lower=False, overwrite_a=True)
        if info != 0:
            raise ModelError(f"EASE: Cholesky failed (info={info})", hint="raise l2")
        p, info = potri(c, lower=False, overwrite_c=True)
        if info != 0:
            raise ModelError(f"EASE: inversion failed (info={info})", hint="raise l2")
        p = np.triu(p) + np.triu(p, 1).T
        b = p / (-np.diag(p))[None, :]
        b[np.diag_indices(n)] = 0.0
        self.b = b.astype(np.float32)

    def _score(self, histories: sp.csr_matrix, users: np.ndarray) -> np.ndarray:
        return np.asarray(sp.csr_matrix(histories, dtype=np.float32) @ self.b, dtype=np.float32)

    def _similar_scores(self, items: np.ndarray) -> np.ndarray:
        return self.b[items]

    def _reasons(self, history: np.ndarray, items: np.ndarray) -> list[str]:
        if not len(history):
            return [self.reason_default] * len(items)
        block = self.b[np.ix_(history, items)]
        best = block.argmax(axis=0)
        return [
            f"similar to {self._label(history[b])}" if block[b, j] > 0 else self.reason_default
            for j, b in enumerate(best)
        ]

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"b": self.b}

    def _set_arrays(self, a: dict[str, np.ndarray]) -> None:
        self.b = a["b"]
