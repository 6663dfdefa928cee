"""What a fit will cost in memory, known before it allocates anything.

Every model family says how many bytes its fit needs at its peak for a training matrix of a given
shape (``Recommender.fit_bytes``); ``Recommender.fit`` compares that with the process's budget
(``shelfwise.core.memory.memory_budget``: ``SHELFWISE_MEMORY_LIMIT`` or 80% of what is available)
and refuses, in one line with the estimate and what to do, before the first large allocation. A
process that would have died in the kernel's OOM killer (or, for EASE, inside OpenBLAS) gets a
``MemoryRefusedError`` instead.

The shape is cheap to read off a CSR matrix; ``item_pairs`` (Σ over shoppers of their item count
squared) bounds the entries of the item co-occurrence matrix XᵀX, which neighbourhood models build.

    >>> shape = MatrixShape(n_users=20_000, n_items=37_355, nnz=300_000)
    >>> shape.item_pairs == 300_000 ** 2 // 20_000 + 300_000
    True
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from shelfwise.core.errors import ShelfwiseError
from shelfwise.core.memory import DEFAULT_SHARE, available_bytes, format_bytes, memory_budget

# bytes per stored entry of a CSR matrix (float32 value + int32 column) and per COO entry while
# scipy builds one (row and column as int64, value, the sort's scratch)
CSR_ENTRY = 8
COO_ENTRY = 32


class MemoryRefusedError(ShelfwiseError):
    """A fit would need more memory than this process may use; refused before allocating."""

    exit_code = 2


def _uniform_pairs(n_rows: int, nnz: int) -> int:
    """Σ d² when ``nnz`` entries spread evenly over ``n_rows`` rows (a lower bound on the real
    one, which power-law data raises: pass the measured value when you have the matrix)."""
    return nnz * nnz // max(n_rows, 1) + nnz


@dataclass(frozen=True)
class MatrixShape:
    """The size of a users × items training matrix, as far as memory estimates need it."""

    n_users: int
    n_items: int
    nnz: int
    item_pairs: int = field(default=-1)  # Σ_u d_u²: bounds nnz(XᵀX); -1: assume an even spread
    user_pairs: int = field(default=-1)  # Σ_i d_i²: bounds nnz(XXᵀ)

    def __post_init__(self) -> None:
        if self.item_pairs < 0:
            object.__setattr__(self, "item_pairs", _uniform_pairs(self.n_users, self.nnz))
        if self.user_pairs < 0:
            object.__setattr__(self, "user_pairs", _uniform_pairs(self.n_items, self.nnz))

    @classmethod
    def of(cls, matrix: sp.csr_matrix) -> MatrixShape:
        m = sp.csr_matrix(matrix)
        per_user = np.diff(m.indptr).astype(np.int64)
        per_item = np.bincount(m.indices, minlength=m.shape[1]).astype(np.int64)
        return cls(
            n_users=int(m.shape[0]),
            n_items=int(m.shape[1]),
            nnz=int(m.nnz),
            item_pairs=int((per_user * per_user).sum()),
            user_pairs=int((per_item * per_item).sum()),
        )

    def co_occurrences(self) -> int:
        """An upper bound on the non-zeros of the item × item co-occurrence matrix."""
        return int(min(self.item_pairs, self.n_items * self.n_items))

    def describe(self) -> str:
        return f"{self.n_users:,} shoppers × {self.n_items:,} items, {self.nnz:,} interactions"


def shared_bytes(shape: MatrixShape) -> int:
    """What every fit holds besides the model's own arrays: the history and exclusion matrices (and
    the transient copies that build them), per-item attributes and popularity, per-user ids."""
    return 4 * shape.nnz * CSR_ENTRY + 2 * shape.nnz * COO_ENTRY + 64 * shape.n_items + 16 * shape.n_users


def check_memory(
    model: str, need: int, shape: MatrixShape, *, what: str = "", hint: str = "", budget: int | None = None
) -> None:
    """Raise ``MemoryRefusedError`` when ``need`` bytes exceed the budget (see the module docstring)."""
    limit = memory_budget() if budget is None else budget
    if need <= limit:
        return
    from os import environ

    if environ.get("SHELFWISE_MEMORY_LIMIT"):
        allowed = f"SHELFWISE_MEMORY_LIMIT allows {format_bytes(limit)}"
    elif budget is not None:
        allowed = f"the budget is {format_bytes(limit)}"
    else:
        allowed = (
            f"this process may plan on {format_bytes(limit)} "
            f"({DEFAULT_SHARE:.0%} of the {format_bytes(available_bytes())} available)"
        )
    detail = f" ({what})" if what else ""
    raise MemoryRefusedError(
        f"{model}: fitting {shape.describe()} needs about {format_bytes(need)}{detail}; {allowed}",
        hint=(hint + "; " if hint else "")
        + "or free memory / set SHELFWISE_MEMORY_LIMIT if the estimate is too cautious",
    )
