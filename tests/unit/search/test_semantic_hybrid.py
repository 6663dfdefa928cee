"""Semantic and hybrid retrieval with the real all-MiniLM-L6-v2 over 300 real Flipkart products."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from shelfwise.data.schemas import Item
from shelfwise.search.dense import Encoder
from shelfwise.search.engine import SearchConfig, SearchEngine
from shelfwise.search.fusion import blend, reciprocal_rank_fusion


@pytest.fixture(scope="module")
def hybrid_engine(flipkart_1k: list[Item], encoder: Encoder) -> SearchEngine:
    return SearchEngine.build(flipkart_1k[:300], SearchConfig(dense=True), encoder=encoder)


def test_embeddings_are_unit_vectors_and_similar_texts_are_close(encoder: Encoder) -> None:
    v = encoder.encode(["men's wrist watch", "analog watch for men", "dog shampoo"])
    assert v.shape == (3, 384)
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2


def test_dense_finds_products_without_shared_words(hybrid_engine: SearchEngine) -> None:
    # "chronometer" is in no field of these 300 products, so keyword search finds nothing
    assert hybrid_engine.search("chronometer", k=5, mode="bm25", facets=False).hits == []
    result = hybrid_engine.search("chronometer", k=5, mode="dense")
    assert sum("watch" in (h.item.title or "") for h in result.hits) >= 4
    result = hybrid_engine.search("chronometer", k=5, mode="hybrid")
    assert sum("watch" in (h.item.title or "") for h in result.hits) >= 4


def test_hybrid_keeps_exact_matches_on_top_and_adds_semantic_ones(
    hybrid_engine: SearchEngine, flipkart_1k: list[Item]
) -> None:
    target = next(it for it in flipkart_1k[:300] if it.title and "bellies" in it.title)
    for mode in ("hybrid", "rrf"):
        result = hybrid_engine.search(target.title or "", k=10, mode=mode)
        assert target.item_id in result.item_ids[:3]
        assert {"bm25", "dense"} <= set(result.hits[0].sources)


def test_new_items_are_found_by_meaning_at_once(flipkart_1k: list[Item], encoder: Encoder) -> None:
    engine = SearchEngine.build(flipkart_1k[:100], SearchConfig(dense=True), encoder=encoder)
    watch = next(it for it in flipkart_1k[300:] if "watch" in (it.title or "") and it.brand)
    engine.upsert([dataclasses.replace(watch, item_id="new-watch")])
    assert "new-watch" in engine.search(watch.title or "", k=3, mode="dense").item_ids
    engine.remove(["new-watch"])
    assert "new-watch" not in engine.search(watch.title or "", k=50, mode="dense").item_ids


def test_dense_index_saves_as_npy_and_loads(
    tmp_path: Path, hybrid_engine: SearchEngine, encoder: Encoder
) -> None:
    hybrid_engine.save(tmp_path / "idx")
    assert (tmp_path / "idx" / "dense" / "vectors.npy").exists()
    loaded = SearchEngine.load(tmp_path / "idx", encoder=encoder)
    for q in ("wristwatch", "shoes for women"):
        assert (
            loaded.search(q, k=5, mode="hybrid").item_ids
            == hybrid_engine.search(q, k=5, mode="hybrid").item_ids
        )


def test_fusion_arithmetic() -> None:
    fused = reciprocal_rank_fusion([[1, 2, 3], [3, 1]], k=60)
    assert max(fused, key=lambda s: fused[s]) == 1
    assert np.isclose(fused[3], 1 / 63 + 1 / 61)
    scores = blend(np.array([10.0, 5.0, 0.0]), np.array([0.2, 0.4, 0.6]), alpha=0.5)
    # each side divided by its best candidate; 0 stays 0 (not stretched to the candidates' minimum)
    assert np.allclose(scores, [(1 + 1 / 3) / 2, (0.5 + 2 / 3) / 2, 0.5])
    assert np.allclose(blend(np.array([2.0, 0.0]), np.array([-0.3, 0.5]), alpha=0.5), [0.5, 0.5])


def test_dense_floor_spreads_semantic_scores_and_class_alpha_overrides_alpha() -> None:
    from shelfwise.search.fusion import adaptive_alpha

    kw, dense = np.array([0.0, 0.0, 1.0]), np.array([0.6, 0.5, 0.2])
    plain = blend(kw, dense, alpha=0.0)
    floored = blend(kw, dense, alpha=0.0, dense_floor=0.4)
    assert np.allclose(plain, [1.0, 5 / 6, 1 / 3])
    assert np.allclose(floored, [1.0, 0.5, 0.0])  # 0.4 and below count as unrelated
    keyword, sims = np.array([3.0, 1.0]), np.array([0.5, 0.7])
    a, why = adaptive_alpha(keyword, sims, tokens=["xr200"], words=1, alpha=0.3, class_alpha={"model": 0.6})
    assert (a, why["class"]) == (0.6, "model")
    a, why = adaptive_alpha(keyword, sims, tokens=["mug"], words=1, alpha=0.3, class_alpha={"model": 0.6})
    assert (a, why["class"]) == (0.3, "short")  # a class without its own share keeps alpha
