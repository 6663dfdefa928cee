"""Content-based models: TF-IDF and sentence-embedding vectors of title/category/brand, and above
all the cold item — in the catalogue, never bought — reaching the shoppers whose history reads like it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from shelfwise.features.dataset import Dataset
from shelfwise.features.profiles import item_profiles
from shelfwise.recommend import model_from_config
from shelfwise.recommend.content import item_documents, tfidf_matrix


@dataclass(frozen=True)
class _Item:
    title: str
    category: str
    price: float = 3.0
    brand: str | None = None


CATALOGUE = {
    "mug-red": _Item("Red ceramic tea mug with heart", "Kitchen > Mugs"),
    "mug-blue": _Item("Blue ceramic tea mug with heart", "Kitchen > Mugs"),
    "mug-green": _Item("Green ceramic tea mug with heart", "Kitchen > Mugs"),  # cold: never bought
    "spade": _Item("Steel garden spade", "Garden > Tools"),
    "rake": _Item("Wooden garden rake", "Garden > Tools"),
    "hose": _Item("Garden hose reel", "Garden > Watering"),
    "candle": _Item("Vanilla scented candle", "Home > Candles"),
    "lantern": _Item("White metal lantern", "Home > Lights"),
}


def _shop() -> Dataset:
    """Gardeners, candle buyers, and one shopper of mugs; the green mug's only event is dropped, so it
    stays in the catalogue (and the id map) with no history: a cold item."""
    events = [
        ("tea", "mug-red"),
        ("tea", "mug-blue"),
        ("g1", "spade"),
        ("g1", "rake"),
        ("g1", "hose"),
        ("g2", "spade"),
        ("g2", "hose"),
        ("g3", "rake"),
        ("g3", "lantern"),
        ("h1", "candle"),
        ("h1", "lantern"),
        ("h2", "candle"),
        ("h2", "lantern"),
        ("h3", "candle"),
        ("ghost", "mug-green"),
    ]
    ds = Dataset.from_events(
        users=[u for u, _ in events], items=[i for _, i in events], ts=list(range(len(events)))
    ).with_items(CATALOGUE)
    ds = ds.select(ds.items != ds.item_map.to_internal(["mug-green"])[0])
    assert ds.matrix()[:, ds.item_map.to_internal(["mug-green"])[0]].nnz == 0
    return ds


def test_tfidf_rows_are_unit_and_shared_words_make_similarity() -> None:
    m = tfidf_matrix([["red", "mug"], ["blue", "mug"], ["garden", "spade"], []])
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    np.testing.assert_allclose(norms, [1, 1, 1, 0], atol=1e-6)
    sims = (m @ m.T).toarray()
    assert sims[0, 1] > 0 and sims[0, 2] == 0


def test_documents_carry_title_category_and_brand() -> None:
    ds = _shop()
    docs = dict(zip(ds.item_map.external.tolist(), item_documents(ds.item_attributes), strict=True))
    assert docs["spade"] == "Steel garden spade. Garden > Tools"


@pytest.mark.parametrize("name", ["content-tfidf", "content-embed"])
def test_a_cold_item_reaches_shoppers_whose_history_reads_like_it(name: str) -> None:
    ds = _shop()
    model = model_from_config({"model": name}).fit(ds)
    [rec] = model.recommend(["tea"], k=3)
    assert rec.items[0] == "mug-green", rec
    assert rec.reasons[0] in ("similar to mug-red", "similar to mug-blue")
    # a collaborative model cannot: the green mug has no events
    [ease] = model_from_config({"model": "ease", "l2": 1.0}).fit(ds).recommend(["tea"], k=3)
    assert "mug-green" not in ease.items
    # and a new shopper's session folds in the same way, with no retraining
    session = model.recommend_for_events(["mug-red"], k=2)
    assert "mug-green" in session.items and "mug-blue" in session.items


def test_similar_items_follow_the_text() -> None:
    model = model_from_config({"model": "content-tfidf"}).fit(_shop())
    [sim] = model.similar_items(["spade"], k=2)
    assert set(sim.items) == {"rake", "hose"}  # the other garden items
    [sim] = model.similar_items(["mug-green"], k=2)
    assert set(sim.items) == {"mug-red", "mug-blue"}


def test_item_profiles_carry_a_text_embedding() -> None:
    from shelfwise.features.embeddings import embed_texts

    ds = _shop()
    prof = item_profiles(ds, embed=embed_texts)
    assert prof.text_embedding is not None and prof.text_embedding.shape == (ds.n_items, 384)
    np.testing.assert_allclose(np.linalg.norm(prof.text_embedding, axis=1), 1.0, rtol=1e-5)
    red, blue, spade = (
        prof.text_embedding[i] for i in ds.item_map.to_internal(["mug-red", "mug-blue", "spade"])
    )
    assert red @ blue > red @ spade
