"""Query-time kernels over a term-major matrix of precomputed, field-weighted BM25 weights.

A keyword index keeps one CSR matrix with a row per term and a column per slot whose values are
``sum over fields of weight(field) * bm25(field, term, slot)``, so a query's score for every slot
is the sum of a few rows. The kernels walk those rows once (numba when installed, numpy
otherwise): ``match`` returns every slot with a positive score, ``score_slots`` scores given slots
by binary search in each row (postings are sorted by slot), ``top_k`` selects the best ``k``.

Pure functions over arrays, like bm25s's own scorer.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def _numba_jit() -> Any:
    try:
        from numba import njit
    except ImportError:  # pragma: no cover - numba is a declared dependency
        return None

    def compile_(fn: Any) -> Any:
        try:
            return njit(cache=True, nogil=True)(fn)  # nogil: shards scored in threads run at once
        except RuntimeError:  # pragma: no cover - no writable cache directory: compile per process
            return njit(nogil=True)(fn)

    return compile_


_jit = _numba_jit()


def _accumulate_py(
    indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, terms: np.ndarray, scratch: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    slots = np.concatenate([indices[indptr[t] : indptr[t + 1]] for t in terms])
    values = np.concatenate([data[indptr[t] : indptr[t + 1]] for t in terms])
    unique, inverse = np.unique(slots, return_inverse=True)
    sums = np.zeros(len(unique), dtype=np.float32)
    np.add.at(sums, inverse, values)
    return unique.astype(np.int32), sums


def _accumulate_nb(
    indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, terms: np.ndarray, scratch: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    # scratch is all zeros on entry and on exit; BM25 weights are positive, so a zero marks
    # a slot not yet touched by this query
    total = 0
    for t in terms:
        total += indptr[t + 1] - indptr[t]
    touched = np.empty(total, dtype=np.int32)
    n = 0
    for t in terms:
        for j in range(indptr[t], indptr[t + 1]):
            slot = indices[j]
            if scratch[slot] == 0.0:
                touched[n] = slot
                n += 1
            scratch[slot] += data[j]
    values = np.empty(n, dtype=np.float32)
    for i in range(n):
        values[i] = scratch[touched[i]]
        scratch[touched[i]] = 0.0
    return touched[:n], values


def _score_slots_py(
    indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, terms: np.ndarray, slots: np.ndarray
) -> np.ndarray:
    out = np.zeros(len(slots), dtype=np.float32)
    for t in terms:
        row = indices[indptr[t] : indptr[t + 1]]
        pos = np.searchsorted(row, slots)
        hit = (pos < len(row)) & (row[np.minimum(pos, len(row) - 1)] == slots) if len(row) else pos < 0
        out[hit] += data[indptr[t] + pos[hit]]
    return out


def _score_slots_nb(
    indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, terms: np.ndarray, slots: np.ndarray
) -> np.ndarray:
    out = np.zeros(len(slots), dtype=np.float32)
    for t in terms:
        lo0, hi0 = indptr[t], indptr[t + 1]
        for i in range(len(slots)):
            target = slots[i]
            lo, hi = lo0, hi0
            while lo < hi:
                mid = (lo + hi) >> 1
                if indices[mid] < target:
                    lo = mid + 1
                else:
                    hi = mid
            if lo < hi0 and indices[lo] == target:
                out[i] += data[lo]
    return out


if _jit is not None:
    _accumulate = _jit(_accumulate_nb)
    _score_slots = _jit(_score_slots_nb)
    BACKEND = "numba"
else:  # pragma: no cover
    _accumulate = _accumulate_py
    _score_slots = _score_slots_py
    BACKEND = "numpy"

_local = threading.local()


def _scratch(n: int) -> np.ndarray:
    """A per-thread zeroed buffer of at least ``n`` floats (the kernel leaves it zeroed)."""
    buf = getattr(_local, "buf", None)
    if buf is None or len(buf) < n:
        buf = np.zeros(max(n, 1024), dtype=np.float32)
        _local.buf = buf
    return buf


class TermMatrix:
    """Rows = terms, columns = slots; CSR arrays (``indptr`` int64, ``indices`` int32 sorted within a
    row, ``data`` float32 > 0) plus the term → row map."""

    def __init__(
        self,
        vocab: Mapping[str, int],
        indptr: np.ndarray,
        indices: np.ndarray,
        data: np.ndarray,
        n_slots: int,
    ) -> None:
        self.vocab = dict(vocab)
        self.indptr = np.ascontiguousarray(indptr, dtype=np.int64)
        self.indices = np.ascontiguousarray(indices, dtype=np.int32)
        self.data = np.ascontiguousarray(data, dtype=np.float32)
        self.n_slots = n_slots

    @classmethod
    def merge(
        cls,
        parts: Sequence[tuple[float, Mapping[str, int], np.ndarray, np.ndarray, np.ndarray]],
        n_slots: int,
    ) -> TermMatrix:
        """Sum ``weight * matrix`` over per-field term-major matrices ``(weight, vocab, indptr, indices,
        data)`` whose vocabularies differ, into one matrix over the union vocabulary."""
        import scipy.sparse as sp

        vocab: dict[str, int] = {}
        for _, field_vocab, *_ in parts:
            for term in field_vocab:
                vocab.setdefault(term, len(vocab))
        rows, cols, vals = [], [], []
        for weight, field_vocab, indptr, indices, data in parts:
            if weight <= 0 or len(data) == 0:
                continue
            row_of = np.empty(len(field_vocab), dtype=np.int64)
            for term, tid in field_vocab.items():
                row_of[tid] = vocab[term]
            counts = np.diff(np.asarray(indptr, dtype=np.int64))
            rows.append(np.repeat(row_of[: len(counts)], counts))
            cols.append(np.asarray(indices, dtype=np.int32))
            vals.append(np.asarray(data, dtype=np.float32) * np.float32(weight))
        if not rows:
            return cls(vocab, np.zeros(len(vocab) + 1, dtype=np.int64), np.zeros(0), np.zeros(0), n_slots)
        matrix = sp.csr_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
            shape=(len(vocab), n_slots),
            dtype=np.float32,
        )
        matrix.sum_duplicates()  # also sorts each row's columns
        return cls(vocab, matrix.indptr, matrix.indices, matrix.data, n_slots)

    def term_ids(self, tokens: Sequence[str]) -> np.ndarray:
        """Rows of the known tokens; a repeated query word counts again, as in bm25s and rank_bm25."""
        vocab = self.vocab
        return np.array([vocab[t] for t in tokens if t in vocab], dtype=np.int64)

    def match(self, terms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every slot with a positive score and its score (in no particular order)."""
        if len(terms) == 0:
            return np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.float32)
        return _accumulate(self.indptr, self.indices, self.data, terms, _scratch(self.n_slots))

    def score_slots(self, terms: np.ndarray, slots: np.ndarray) -> np.ndarray:
        """The score of each of ``slots`` (0 where no term occurs); slots past the matrix score 0."""
        slots = np.asarray(slots, dtype=np.int32)
        if len(terms) == 0 or len(slots) == 0:
            return np.zeros(len(slots), dtype=np.float32)
        return _score_slots(self.indptr, self.indices, self.data, terms, slots)

    def nbytes(self) -> int:
        return int(self.indptr.nbytes + self.indices.nbytes + self.data.nbytes)


def top_k(scores: np.ndarray, k: int, *, ties: np.ndarray | None = None) -> np.ndarray:
    """Positions of the ``k`` highest ``scores``, best first; equal scores in ascending ``ties``
    (default: position) so results do not depend on the order matches were found in."""
    n = len(scores)
    if n == 0 or k <= 0:
        return np.zeros(0, dtype=np.int64)
    if n > k:
        part = np.argpartition(-scores, k - 1)[:k]
        # argpartition keeps an arbitrary few of the items tied with the k-th score: keep the
        # smallest tie keys instead, so the top k does not depend on the order matches came in
        # (a sharded index merges its shards' matches in another order: shelfwise.search.shards)
        edge = scores[part].min()
        at = np.flatnonzero(scores == edge)
        if len(at) > 1:
            above = np.flatnonzero(scores > edge)
            at = at[np.argsort(at if ties is None else ties[at], kind="stable")[: k - len(above)]]
            part = np.concatenate([above, at])
    else:
        part = np.arange(n)
    return part[np.lexsort((part if ties is None else ties[part], -scores[part]))]
