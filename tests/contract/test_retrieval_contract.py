"""The retrieve-then-rank contract (``shelfwise.features.retrieval``), one suite over every
implementation: search's keyword and semantic retrievers and its fusion ranker (300 real Flipkart
products, the real embedding model), the recommenders as retrievers and the hybrid's learned ranker
(the first lines of UCI Online Retail)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pytest

from shelfwise.features.retrieval import Candidates, Ranked, Ranker, Retriever, union_of
from shelfwise.recommend import model_from_config
from shelfwise.recommend.hybrid import HybridRecommender
from shelfwise.recommend.stages import RecommenderRetriever, ShopperQuery, hybrid_stages
from shelfwise.search.dense import Encoder
from shelfwise.search.documents import read_dataset
from shelfwise.search.engine import SearchConfig, SearchEngine
from shelfwise.search.stages import DenseRetriever, FusionRanker, KeywordRetriever, SearchQuery
from tests.unit.recommend.slices import retail


@dataclass
class Case:
    """One implementation with the queries it is asked, and what a query forbids it to return."""

    name: str
    retrievers: list[Retriever[Any]]
    ranker: Ranker[Any] | None
    queries: list[Any]
    forbidden: Callable[[Any], set[int]]  # ids a query excludes (filtered out, already had)
    only_from_candidates: bool = True  # False: the ranker may search again (pseudo-relevance feedback)


@pytest.fixture(scope="module")
def search_engine() -> SearchEngine:
    return SearchEngine.build(read_dataset("flipkart-1k")[:300], SearchConfig(), encoder=Encoder())


def _search_queries(engine: SearchEngine) -> list[SearchQuery]:
    n = len(engine.item_ids_by_slot())
    out = []
    for text, allowed in [
        ("analog watch for men", np.ones(n, bool)),
        ("cotton shirt", np.arange(n) % 2 == 0),  # a filter: only even slots may come back
        ("chronometer", np.ones(n, bool)),  # no shared words: the semantic side alone
    ]:
        parsed = engine.understanding.parse(text)
        vector = engine.encoder.encode_query(text) if engine.encoder is not None else None
        out.append(SearchQuery(parsed, engine.analyzer.tokens(parsed.text), allowed, vector))
    return out


def _search_case(engine: SearchEngine, *, feedback: bool) -> Case:
    assert engine.dense is not None
    semantic = DenseRetriever(engine.dense, min_similarity=engine.config.min_similarity)
    config = engine.config if feedback else engine.config.model_copy(update={"feedback": 0})
    return Case(
        name=f"search, fusion{' with feedback' if feedback else ''}",
        retrievers=[KeywordRetriever(engine.keyword), semantic],
        ranker=FusionRanker(engine.keyword, semantic, config, trust=engine.dense_trust(), fetch=50),
        queries=_search_queries(engine),
        forbidden=lambda q: set(np.flatnonzero(~q.allowed).tolist()),
        only_from_candidates=not feedback,
    )


@pytest.fixture(scope="module")
def hybrid() -> HybridRecommender:
    ds = retail(8_000)
    config = {
        "model": "hybrid",
        "retrievers": [{"model": "itemknn", "neighbours": 20}, {"model": "popular-decay"}, {"model": "ease"}],
        "candidates": 20,
        "rounds": 40,
    }
    model = model_from_config(config).fit(ds)
    assert isinstance(model, HybridRecommender)
    return model


def _shopper_queries(model: HybridRecommender) -> list[ShopperQuery]:
    history = model.state.history
    busiest = int(np.argmax(np.diff(history.indptr)))
    some = int(np.flatnonzero(np.diff(history.indptr))[0])
    return [
        ShopperQuery(history[busiest].indices.astype(np.int64), busiest),
        ShopperQuery(history[some].indices.astype(np.int64), some),
        ShopperQuery(history[some].indices[:1].astype(np.int64), -1),  # a session, no account
        ShopperQuery(),  # a stranger: nothing known
    ]


@pytest.fixture(scope="module", params=["search", "search-feedback", "hybrid", "single-models"])
def case(request: pytest.FixtureRequest) -> Case:
    if request.param.startswith("search"):
        return _search_case(
            request.getfixturevalue("search_engine"), feedback=request.param.endswith("feedback")
        )
    model: HybridRecommender = request.getfixturevalue("hybrid")
    retrievers, ranker = hybrid_stages(model)
    if request.param == "single-models":  # any recommender is a retriever, not only the hybrid's
        retrievers = [RecommenderRetriever(model_from_config({"model": "itemknn"}).fit(retail(8_000)))]
    return Case(
        name=request.param,
        retrievers=list(retrievers),
        ranker=ranker if request.param == "hybrid" else None,
        queries=_shopper_queries(model),
        forbidden=lambda q: set(q.history.tolist()),
    )


K = 25


def test_a_retriever_returns_at_most_k_distinct_ids_best_first_under_its_own_name(case: Case) -> None:
    for retriever in case.retrievers:
        for query in case.queries:
            got = retriever.retrieve(query, K)
            assert isinstance(got, Candidates) and got.source == retriever.name
            assert len(got) <= K and len(set(got.ids.tolist())) == len(got)
            assert np.all(np.diff(got.scores) <= 1e-6), (case.name, retriever.name)
            assert not set(got.ids.tolist()) & case.forbidden(query), (case.name, retriever.name)


def test_a_retriever_asked_for_more_returns_a_superset_start(case: Case) -> None:
    for retriever in case.retrievers:
        query = case.queries[0]
        few, more = retriever.retrieve(query, 5), retriever.retrieve(query, K)
        assert set(few.ids.tolist()) <= set(more.ids.tolist()), (case.name, retriever.name)


def test_a_ranker_orders_the_union_keeps_every_source_and_explains_each_result(case: Case) -> None:
    if case.ranker is None:
        pytest.skip(f"{case.name}: retrievers only")
    for query in case.queries:
        candidates = [r.retrieve(query, K) for r in case.retrievers]
        ranked = case.ranker.rank(query, candidates)
        assert isinstance(ranked, Ranked)
        ids = ranked.ids.tolist()
        assert len(set(ids)) == len(ids) and np.all(np.diff(ranked.scores) <= 1e-6), case.name
        assert not set(ids) & case.forbidden(query), case.name
        if case.only_from_candidates:
            assert set(ids) == set(union_of(candidates).tolist()), case.name
        # candidates carry their source: every ranked id keeps each retriever's own score
        assert set(ranked.sources) <= {c.source for c in candidates}
        assert all(len(scores) == len(ids) for scores in ranked.sources.values())
        for c in candidates:
            if c.source in ranked.sources:
                proposed = dict(zip(c.ids.tolist(), c.scores.tolist(), strict=True))
                mine = ranked.sources[c.source]
                picks = [j for j, i in enumerate(ids) if i in proposed]
                if case.only_from_candidates and c.source != "bm25":  # bm25 is rescored on the union
                    assert np.allclose([mine[j] for j in picks], [proposed[ids[j]] for j in picks], atol=1e-5)
        reasons = case.ranker.explain(query, ranked)
        assert len(reasons) == len(ids) and all(isinstance(r, str) and r for r in reasons), case.name


def test_ranking_nothing_gives_nothing(case: Case) -> None:
    if case.ranker is None:
        pytest.skip(f"{case.name}: retrievers only")
    query = replace(case.queries[0]) if not isinstance(case.queries[0], ShopperQuery) else ShopperQuery()
    ranked = case.ranker.rank(query, [])
    assert len(ranked) == 0 and case.ranker.explain(query, ranked) == []
