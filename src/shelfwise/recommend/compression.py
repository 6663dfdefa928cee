"""Smaller embeddings for serving: float16, or int8 with one scale per row (symmetric).

A model keeps a ``QuantizedMatrix`` in place of its float32 item matrix and multiplies through it;
the float32 copy is gone, so the memory saved is real. Scores are computed in float32 from the
dequantised rows (int8: ``codes · scale``), which keeps the ranking close to the original.

    >>> import numpy as np
    >>> m = np.random.default_rng(0).normal(size=(1000, 64)).astype(np.float32)
    >>> q = QuantizedMatrix.from_array(m, "int8")
    >>> round(m.nbytes / q.nbytes, 1), float(np.abs(q.dense() - m).max()) < 0.03
    (3.8, True)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Precision = Literal["float32", "float16", "int8"]
PRECISIONS: tuple[Precision, ...] = ("float32", "float16", "int8")


@dataclass(frozen=True)
class QuantizedMatrix:
    """A 2-D float matrix stored as float16, or int8 codes with a float32 scale per row."""

    codes: np.ndarray
    scale: np.ndarray | None  # int8 only: (rows,)
    precision: Precision

    @classmethod
    def from_array(cls, matrix: np.ndarray, precision: Precision) -> QuantizedMatrix:
        m = np.asarray(matrix, np.float32)
        if precision == "float32":
            return cls(np.ascontiguousarray(m), None, precision)
        if precision == "float16":
            return cls(m.astype(np.float16), None, precision)
        if precision == "int8":
            peak = np.abs(m).max(axis=1)
            scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
            codes = np.clip(np.rint(m / scale[:, None]), -127, 127).astype(np.int8)
            return cls(codes, scale, precision)
        raise ValueError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.codes.shape[0]), int(self.codes.shape[1]))

    @property
    def nbytes(self) -> int:
        return int(self.codes.nbytes + (self.scale.nbytes if self.scale is not None else 0))

    def rows(self, idx: np.ndarray) -> np.ndarray:
        """Some rows, as float32."""
        block = self.codes[idx].astype(np.float32)
        if self.scale is not None:
            block *= self.scale[idx][:, None]
        return block

    def dense(self) -> np.ndarray:
        """The whole matrix as float32 (a temporary copy)."""
        return self.rows(np.arange(self.shape[0]))

    def scores(self, vectors: np.ndarray) -> np.ndarray:
        """``vectors @ matrix.T`` in float32; int8 scales the product per column instead of
        dequantising every row first."""
        v = np.asarray(vectors, np.float32)
        if self.precision == "float32":
            return v @ self.codes.T
        product = v @ self.codes.T.astype(np.float32)
        if self.scale is not None:
            product *= self.scale[None, :]
        return product
