"""The lean encoder matches sentence-transformers, caches queries; the HNSW index honours filters."""

from __future__ import annotations

import numpy as np
import pytest

from shelfwise.data.schemas import Item
from shelfwise.search import dense
from shelfwise.search.dense import DenseIndex, Encoder
from shelfwise.search.documents import embedding_text
from shelfwise.search.engine import SearchConfig, SearchEngine


def test_batch_encoding_matches_sentence_transformers(encoder: Encoder, flipkart_1k: list[Item]) -> None:
    texts = [embedding_text(it) for it in flipkart_1k[:40]]
    texts += texts[:10]  # repeated texts are encoded once and come back in their places
    ours = encoder.encode(texts)
    theirs = encoder.model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    assert ours.shape == (50, 384)
    assert float((ours * theirs).sum(axis=1).min()) > 0.99999
    assert np.array_equal(ours[40:], ours[:10])
    single = Encoder(workers=1).encode(texts[:5])
    assert np.allclose(single, ours[:5], atol=1e-5)


def test_query_embeddings_are_cached_and_the_cache_is_bounded(encoder: Encoder) -> None:
    enc = Encoder(cache_size=2)
    first = enc.encode_query("running shoes")
    assert enc.cache_hits == 0
    assert np.array_equal(enc.encode_query("running shoes"), first)
    assert enc.cache_hits == 1
    assert np.allclose(first, encoder.encode(["running shoes"])[0], atol=1e-5)
    enc.encode_query("coffee mug")
    enc.encode_query("gold ring")  # pushes "running shoes" out
    enc.encode_query("running shoes")
    assert enc.cache_hits == 1
    assert not first.flags.writeable  # a caller cannot corrupt the cached vector


@pytest.mark.parametrize("runtime", ["onnxruntime", "torchscript"])
def test_a_query_through_the_fast_path_equals_the_model(
    encoder: Encoder, flipkart_1k: list[Item], runtime: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if runtime == "onnxruntime":
        pytest.importorskip("onnxruntime")
    else:  # ONNX Runtime absent (or its export failed): the TorchScript graph answers
        monkeypatch.setattr(dense, "_shared_session", lambda *a, **k: False)
    enc = Encoder()
    queries = ["sofa", "red cotton kurta for women", "samsung galaxy 64 gb black", "羽绒服 女 短款"]
    queries += [it.title or "" for it in flipkart_1k[:6]]  # longer, up to the query length cap
    for q in queries:
        fast = enc.encode_uncached(q)
        theirs = encoder.model.encode([q], normalize_embeddings=True, convert_to_numpy=True)[0]
        assert fast.dtype == np.float32 and fast.shape == (384,)
        if len(enc.model.tokenizer(q)["input_ids"]) <= enc.query_max_length:
            assert float(fast @ theirs) > 0.99999, q
    assert enc.query_runtime == runtime  # that path ran, not a fallback


def test_the_query_tokenizer_core_gives_the_wrapper_s_ids(encoder: Encoder, flipkart_1k: list[Item]) -> None:
    """One query is tokenised by the fast tokenizer's Rust core (less per-call work): the same ids as
    the wrapper's call with truncation at the query length, special tokens included."""
    enc = Encoder(query_max_length=16)
    tokenizer = enc.model.tokenizer
    core = enc._query_tokenizer(tokenizer)
    texts = ["", " ", "sofa", "SAMSUNG Galaxy 64GB (Black)", "羽绒服 女 短款", "café crème 😀 x" * 12]
    texts += [it.description or "" for it in flipkart_1k[:40]]  # long: truncated at 16
    truncated = 0
    for text in texts:
        wrapper = tokenizer([text], truncation=True, max_length=16)["input_ids"][0]
        assert core.encode(text).ids == wrapper, text
        truncated += len(wrapper) == 16
    assert truncated >= 20  # the cut was exercised
    assert tokenizer.backend_tokenizer is not core  # a copy: the shared tokenizer keeps its settings


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    # index mechanics only: random unit vectors in clusters, so near neighbours are well defined
    rng = np.random.default_rng(5)
    centres = rng.normal(size=(60, dense.DIM))
    v = centres[rng.integers(0, 60, 6000)] + 0.3 * rng.normal(size=(6000, dense.DIM))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def test_filtered_graph_search_returns_only_allowed_slots(
    vectors: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dense, "EXACT_SCAN_MAX", 1000)  # as if the catalogue were larger
    index = DenseIndex()
    index.build(vectors)
    query = vectors[17]
    exact = np.argsort(-(vectors @ query))[:10]
    slots, sims = index.search(query, 10)
    assert len(set(slots.tolist()) & set(exact.tolist())) >= 9
    assert np.all(np.diff(sims) <= 1e-6)

    # a broad filter (half the catalogue) goes through the graph, skipping excluded slots
    mask = np.zeros(len(vectors), dtype=bool)
    mask[::2] = True
    assert mask.sum() > dense.EXACT_SCAN_MAX
    slots, _ = index.search(query, 10, mask)
    assert len(slots) == 10 and mask[slots].all()
    allowed = np.flatnonzero(mask)
    exact = allowed[np.argsort(-(vectors[allowed] @ query))[:10]]
    assert len(set(slots.tolist()) & set(exact.tolist())) >= 9

    # a narrow filter is scanned exactly
    narrow = np.zeros(len(vectors), dtype=bool)
    narrow[[3, 500, 4000, 5999]] = True
    slots, sims = index.search(query, 10, narrow)
    assert sorted(slots.tolist()) == [3, 500, 4000, 5999]
    assert np.allclose(sims, vectors[slots] @ query, atol=1e-5)

    # removed slots never come back, with or without a mask
    index.remove(int(exact[0]))
    assert int(exact[0]) not in index.search(query, 10)[0]
    alive = mask.copy()
    alive[exact[0]] = False
    assert int(exact[0]) not in index.search(query, 10, alive)[0]


def test_feedback_pass_keeps_a_category_query_on_its_category(
    flipkart_1k: list[Item], encoder: Encoder
) -> None:
    items = flipkart_1k[:400]
    vecs = encoder.encode([embedding_text(it) for it in items])
    with_feedback = SearchEngine.build(items, SearchConfig(dense=True), encoder=encoder, vectors=vecs)
    without = SearchEngine.build(items, SearchConfig(dense=True, feedback=0), encoder=encoder, vectors=vecs)

    def watches(engine: SearchEngine) -> int:
        hits = engine.search("timepiece", k=10, mode="hybrid", facets=False).hits
        return sum("watch" in (h.item.category or "") for h in hits)

    n_watches = sum("watch" in (it.category or "") for it in items)
    assert n_watches >= 10
    assert watches(with_feedback) >= watches(without)
    assert watches(with_feedback) >= 9


def test_vectors_added_one_at_a_time_are_kept_and_found(vectors: np.ndarray) -> None:
    index = DenseIndex()
    index.build(vectors[:1000])
    for slot in range(1000, 1300):
        index.add(slot, vectors[slot])
    assert len(index) == 1300
    assert np.array_equal(index.vectors, vectors[:1300])
    for slot in (1000, 1150, 1299):
        assert index.search(vectors[slot], 1)[0].tolist() == [slot]
    with pytest.raises(ValueError):
        index.add(5000, vectors[5000])  # slots are appended in order
