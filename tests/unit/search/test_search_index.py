"""Indexing the real Flipkart catalogue: field-weighted BM25, changes searchable at once, save/load."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from shelfwise.data.schemas import Item
from shelfwise.search.engine import SearchConfig, SearchEngine, SearchError


def _find(items: list[Item], needle: str) -> Item:
    return next(it for it in items if it.title and needle in it.title)


def test_an_exact_title_finds_its_item_first(keyword_engine: SearchEngine, flipkart_1k: list[Item]) -> None:
    found = 0
    sample = [it for it in flipkart_1k[::50] if it.title and len(it.title.split()) >= 3]
    for it in sample:
        top = keyword_engine.search(it.title or "", k=5, mode="bm25", facets=False)
        titles = [h.item.title for h in top.hits]
        found += it.title in titles
    assert found / len(sample) >= 0.9


def test_title_matches_outrank_description_only_matches(keyword_engine: SearchEngine) -> None:
    result = keyword_engine.search("dog shampoo", k=5, mode="bm25", facets=False)
    assert result.hits
    assert all("shampoo" in (h.item.title or "") for h in result.hits[:3])


def test_brand_field_is_searchable(keyword_engine: SearchEngine, flipkart_1k: list[Item]) -> None:
    result = keyword_engine.search("sicons", k=10, mode="bm25", facets=False)
    expected = {it.item_id for it in flipkart_1k if (it.brand or "").lower() == "sicons"}
    assert expected and set(result.item_ids[: len(expected)]) == expected


def test_add_update_remove_without_rebuild(flipkart_1k: list[Item]) -> None:
    engine = SearchEngine.build(flipkart_1k[:600], SearchConfig(dense=False))
    main_before = engine.keyword.n_main
    newcomer = flipkart_1k[700]
    query = newcomer.title or ""
    assert newcomer.item_id not in engine.search(query, k=10, mode="bm25").item_ids

    engine.upsert([newcomer])
    assert engine.keyword.n_main == main_before  # no rebuild: it sits in the delta segment
    assert engine.search(query, k=3, mode="bm25").item_ids[0] == newcomer.item_id

    renamed = dataclasses.replace(newcomer, title="zyxwidget quantum teapot")
    engine.upsert([renamed])
    assert engine.search("zyxwidget teapot", k=3, mode="bm25").item_ids == [newcomer.item_id]
    # the old version is gone: the item appears once, with its new title
    hits = engine.search(query, k=50, mode="bm25").hits
    assert [h.item.title for h in hits if h.item_id == newcomer.item_id] in ([], [renamed.title])

    target = flipkart_1k[10]
    assert target.item_id in engine.search(target.title or "", k=5, mode="bm25").item_ids
    assert engine.remove([target.item_id]) == 1
    assert target.item_id not in engine.search(target.title or "", k=50, mode="bm25").item_ids
    assert len(engine) == 600


def test_compaction_keeps_results(flipkart_1k: list[Item]) -> None:
    engine = SearchEngine.build(flipkart_1k[:500], SearchConfig(dense=False))
    engine.upsert(flipkart_1k[500:540])
    engine.remove([flipkart_1k[0].item_id])
    picked = [flipkart_1k[i] for i in (5, 100, 300, 510, 520, 530)]
    queries = [it.title or "" for it in picked]
    before = [engine.search(q, k=10, mode="bm25", facets=False).item_ids for q in queries]
    engine.compact()
    assert engine.keyword.delta_slots == [] and engine.keyword.n_main == 539
    after = [engine.search(q, k=10, mode="bm25", facets=False).item_ids for q in queries]
    # the delta segment scores with the main segment's statistics, so results agree up to near-ties
    for it, b, a in zip(picked, before, after, strict=True):
        assert it.item_id in b[:3] and it.item_id in a[:3]
        assert len(set(b) & set(a)) >= min(7, len(b))


def test_a_large_delta_is_compacted_automatically(flipkart_1k: list[Item]) -> None:
    engine = SearchEngine.build(flipkart_1k[:100], SearchConfig(dense=False, compact_fraction=0.05))
    engine.upsert(flipkart_1k[100:300])
    assert engine.keyword.n_main == 300 and engine.keyword.delta_slots == []


def test_save_and_load_give_the_same_results(tmp_path: Path, flipkart_1k: list[Item]) -> None:
    engine = SearchEngine.build(flipkart_1k[:400], SearchConfig(dense=False))
    engine.upsert(flipkart_1k[400:420])
    engine.save(tmp_path / "idx")
    files = sorted(p.name for p in (tmp_path / "idx").rglob("*") if p.is_file())
    assert not [f for f in files if f.endswith((".pkl", ".pickle"))]
    assert any(f.endswith(".npy") for f in files) and "engine.json" in files
    loaded = SearchEngine.load(tmp_path / "idx")
    assert len(loaded) == 420
    for q in ["women casual shoes", "analog watch for men", "coffee mug"]:
        a = engine.search(q, k=10, mode="bm25", facets=False)
        b = loaded.search(q, k=10, mode="bm25", facets=False)
        assert a.item_ids == b.item_ids
        assert np.allclose([h.score for h in a.hits], [h.score for h in b.hits], rtol=1e-4)


def test_unknown_mode_is_a_user_error(keyword_engine: SearchEngine) -> None:
    with pytest.raises(SearchError, match="unknown search mode"):
        keyword_engine.search("shoes", mode="magic")
