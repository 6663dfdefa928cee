"""The merged field-weighted BM25 matrix scores exactly what per-field bm25s scoring does, on real data."""

from __future__ import annotations

import numpy as np
import pytest

from shelfwise.data.schemas import Item
from shelfwise.search import scoring
from shelfwise.search.documents import document_fields
from shelfwise.search.keyword import KeywordIndex

QUERIES = ["gold ring", "dog shampoo", "women's cotton kurta", "ring ring gold", "sicons", "zzqx", "mug"]


@pytest.fixture(scope="module")
def index_with_delta(flipkart_1k: list[Item]) -> KeywordIndex:
    index = KeywordIndex()
    index.build([document_fields(it) for it in flipkart_1k[:900]])
    for slot, item in enumerate(flipkart_1k[900:], start=900):
        index.add(slot, document_fields(item))  # searchable at once, in the delta segment
    return index


def _reference(index: KeywordIndex, tokens: list[str], n: int) -> np.ndarray:
    """Weighted sum of each field's own bm25s scores, plus the delta segment."""
    out = np.zeros(n, dtype=np.float64)
    for field, weight in index.weights.items():
        seg = index._fields.get(field)
        ids = [seg.vocab[t] for t in tokens if seg is not None and t in seg.vocab]
        if ids:
            out[: index.n_main] += weight * np.asarray(seg.retriever.get_scores_from_ids(ids))
    for slot, value in index._delta_match(tokens).items():
        out[slot] += value
    return out


@pytest.mark.parametrize("query", QUERIES)
def test_merged_matrix_scores_like_per_field_bm25s(
    index_with_delta: KeywordIndex, flipkart_1k: list[Item], query: str
) -> None:
    n = len(flipkart_1k)
    tokens = index_with_delta.query_tokens(query)
    expected = _reference(index_with_delta, tokens, n)
    assert np.allclose(index_with_delta.scores(tokens, n), expected, rtol=1e-5, atol=1e-5)

    slots, values = index_with_delta.match(tokens)
    assert set(slots.tolist()) == set(np.flatnonzero(expected > 0).tolist())
    assert np.allclose(values, expected[slots], rtol=1e-5, atol=1e-5)
    some = np.arange(0, n, 7)
    assert np.allclose(index_with_delta.score_slots(tokens, some), expected[some], rtol=1e-5, atol=1e-5)

    top, top_scores = index_with_delta.top(tokens, 10)
    want = min(10, int((expected > 0).sum()))
    assert len(top) == want
    assert np.all(np.diff(top_scores) <= 0)
    assert np.allclose(top_scores, np.sort(expected)[::-1][:want], rtol=1e-5, atol=1e-5)


def test_numpy_fallback_matches_the_compiled_kernels(index_with_delta: KeywordIndex) -> None:
    matrix = index_with_delta._merged
    assert matrix is not None
    terms = matrix.term_ids(index_with_delta.query_tokens("gold ring necklace for women"))
    scratch = np.zeros(matrix.n_slots, dtype=np.float32)
    slots_nb, values_nb = matrix.match(terms)
    slots_py, values_py = scoring._accumulate_py(matrix.indptr, matrix.indices, matrix.data, terms, scratch)
    order = np.argsort(slots_nb)
    assert np.array_equal(slots_nb[order], slots_py)
    assert np.allclose(values_nb[order], values_py, rtol=1e-6)
    probe = np.arange(0, matrix.n_slots, 3, dtype=np.int32)
    assert np.allclose(
        matrix.score_slots(terms, probe),
        scoring._score_slots_py(matrix.indptr, matrix.indices, matrix.data, terms, probe),
        rtol=1e-6,
    )
    # the per-thread scratch buffer is left zeroed: a second query is not polluted by the first
    again, values_again = matrix.match(terms)
    assert np.array_equal(again, slots_nb) and np.array_equal(values_again, values_nb)


def test_top_k_orders_ties_by_the_given_key() -> None:
    scores = np.array([1.0, 3.0, 3.0, 2.0, 3.0], dtype=np.float32)
    slots = np.array([50, 40, 30, 20, 10])
    assert slots[scoring.top_k(scores, 3, ties=slots)].tolist() == [10, 30, 40]
    assert scoring.top_k(scores, 2).tolist() == [1, 2]
    assert scoring.top_k(scores, 0).tolist() == []
    assert scoring.top_k(np.zeros(0, dtype=np.float32), 5).tolist() == []
