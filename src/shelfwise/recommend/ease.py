"""EASE (Steck 2019): a closed-form item-item linear model, B = I - P·diag(1/diag(P)),
P = (XᵀX + λI)⁻¹, with a zero diagonal. Scoring a new shopper is the same product: fold-in is free.

Dense items × items, so memory is the limit: the fit works in place on one n×n matrix (4·n² bytes
at float32, 12·n² at float64 with the float32 copy it keeps) and refuses, before allocating, what
the memory budget cannot hold (``shelfwise.recommend.memory``). The time grows as n³: a few seconds
at 5k items, minutes at 20k, so ``--model auto`` picks EASE only below ``AUTO_MAX_ITEMS``.

OpenBLAS's threaded Cholesky (``?potrf``, scipy-openblas 0.3.31) crashed the process with SIGSEGV on
a 37,355-item catalogue (also at 37,354, float32 and float64, upper and lower; not at ≤ 35,000 items
nor with one thread), so above ``THREADED_MAX_ITEMS`` the factorisation and inversion run on one
BLAS thread: slower, never a dead process.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.linalg as la
import scipy.sparse as sp
from pydantic import Field

from shelfwise.features.dataset import Dataset
from shelfwise.recommend.base import ModelConfig, ModelError, Recommender
from shelfwise.recommend.memory import MatrixShape

MAX_ITEMS = 40_000  # beyond this, n³ work takes hours on a few cores: refused whatever the memory
THREADED_MAX_ITEMS = 32_768  # the largest catalogue run with threaded potrf/potri (see the docstring)
AUTO_MAX_ITEMS = 20_000  # `--model auto` chooses EASE up to here (a few minutes on 2 cores)


class EASEConfig(ModelConfig):
    l2: float = Field(default=250.0, gt=0, description="λ, the ridge penalty")
    precision: Literal["float32", "float64"] = Field(
        default="float32", description="float32 halves memory and time; λ keeps the system well conditioned"
    )


class EASERecommender(Recommender):
    name = "ease"
    Config = EASEConfig
    config: EASEConfig

    def _fit_bytes(self, shape: MatrixShape) -> int:
        n = shape.n_items
        itemsize = 4 if self.config.precision == "float32" else 8
        dense = n * n * itemsize + (4 * n * n if itemsize == 8 else 0)  # + the float32 copy kept
        # the sparse Gram matrix XᵀX before it is made dense, and LAPACK's blocks
        return dense + 3 * shape.co_occurrences() * 12 + 64 * n * 256

    def _memory_note(self, shape: MatrixShape) -> tuple[str, str]:
        n = shape.n_items
        return (
            f"a dense {n:,}×{n:,} {self.config.precision} matrix",
            "use als or itemknn for this catalogue, or --model auto",
        )

    def _fit(self, dataset: Dataset, matrix: sp.csr_matrix) -> None:
        n = matrix.shape[1]
        if n > MAX_ITEMS:
            raise ModelError(
                f"EASE needs a dense {n:,}×{n:,} matrix and n³ work",
                hint=f"use itemknn or als above {MAX_ITEMS:,} items",
            )
        from threadpoolctl import threadpool_limits

        dtype = np.float32 if self.config.precision == "float32" else np.float64
        potrf, potri = la.get_lapack_funcs(("potrf", "potri"), dtype=dtype)
        x = sp.csr_matrix(matrix, dtype=dtype)
        # Fortran order: LAPACK then works in place instead of on a copy (n² bytes saved)
        gram = np.asfortranarray((x.T @ x).toarray())
        gram[np.diag_indices(n)] += self.config.l2
        threads = 1 if n > THREADED_MAX_ITEMS else None
        with threadpool_limits(threads, user_api="blas"):
            # P = G⁻¹ through Cholesky (G is symmetric positive definite): half the work of inv()
            c, info = potrf(gram, lower=False, overwrite_a=True, clean=False)
            if info != 0:
                raise ModelError(f"EASE: Cholesky failed (info={info})", hint="raise l2")
            p, info = potri(c, lower=False, overwrite_c=True)
            if info != 0:
                raise ModelError(f"EASE: inversion failed (info={info})", hint="raise l2")
        del gram, c
        _symmetrise_upper(p)
        # LAPACK left P in Fortran order; P is symmetric now, so its transpose is the same matrix
        # in C order (a view, no copy). Scoring reads B by rows (a sparse history times B): on a
        # Fortran-ordered B each row is strided by n floats, ~400x slower at 4k items (1.1 s
        # against 2.7 ms a request, measured)
        p = p.T
        p /= -np.diag(p).copy()[None, :]
        p[np.diag_indices(n)] = 0.0
        self.b = p.astype(np.float32, copy=False)

    def _score(self, histories: sp.csr_matrix, users: np.ndarray) -> np.ndarray:
        return np.asarray(sp.csr_matrix(histories, dtype=np.float32) @ self.b, dtype=np.float32)

    def _similar_scores(self, items: np.ndarray) -> np.ndarray:
        return self.b[items]

    def _reasons(self, history: np.ndarray, items: np.ndarray) -> list[str]:
        if not len(history):
            return [self.reason_default] * len(items)
        block = _cells(self.b, np.asarray(history, np.int64), np.asarray(items, np.int64))
        best = block.argmax(axis=0)
        return [
            f"similar to {self._label(history[b])}" if block[b, j] > 0 else self.reason_default
            for j, b in enumerate(best)
        ]

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"b": self.b}

    def _set_arrays(self, a: dict[str, np.ndarray]) -> None:
        # versions saved before the fit kept B in C order hold it in Fortran order: rows must be
        # contiguous for scoring (see ``_fit``)
        self.b = np.ascontiguousarray(a["b"])


def _cells(b: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``b[np.ix_(rows, cols)]``, the same values: one ``take`` on the flat matrix, about 6x faster
    than the two-array fancy index on a long history (1.7 against 0.27 ms for 1,791 history items
    and 40 items at 3,921 items, measured)."""
    if not b.flags.c_contiguous:
        return b[np.ix_(rows, cols)]
    return b.reshape(-1).take(rows[:, None] * b.shape[1] + cols[None, :])


def _symmetrise_upper(p: np.ndarray, block: int = 2048) -> None:
    """Copy the upper triangle onto the lower one in place, a block of columns at a time (the
    ``triu(p) + triu(p, 1).T`` one-liner needs three more n×n matrices)."""
    n = p.shape[0]
    for start in range(0, n, block):
        end = min(n, start + block)
        p[end:, start:end] = p[start:end, end:].T
        d = p[start:end, start:end]
        lower = np.tril_indices(end - start, -1)
        d[lower] = d.T[lower]
