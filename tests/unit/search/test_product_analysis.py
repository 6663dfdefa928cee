"""Sizes, fractions, dimensions and model numbers stay searchable (issue 15), and the per-query
fusion weight leans on keyword where the semantic side is weak."""

from __future__ import annotations

import math

import numpy as np
import pytest

from shelfwise.data.schemas import Item
from shelfwise.features.text import Analyzer, AnalyzerConfig
from shelfwise.search.analysis import ProductAnalyzer, make_analyzer, product_terms
from shelfwise.search.dense import Encoder
from shelfwise.search.engine import SearchConfig, SearchEngine
from shelfwise.search.fusion import adaptive_alpha, agreement, query_class


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1/2 in. PVC pipe", {"1/2", "1/2in"}),
        ('3/4" ball valve', {"3/4", "3/4in"}),
        ("3/4 inch ball valve", {"3/4", "3/4in"}),
        ("photo frame 8x10", set()),  # the word itself is the term
        ("photo frame 8 X 10", {"8x10"}),
        ("photo frame 8 x 10", {"8x10"}),
        ("Sony XR-200 speaker", {"xr200"}),
        ("sony xr 200", {"xr200"}),
        ("Sony XR.200", {"xr200"}),
        ("shampoo 500 ml", {"500ml"}),
        ("2 Ltr bottle", {"2l"}),
    ],
)
def test_product_terms(text: str, expected: set[str]) -> None:
    assert expected <= set(product_terms(text)), product_terms(text)


def test_plain_words_are_analysed_as_before() -> None:
    plain, product = Analyzer(), ProductAnalyzer()
    for text in ("Running Shoes for Men", "red cotton kurta", "男士跑步鞋"):
        assert product.tokens(text) == plain.tokens(text)
    # the product terms come after the ordinary tokens, which are unchanged
    text = 'PVC pipe 3/4" XR-200'
    assert product.tokens(text)[: len(plain.tokens(text))] == plain.tokens(text)
    assert product_terms("size 9 shoes for men") == []  # "size 9" is not a model number


def test_make_analyzer_follows_the_saved_config() -> None:
    assert type(make_analyzer(AnalyzerConfig())) is Analyzer
    assert type(make_analyzer(AnalyzerConfig(product_terms=True))) is ProductAnalyzer
    assert SearchConfig().analyzer.product_terms  # search indexes use it by default


def _items() -> list[Item]:
    titles = {
        "a": 'Ball valve 1/2" brass',
        "b": 'Ball valve 3/4" brass',
        "c": "Sony XR-200 portable speaker",
        "d": "Sony XR-300 portable speaker",
        "e": "Photo frame 8 x 10 inch wooden",
        "f": "Photo frame 5 x 7 inch wooden",
    }
    return [Item(item_id=k, title=v) for k, v in titles.items()]


def test_sizes_and_model_numbers_find_the_right_item() -> None:
    engine = SearchEngine.build(_items(), SearchConfig(dense=False, spelling=False))
    first = {
        q: engine.search(q, k=3, mode="bm25", facets=False).item_ids[0]
        for q in [
            "1/2 in. ball valve",
            '3/4" valve',
            "3/4 inch valve",
            "xr200",
            "XR-200 speaker",
            "xr 300",
            "frame 8x10",
            "5x7 frame",
        ]
    }
    assert first == {
        "1/2 in. ball valve": "a",
        '3/4" valve': "b",
        "3/4 inch valve": "b",
        "xr200": "c",
        "XR-200 speaker": "c",
        "xr 300": "d",
        "frame 8x10": "e",
        "5x7 frame": "f",
    }
    # the general analyser cannot tell them apart: the reason this exists
    plain = SearchEngine.build(_items(), SearchConfig(dense=False, spelling=False, analyzer=AnalyzerConfig()))
    assert plain.search("xr200", k=3, mode="bm25", facets=False).item_ids == []


