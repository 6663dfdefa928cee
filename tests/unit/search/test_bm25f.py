"""BM25F keyword scoring: one saturation over the weighted, length-normalised fields, on real data."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from shelfwise.data.schemas import Item
from shelfwise.search.documents import document_fields
from shelfwise.search.engine import SearchConfig, SearchEngine
from shelfwise.search.keyword import KeywordIndex

QUERIES = ["gold ring", "dog shampoo", "women's cotton kurta", "ring ring gold", "sicons", "zzqx", "mug"]


@pytest.fixture(scope="module")
def bm25f_index(flipkart_1k: list[Item]) -> KeywordIndex:
    index = KeywordIndex(scoring="bm25f")
    index.build([document_fields(it) for it in flipkart_1k[:900]])
    for slot, item in enumerate(flipkart_1k[900:], start=900):
        index.add(slot, document_fields(item))
    return index


def _reference(index: KeywordIndex, docs: list[dict[str, str]], n_main: int, tokens: list[str]) -> np.ndarray:
    """BM25F written out term by term from the textbook formula. The main segment was scored with its
    own statistics when built; the delta segment with the main segment's lengths and the counts of
    both (what a search sees right after ``add``)."""
    tokenised = [{f: index.analyzer.tokens(d.get(f, "")) for f in index.weights} for d in docs]
    avgdl = {f: sum(len(t[f]) for t in tokenised[:n_main]) / n_main for f in index.weights}
    out = np.zeros(len(docs))
    for token in tokens:
        tf = np.zeros(len(docs))
        for i, fields in enumerate(tokenised):
            for f, w in index.weights.items():
                count = Counter(fields[f])[token]
                if count and avgdl[f] > 0:
                    tf[i] += w * count / (1 - index.b + index.b * len(fields[f]) / avgdl[f])
        df_main, df_all = int((tf[:n_main] > 0).sum()), int((tf > 0).sum())
        idf = np.full(len(docs), math.log(1 + (len(docs) - df_all + 0.5) / (df_all + 0.5)))
        idf[:n_main] = math.log(1 + (n_main - df_main + 0.5) / (df_main + 0.5))
        out += np.where(tf > 0, idf * tf / (index.k1 + tf), 0.0)
    return out


@pytest.mark.parametrize("query", QUERIES)
def test_bm25f_scores_match_the_formula_in_main_and_delta(
    bm25f_index: KeywordIndex, flipkart_1k: list[Item], query: str
) -> None:
    docs = [document_fields(it) for it in flipkart_1k]
    tokens = bm25f_index.query_tokens(query)
    expected = _reference(bm25f_index, docs, 900, tokens)
    got = bm25f_index.scores(tokens, len(docs))
    assert np.allclose(got, expected, rtol=1e-4, atol=1e-5)
    slots, _values = bm25f_index.match(tokens)
    assert set(slots.tolist()) == set(np.flatnonzero(expected > 0).tolist())


def test_a_word_repeated_across_fields_does_not_beat_more_query_words(flipkart_1k: list[Item]) -> None:
    # per-field sums pay "watch" once per field it is in; BM25F saturates it once
    docs = [
        {"title": "analog watch", "category": "watches watch", "attributes": "watch"},
        {"title": "leather strap analog watch", "category": "accessories"},
    ] + [document_fields(it) for it in flipkart_1k[:200]]
    tokens = KeywordIndex().query_tokens("leather watch")
    ranks = {}
    for scoring in ("fields", "bm25f"):
        index = KeywordIndex(scoring=scoring)
        index.build(docs)
        s = index.scores(tokens, len(docs))
        ranks[scoring] = s[1] > s[0]
    assert ranks["bm25f"]


def test_bm25f_engine_saves_and_loads_with_the_same_scores(tmp_path: Path, flipkart_1k: list[Item]) -> None:
    engine = SearchEngine.build(flipkart_1k[:300], SearchConfig(dense=False, scoring="bm25f"))
    before = [engine.search(q, k=10, mode="bm25", facets=False) for q in QUERIES]
    engine.save(tmp_path / "idx")
    loaded = SearchEngine.load(tmp_path / "idx")
    assert loaded.keyword.scoring == "bm25f"
    for q, b in zip(QUERIES, before, strict=True):
        after = loaded.search(q, k=10, mode="bm25", facets=False)
        assert after.item_ids == b.item_ids
        assert np.allclose([h.score for h in after.hits], [h.score for h in b.hits], rtol=1e-5)
