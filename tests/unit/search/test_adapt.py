"""Adapting the bi-encoder to a catalogue without labels: pairs, a bounded fine-tune, save and load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shelfwise.core.errors import ConfigError
from shelfwise.data.schemas import Item
from shelfwise.search.adapt import AdaptConfig, adapt_encoder, catalogue_pairs
from shelfwise.search.dense import Encoder
from shelfwise.search.documents import embedding_text
from shelfwise.search.engine import SearchConfig, SearchEngine

SMALL = AdaptConfig(max_pairs=96, batch_size=16, layers=1, lr=1e-4, seconds=120)


def test_pairs_are_query_like_views_of_each_item_against_its_indexed_text(flipkart_1k: list[Item]) -> None:
    pairs = catalogue_pairs(flipkart_1k, AdaptConfig(max_pairs=500))
    assert len(pairs) == 500
    texts = {embedding_text(it) for it in flipkart_1k}
    assert all(target in texts for _, target in pairs)
    assert all(view and view.lower() != target.lower() for view, target in pairs)
    # only the views asked for: title spans are 2-4 words of the item's own title
    spans = catalogue_pairs(flipkart_1k, AdaptConfig(max_pairs=200, views=["title_span"]))
    assert all(2 <= len(view.split()) <= 4 for view, _ in spans)
    assert all(view.split()[0].lower() in target.lower() for view, target in spans)
    # the same seed gives the same pairs (a build is reproducible)
    assert catalogue_pairs(flipkart_1k, AdaptConfig(max_pairs=50)) == pairs[:0] + catalogue_pairs(
        flipkart_1k, AdaptConfig(max_pairs=50)
    )


def test_adapting_trains_only_the_top_layers_and_leaves_the_shared_model_alone(
    flipkart_1k: list[Item], encoder: Encoder
) -> None:
    probe = ["analog wrist watch for men", "cotton kurta"]
    before = encoder.encode(probe)
    items = flipkart_1k[:400]
    adapted, report, vectors = adapt_encoder(encoder, items, SMALL)
    assert report["steps"] == 96 // 16 and report["pairs"] == 96
    assert report["cut"]  # the top layers ran on cached lower-layer states, checked against the model
    # the item vectors it returns are what the adapted encoder makes of the same texts
    again = adapted.encode([embedding_text(it) for it in items[:50]])
    assert np.allclose(vectors[:50], again, atol=5e-3)
    assert report["trained_parameters"] < 2_000_000  # one of six layers, not the embeddings
    after = adapted.encode(probe)
    assert not np.allclose(after, before, atol=1e-4)  # the adapted model moved
    assert np.allclose(encoder.encode(probe), before, atol=1e-6)  # the packaged one did not
    assert np.allclose(np.linalg.norm(after, axis=1), 1.0, atol=1e-4)


def test_an_adapted_index_saves_its_layers_and_loads_with_the_same_query_vectors(
    tmp_path: Path, flipkart_1k: list[Item], encoder: Encoder
) -> None:
    engine = SearchEngine.build(flipkart_1k[:300], SearchConfig(adapt=SMALL), encoder=encoder)
    assert engine.encoder is not encoder and engine.encoder is not None and engine.encoder.adapted
    queries = ["wrist watch", "gold ring for women", "dog shampoo"]
    before = [engine.search(q, k=10, mode="hybrid", facets=False).item_ids for q in queries]
    engine.save(tmp_path / "idx")
    assert (tmp_path / "idx" / "dense" / "adapted.safetensors").exists()
    loaded = SearchEngine.load(tmp_path / "idx", encoder=encoder)  # given the packaged encoder
    assert loaded.encoder is not None and loaded.encoder.adapted
    assert np.allclose(
        loaded.encoder.encode_uncached("wrist watch"),
        engine.encoder.encode_uncached("wrist watch"),
        atol=1e-5,
    )
    assert [loaded.search(q, k=10, mode="hybrid", facets=False).item_ids for q in queries] == before


def test_too_small_a_catalogue_is_refused_with_a_clear_error(
    flipkart_1k: list[Item], encoder: Encoder
) -> None:
    with pytest.raises(ConfigError, match="too few"):
        adapt_encoder(encoder, flipkart_1k[:5], SMALL)