def test_query_classes() -> None:
    assert query_class(["xr200"], 1) == "model"
    assert query_class(["shoe"], 1) == "short"
    assert query_class(["a", "b", "c"], 3) == "medium"
    assert query_class(["a"] * 6, 6) == "long"


def test_adaptive_alpha_backs_off_to_keyword_when_dense_is_weak_and_disagrees() -> None:
    kw = np.array([9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    dense_off = np.r_[np.zeros(10), np.linspace(0.4, 0.3, 10)]  # weak and elsewhere
    dense_on = np.r_[np.linspace(0.8, 0.6, 10), np.zeros(10)]  # strong and the same items
    assert agreement(kw, dense_off) == 0.0
    assert agreement(kw, dense_on) == 1.0
    rules = {"model_alpha": 0.7, "long_shift": -0.1, "low_agreement": 0.2}
    doubted, why = adaptive_alpha(kw, dense_off, tokens=["lamp"], words=1, alpha=0.3, **rules)
    trusted, _ = adaptive_alpha(kw, dense_on, tokens=["lamp"], words=1, alpha=0.3, **rules)
    assert doubted == 0.8 and why["class"] == "short"
    assert trusted == 0.3
    assert adaptive_alpha(kw, dense_off, tokens=["lamp"], words=1, alpha=0.3)[0] == 0.3  # rules off
    model, _ = adaptive_alpha(kw, dense_on, tokens=["xr200"], words=1, alpha=0.3, **rules)
    long_, _ = adaptive_alpha(kw, dense_on, tokens=list("abcdef"), words=6, alpha=0.3, **rules)
    assert model == 0.7 and long_ == pytest.approx(0.2)


def test_a_semantic_side_that_knows_nothing_of_the_shop_degrades_to_keyword(
    flipkart_1k: list[Item], encoder: Encoder
) -> None:
    """Calibration on the catalogue's own phrases: item vectors shuffled (the model "understands"
    nothing of this shop) -> trust ~0 -> adaptive hybrid returns the keyword ranking; the same
    vectors in place -> trusted, and the fixed blend is what the adaptive one does."""
    real = SearchEngine.build(flipkart_1k, SearchConfig(), encoder=encoder)
    assert real.dense is not None and real.dense_agreement is not None
    assert real.dense_agreement > 0.15 and real.dense_trust() == 1.0
    shuffled = real.dense.vectors[np.random.default_rng(0).permutation(len(flipkart_1k))]
    broken = SearchEngine.build(flipkart_1k, SearchConfig(), encoder=encoder, vectors=shuffled)
    assert broken.dense_agreement is not None and broken.dense_agreement < 0.02
    assert broken.dense_trust() < 0.15
    for query in ("wrist watch for men", "coffee mug", "cotton kurta"):
        keyword = broken.search(query, k=10, mode="bm25", facets=False).item_ids
        if broken.dense_trust() == 0.0:
            assert broken.search(query, k=10, mode="hybrid", facets=False).item_ids == keyword
        broken.config.fusion = "fixed"
        fixed = broken.search(query, k=10, mode="hybrid", facets=False).item_ids
        broken.config.fusion = "adaptive"
        adaptive = broken.search(query, k=10, mode="hybrid", facets=False).item_ids
        assert len(set(adaptive) & set(keyword)) > len(set(fixed) & set(keyword))
        # trusted: adaptive fusion is the fixed blend at the query class's own keyword share
        parsed = real.understanding.parse(query)
        cls = query_class(real._query_tokens(parsed), len(parsed.text.split()))
        share = real.config.class_alpha.get(cls, real.config.alpha)
        real.config.fusion, real.config.alpha = "fixed", share
        fixed_real = real.search(query, k=10, mode="hybrid", facets=False).item_ids
        real.config.fusion, real.config.alpha = "adaptive", SearchConfig().alpha
        assert real.search(query, k=10, mode="hybrid", facets=False).item_ids == fixed_real


def test_facet_index_counts_equal_the_per_item_pass(flipkart_1k: list[Item]) -> None:
    """The vectorised facet counts give the per-item pass's counts; equal counts are listed in the
    order the values first appear in the catalogue (not in the order matches happened to arrive)."""
    from shelfwise.search.facets import ATTRIBUTE_FACETS, facet_counts

    engine = SearchEngine.build(flipkart_1k, SearchConfig(dense=False))
    first_seen = {}
    for it in flipkart_1k:
        parts = (it.category or "").split(" > ") if it.category else []
        for d in range(1, min(len(parts), 3) + 1):
            first_seen.setdefault(("category", " > ".join(parts[:d])), len(first_seen))
        if it.brand:
            first_seen.setdefault(("brand", it.brand), len(first_seen))
    rng = np.random.default_rng(3)
    for size in (0, 1, 7, 150, len(flipkart_1k)):
        slots = rng.choice(len(flipkart_1k), size=size, replace=False)
        got = engine._facets.counts(
            slots, price=engine._price, available=engine._available, buckets=engine._buckets
        )
        items = [engine._items[int(s)] for s in slots]
        want = facet_counts([i for i in items if i is not None], buckets=engine._buckets, top=10**6)
        for facet in ("category", "brand"):
            want[facet].sort(key=lambda r, f=facet: (-r["count"], first_seen[(f, r["value"])]))
            want[facet] = want[facet][:20]
        assert got["price"] == want["price"]
        # the index also counts the annotated attributes the catalogue has (the per-item pass
        # predates them): every other facet is equal, and no attribute facet counts more than the slots
        assert {k: v for k, v in got.items() if k in want} == want
        for name in set(got) - set(want):
            assert name in ATTRIBUTE_FACETS and sum(r["count"] for r in got[name]) <= size
    hit = engine.search("women shoes", k=5, mode="bm25")
    assert hit.facets["category"] and hit.total >= sum(r["count"] for r in hit.facets["availability"]) > 0


def test_facet_price_buckets_with_gaps_unknown_negative_and_infinite_prices() -> None:
    """The price facet's bucket pass equals the per-item pass where a price falls in no bucket:
    unknown, below the first bucket, in a gap between buckets, or infinite."""
    from types import SimpleNamespace

    from shelfwise.search.facets import LARGE_MATCH, FacetIndex, facet_counts

    rng = np.random.default_rng(5)
    values = [None, -3.0, 0.0, 5.0, 9.999, 10.0, 15.0, 20.0, 49.0, 50.0, 1e9, math.inf]
    n = LARGE_MATCH + 600  # match sets on both sides of the switch between the two bucket passes
    prices = [values[i] for i in rng.integers(0, len(values), n)]
    items = [
        SimpleNamespace(category=None, brand=None, price=p, available=True, attributes={}) for p in prices
    ]
    index = FacetIndex()
    index.extend(items)  # type: ignore[arg-type]
    price = np.array([np.nan if p is None else p for p in prices])
    for buckets in ([(0.0, 10.0), (20.0, 50.0), (50.0, math.inf)], [(0.0, 10.0), (10.0, 50.0)]):
        for size in (0, 1, 37, 400, n):
            slots = rng.choice(n, size=size, replace=False)
            got = index.counts(slots, price=price, available=np.ones(n, bool), buckets=buckets)
            want = facet_counts([items[int(s)] for s in slots], buckets=buckets)  # type: ignore[misc]
            assert got["price"] == want["price"], (buckets, size)


def test_parsed_queries_are_cached_but_never_shared(keyword_engine: SearchEngine) -> None:
    first = keyword_engine.understanding.parse("red shoes under 500")
    first.colours.append("mutated")
    again = keyword_engine.understanding.parse("red shoes under 500")
    assert again.colours == ["red"] and again.price_max == 500
