"""Keyword-side pseudo-relevance feedback: the expansion terms and their effect in the engine."""

from __future__ import annotations

import pytest

from shelfwise.data.schemas import Item
from shelfwise.search.dense import Encoder
from shelfwise.search.engine import SearchConfig, SearchEngine
from shelfwise.search.fusion import feedback_terms


def test_feedback_terms_weigh_words_of_the_best_documents_by_rarity() -> None:
    docs = [["ceramic", "mug", "coffee"], ["ceramic", "mug", "blue"], ["steel", "bottle", "blue"]]
    df = {"ceramic": 5, "mug": 40, "coffee": 30, "blue": 300, "steel": 20, "bottle": 25}
    terms = feedback_terms(
        docs, [3.0, 2.0, 0.1], query=["mug"], doc_freq=lambda t: df.get(t, 0), n_docs=1000, k=3
    )
    assert "mug" not in terms  # the query's own word is not an expansion
    assert next(iter(terms)) == "ceramic"  # in both strong documents and rare
    assert sum(terms.values()) == pytest.approx(1.0)
    assert len(terms) == 3
    # a word in more than a fifth of the catalogue is too common to say anything
    assert "blue" not in feedback_terms(docs, [1, 1, 1], query=[], doc_freq=df.get, n_docs=1000, k=10)


def test_feedback_terms_are_empty_without_documents_or_terms() -> None:
    assert feedback_terms([], [], query=["x"], doc_freq=lambda t: 1, n_docs=10, k=5) == {}
    assert feedback_terms([["a", "b"]], [1.0], query=[], doc_freq=lambda t: 1, n_docs=10, k=0) == {}
    # words the index does not know (df 0) are never proposed
    assert feedback_terms([["zz", "yy"]], [1.0], query=[], doc_freq=lambda t: 0, n_docs=10, k=5) == {}


def test_term_feedback_changes_the_ranking_and_brings_the_kind_forward(
    flipkart_1k: list[Item], encoder: Encoder
) -> None:
    items = flipkart_1k[:300]
    off = SearchEngine.build(items, SearchConfig(dense=True, term_feedback=0), encoder=encoder)
    on = SearchEngine.build(
        items, SearchConfig(dense=True, term_feedback=5, term_feedback_weight=0.5), encoder=encoder
    )
    query = "analog watch"
    a = off.search(query, k=20, mode="hybrid", facets=False).item_ids
    b = on.search(query, k=20, mode="hybrid", facets=False).item_ids
    assert a != b
    by_id = {it.item_id: it for it in items}
    watches = lambda ids: sum("watch" in (by_id[i].title or "").lower() for i in ids)  # noqa: E731
    assert watches(b) >= watches(a)
