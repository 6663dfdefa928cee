"""Search indexes are versions: built from a catalogue, checksummed, gated on a labelled set,
activated and rolled back, with embeddings computed only for new or changed items."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from shelfwise.data.schemas import Item
from shelfwise.registry.indexes import IndexRegistry, Labelled, catalogue_fingerprint, ensure_index
from shelfwise.registry.versions import CorruptArtifactError, GateRefusedError, RegistryError
from shelfwise.search.dense import Encoder
from shelfwise.search.engine import SearchConfig, SearchEngine


@pytest.fixture(scope="module")
def catalogue(flipkart_1k: list[Item]) -> list[Item]:
    return [it for it in flipkart_1k if it.title][:300]


def _labelled(items: list[Item]) -> Labelled:
    chosen = items[::15][:20]
    queries = {f"q{i}": " ".join((it.title or "").split()[:4]) for i, it in enumerate(chosen)}
    qrels = {f"q{i}": {it.item_id: 2} for i, it in enumerate(chosen)}
    return Labelled("title-prefixes", queries, qrels)


def test_a_bm25_version_is_checksummed_activated_and_answers_like_the_engine(
    tmp_path: Path, catalogue: list[Item]
) -> None:
    reg = IndexRegistry(tmp_path / "indexes")
    info = reg.build(catalogue, mode="bm25")
    assert reg.active == info.version
    assert info.mode == "bm25" and info.items == len(catalogue) and info.embedded == 0
    assert info.catalogue == catalogue_fingerprint(catalogue)
    assert info.gate == {"labelled": False, "passed": True}
    assert reg.verify(info.version) == []
    served = reg.load(info.version)
    direct = SearchEngine.build(catalogue, SearchConfig(dense=False))
    for q in ("mens shirt", "cotton saree", "watch"):
        assert served.search(q, k=10, mode="bm25").item_ids == direct.search(q, k=10, mode="bm25").item_ids


def test_a_corrupt_index_version_is_never_loaded_or_activated(tmp_path: Path, catalogue: list[Item]) -> None:
    reg = IndexRegistry(tmp_path / "indexes")
    good = reg.build(catalogue, mode="bm25")
    bad = reg.build(catalogue[:100], mode="bm25", activate=False)
    victim = next(p for p in (bad.path / "engine").rglob("*") if p.is_file())
    victim.write_bytes(victim.read_bytes() + b"x")
    assert any("checksum mismatch" in p for p in reg.verify(bad.version))
    with pytest.raises(CorruptArtifactError):
        reg.load(bad.version)
    with pytest.raises(CorruptArtifactError):
        reg.activate(bad.version)
    assert reg.active == good.version


def test_the_gate_refuses_an_index_worse_on_the_labelled_set_and_rollback_restores(
    tmp_path: Path, catalogue: list[Item]
) -> None:
    reg = IndexRegistry(tmp_path / "indexes")
    labelled = _labelled(catalogue)
    first = reg.build(catalogue, mode="bm25", labelled=labelled)
    assert first.metrics["ndcg@10"] > 0.5 and first.gate["labelled"] is True
    wanted = {i for q in labelled.qrels.values() for i in q}
    worse = [it for it in catalogue if it.item_id not in wanted]
    with pytest.raises(GateRefusedError, match="below the active"):
        reg.build(worse, mode="bm25", labelled=labelled)
    assert reg.active == first.version and len(reg.versions()) == 1
    forced = reg.build(worse, mode="bm25", labelled=labelled, force=True)
    assert forced.gate["passed"] is False and reg.active == forced.version
    assert reg.rollback().active == first.version
    with pytest.raises(RegistryError, match="no earlier search index"):
        reg.rollback()


def test_ltr_needs_judgments_and_an_unknown_mode_is_refused(tmp_path: Path, catalogue: list[Item]) -> None:
    reg = IndexRegistry(tmp_path / "indexes")
    with pytest.raises(RegistryError, match="ltr learns from judgments"):
        reg.build(catalogue, mode="ltr")
    with pytest.raises(RegistryError, match="unknown search mode"):
        reg.build(catalogue, mode="semantic")


def test_a_new_hybrid_version_embeds_only_new_or_changed_items(
    tmp_path: Path, catalogue: list[Item], encoder: Encoder
) -> None:
    reg = IndexRegistry(tmp_path / "indexes")
    items = catalogue[:60]
    first = reg.build(items, mode="hybrid", encoder=encoder, embeddings=tmp_path / "emb")
    assert first.embedded == len(items)
    changed = [dataclasses.replace(items[0], title="solar powered garden lantern, bronze"), *items[1:]]
    changed.append(Item(item_id="new-1", title="stainless steel water bottle 1 litre"))
    second = reg.build(changed, mode="hybrid", encoder=encoder, embeddings=tmp_path / "emb")
    assert second.embedded == 2
    assert second.catalogue != first.catalogue
    engine = reg.load(second.version, encoder=encoder)
    assert engine.search("garden lantern", k=3, mode="hybrid").item_ids[0] == items[0].item_id
    # the HNSW graph is part of the version, checksummed: every load walks the same graph
    assert "engine/dense/hnsw.bin" in reg.index_info(second.version).files
    graph = reg.index_info(second.version).path / "engine" / "dense" / "hnsw.bin"
    data = bytearray(graph.read_bytes())
    data[len(data) // 2] ^= 0xFF
    graph.write_bytes(bytes(data))
    assert any("hnsw.bin" in p for p in reg.verify(second.version))


def test_serving_reuses_the_active_version_until_the_catalogue_or_the_mode_changes(
    tmp_path: Path, catalogue: list[Item]
) -> None:
    reg = IndexRegistry(tmp_path / "indexes")
    items = catalogue[:80]
    _, first, built = ensure_index(reg, items, mode="bm25")
    assert built and first.mode == "bm25"
    _, again, built = ensure_index(reg, items, mode="auto")
    assert not built and again.version == first.version  # auto keeps the active version's mode
    engine, grown, built = ensure_index(reg, [*items, catalogue[80]], mode="auto")
    assert built and grown.mode == "bm25" and catalogue[80].item_id in engine
    assert reg.active == grown.version
