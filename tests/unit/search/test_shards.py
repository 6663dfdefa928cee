"""A sharded search index answers exactly as the unsharded one, and loads from the registry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shelfwise.core.errors import ConfigError
from shelfwise.data.schemas import Item
from shelfwise.registry.indexes import IndexRegistry
from shelfwise.registry.versions import CorruptArtifactError
from shelfwise.search.engine import SearchConfig, SearchEngine
from shelfwise.search.shards import ShardedKeyword, assign, build_sharded, shard_of


def _queries(items: list[Item], n: int = 60) -> list[str]:
    """Two- and three-word queries from the catalogue's own titles, plus a few made-up ones."""
    rng = np.random.default_rng(7)
    out = ["shoes", "red cotton kurta", "samsung mobile cover", "watch for men", "nothing-matches-this"]
    for i in rng.choice(len(items), n, replace=False):
        words = (items[int(i)].title or "").split()
        if len(words) >= 2:
            out.append(" ".join(words[: 2 + int(i) % 2]))
    return out


def _vectors(n: int, dim: int = 384, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def pair(
    flipkart_1k: list[Item], tmp_path_factory: pytest.TempPathFactory
) -> tuple[SearchEngine, SearchEngine]:
    """The unsharded and a 3-shard engine over the same catalogue, same vectors (no model needed:
    queries pass their vector; the build-time calibration is off)."""
    config = SearchConfig(calibration_probes=0, min_similarity=-1.0)
    vectors = _vectors(len(flipkart_1k))
    whole = SearchEngine.build(flipkart_1k, config, vectors=vectors)
    sharded = build_sharded(
        flipkart_1k, tmp_path_factory.mktemp("sharded"), shards=3, config=config, vectors=vectors, workers=2
    )
    return whole, sharded


def test_partition_is_stable_and_covers_every_item(flipkart_1k: list[Item]) -> None:
    ids = [it.item_id for it in flipkart_1k]
    owner = assign(ids, 3)
    assert owner.tolist() == [shard_of(i, 3) for i in ids]  # a pure function of the id
    assert set(owner.tolist()) == {0, 1, 2}
    assert min(np.bincount(owner)) > len(ids) / 3 * 0.8  # roughly balanced


@pytest.mark.parametrize("mode", ["bm25", "dense", "hybrid"])
def test_sharded_top_k_equals_unsharded(pair: tuple[SearchEngine, SearchEngine], mode: str) -> None:
    whole, sharded = pair
    assert isinstance(sharded.keyword, ShardedKeyword) and len(sharded.keyword.matrices) == 3
    rng = np.random.default_rng(1)
    items = whole.live_items()
    compared = 0
    for q in _queries(items):
        # the query's vector: near some item's (so dense finds a neighbourhood, not noise)
        anchor = whole.dense.vectors[int(rng.integers(len(items)))] if whole.dense else None
        vector = None if anchor is None else anchor + 0.3 * _vectors(1, seed=compared + 5)[0]
        vector = None if vector is None else (vector / np.linalg.norm(vector)).astype(np.float32)
        a = whole.search(q, k=10, mode=mode, vector=vector, facets=True)
        b = sharded.search(q, k=10, mode=mode, vector=vector, facets=True)
        assert a.item_ids == b.item_ids, q
        if mode == "bm25":  # the same float32 weights summed in the same order: bit for bit
            assert [h.score for h in a.hits] == [h.score for h in b.hits], q
        else:  # a cosine from a mat-vec over a shard's rows, not all rows: BLAS may round the last bit
            assert np.allclose([h.score for h in a.hits], [h.score for h in b.hits], rtol=0, atol=1e-6), q
        assert a.total == b.total and a.facets == b.facets, q
        compared += len(a.hits) > 0
    assert compared >= 40


def test_keyword_statistics_are_global(pair: tuple[SearchEngine, SearchEngine]) -> None:
    """Every term's document frequency and every (term, item) weight equal the unsharded index's;
    scored with one shard's own statistics they would not (a shard holds ~1/3 of the items)."""
    whole, sharded = pair
    kw = sharded.keyword
    assert isinstance(kw, ShardedKeyword)
    m = whole.keyword._merged
    assert m is not None
    for term in list(m.vocab)[:300]:
        assert kw.doc_freq(term) == whole.keyword.doc_freq(term), term
    slots = np.arange(len(whole))
    for term in ["shirt", "women", "cotton", "ring", "mobil"]:
        if term in m.vocab:
            assert np.array_equal(kw.score_slots([term], slots), whole.keyword.score_slots([term], slots))
    for q in ["men shirt", "gold ring", "cotton"]:
        a, b = whole.keyword.top(whole.analyzer.tokens(q), 10), kw.top(whole.analyzer.tokens(q), 10)
        assert a[0].tolist() == b[0].tolist() and a[1].tolist() == b[1].tolist()


def test_changes_after_the_build_answer_as_unsharded(flipkart_1k: list[Item], tmp_path: Path) -> None:
    """Removals, changes and new items go to the sharded engine's delta and are scored with the
    catalogue's statistics, as the unsharded engine's delta segment is: the same top-k after."""
    from dataclasses import replace

    config = SearchConfig(dense=False, calibration_probes=0)
    sharded = build_sharded(flipkart_1k, tmp_path / "idx", shards=2, config=config)
    whole = SearchEngine.build(flipkart_1k, config)
    top = whole.search("shirt", k=1, mode="bm25").item_ids[0]
    changed = replace(flipkart_1k[5], title="zebra striped shirt for men")
    new = replace(flipkart_1k[6], item_id="brand-new-item", title="zebra print cotton kurta")
    for engine in (whole, sharded):
        assert engine.remove([top]) == 1
        assert engine.upsert([changed, new]) == 2
    assert sharded.keyword.delta_slots  # waiting for the next version, not compacted in place
    for q in ["shirt", "zebra", "zebra shirt", "cotton kurta", "men shirt"]:
        a, b = whole.search(q, k=10, mode="bm25"), sharded.search(q, k=10, mode="bm25")
        assert a.item_ids == b.item_ids, q
        assert [h.score for h in a.hits] == [h.score for h in b.hits], q
    found = sharded.search("zebra", k=50, mode="bm25").item_ids
    assert new.item_id in found and changed.item_id in found  # searchable at once
    assert top not in sharded.search("shirt", k=50, mode="bm25").item_ids
    with pytest.raises(ConfigError, match="BM25F"):
        build_sharded(
            flipkart_1k, tmp_path / "f", shards=2, config=SearchConfig(dense=False, scoring="fields")
        )


def test_registry_builds_and_serves_a_sharded_version(flipkart_1k: list[Item], tmp_path: Path) -> None:
    registry = IndexRegistry(tmp_path / "indexes")
    info = registry.build(flipkart_1k, mode="bm25", shards=4)
    assert any(f.startswith("engine/shards/3/keyword/") for f in info.files)
    served = registry.load(info.version)
    assert isinstance(served.keyword, ShardedKeyword) and len(served.keyword.matrices) == 4
    whole = SearchEngine.build(flipkart_1k, SearchConfig(dense=False))
    for q in ["shirt", "analog watch", "baby girl dress"]:
        assert served.search(q, k=10, mode="bm25").item_ids == whole.search(q, k=10, mode="bm25").item_ids
    # a damaged shard is never served
    victim = info.path / "engine" / "shards" / "2" / "keyword" / "bm25f_data.npy"
    victim.write_bytes(victim.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(CorruptArtifactError):
        registry.load(info.version)


def test_top_k_breaks_ties_at_the_edge_by_key() -> None:
    """Many equal scores (short synthetic titles): the k kept are the smallest tie keys, whatever
    order the matches came in, so shards merged in any order give the unsharded top k."""
    from shelfwise.search.scoring import top_k

    rng = np.random.default_rng(0)
    for _ in range(500):
        n, k = int(rng.integers(1, 60)), int(rng.integers(1, 15))
        scores = rng.integers(0, 4, n).astype(np.float32)
        ties = rng.permutation(n)
        assert top_k(scores, k, ties=ties).tolist() == np.lexsort((ties, -scores))[:k].tolist()


def test_vectors_added_after_the_build_are_found(flipkart_1k: list[Item], tmp_path: Path) -> None:
    config = SearchConfig(calibration_probes=0, min_similarity=-1.0)
    engine = build_sharded(flipkart_1k, tmp_path / "idx", shards=2, config=config, vectors=_vectors(1002))
    dense = engine.dense
    assert dense is not None
    n = len(dense)
    extra = _vectors(2, seed=99)
    dense.add(n, extra[0])
    dense.add(n + 1, extra[1])
    assert dense.search(extra[1], 1)[0].tolist() == [n + 1]
    assert np.array_equal(dense.vectors[[n, 3]], np.stack([extra[0], engine.dense.vectors[3][0]]))
    dense.remove(n + 1)
    assert n + 1 not in dense.search(extra[1], 5)[0].tolist()


def test_a_build_whose_workers_cannot_start_is_built_in_process(
    flipkart_1k: list[Item], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """CI once saw fork refused with ENOMEM (a large test process under the kernel's overcommit check):
    the build must still finish, in this process, with the same index, and say why."""
    import errno
    import multiprocessing

    from shelfwise.search import shards as shards_module

    class Refused(type(multiprocessing.get_context("forkserver"))):  # type: ignore[misc]
        def Process(self, *args: object, **kwargs: object) -> object:
            raise OSError(errno.ENOMEM, "Cannot allocate memory")

    monkeypatch.setattr(shards_module.multiprocessing, "get_context", lambda method: Refused())
    config = SearchConfig(calibration_probes=0, dense=False)
    items = flipkart_1k[:300]
    with caplog.at_level("WARNING", logger="shelfwise.search.shards"):
        sharded = build_sharded(items, tmp_path / "s", shards=2, config=config, workers=2)
    assert "building in this process" in caplog.text
    whole = SearchEngine.build(items, config)
    for q in ["shoes", "red cotton kurta", "watch for men"]:
        assert whole.search(q, k=10, mode="bm25").item_ids == sharded.search(q, k=10, mode="bm25").item_ids


def test_the_shard_engine_setting_reaches_the_index_registry(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`serve` loads index versions through ``index_registry(settings)``: SHELFWISE_SHARD_ENGINE
    picks where a sharded version's shards are held; threads by default; a wrong name is refused."""
    from pydantic import ValidationError

    from shelfwise.core.settings import Settings
    from shelfwise.search.shards import load_shards
    from shelfwise.serving.search_service import index_registry

    assert index_registry(Settings(var_dir=tmp_path)).shard_engine == "threads"
    monkeypatch.setenv("SHELFWISE_SHARD_ENGINE", "ray")
    assert index_registry(Settings(var_dir=tmp_path)).shard_engine == "ray"
    monkeypatch.setenv("SHELFWISE_SHARD_ENGINE", "processes")
    with pytest.raises(ValidationError):
        Settings(var_dir=tmp_path)
    with pytest.raises(ConfigError, match="unknown shard engine"):
        load_shards(tmp_path, weights={}, analyzer=None, k1=1.2, b=0.75, engine="processes")


def test_a_build_worker_ends_when_the_building_process_is_killed(tmp_path: Path) -> None:
    """Build workers are the forkserver's children, so a killed build used to leave them building for
    half an hour; each now watches the builder and ends within a poll of it going."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from shelfwise.search.shards import _build_pool, _end_with

    pool = _build_pool(2)
    assert pool._initializer is _end_with  # type: ignore[attr-defined]  # every worker watches
    assert pool._initargs == (os.getpid(),)  # type: ignore[attr-defined]
    pool.shutdown()
    # the builder starts a worker-like grandchild that runs the watch, then the builder is killed
    pidfile = tmp_path / "worker.pid"
    worker = (
        "import os, time, sys; from shelfwise.search.shards import _end_with; "
        f"_end_with(int(sys.argv[1]), every=0.1); open({str(pidfile)!r}, 'w').write(str(os.getpid())); "
        "time.sleep(120)"
    )
    builder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {worker!r}, "
            "str(__import__('os').getpid())]); time.sleep(120)",
        ],
    )
    deadline = time.monotonic() + 60
    while not pidfile.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    child = int(pidfile.read_text())
    os.kill(child, 0)  # alive while the builder lives
    builder.send_signal(signal.SIGKILL)
    builder.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        os.kill(child, signal.SIGKILL)
        raise AssertionError("the worker outlived its builder by 10 s")


def test_independent_rounds_overlap_only_for_remote_shards() -> None:
    """``together`` runs its first step in a worker thread (while the second runs in the caller)
    only when asked to overlap, as for shards held by Ray actors; both results come back in order,
    and an error in either step reaches the caller."""
    import threading

    from shelfwise.search.stages import together

    here = threading.get_ident()
    assert together(threading.get_ident, threading.get_ident, overlap=False) == (here, here)
    first, second = together(threading.get_ident, threading.get_ident, overlap=True)
    assert second == here and first != here

    def boom() -> int:
        raise RuntimeError("shard down")

    for overlap in (False, True):
        with pytest.raises(RuntimeError, match="shard down"):
            together(boom, lambda: 1, overlap=overlap)
        with pytest.raises(RuntimeError, match="shard down"):
            together(lambda: 1, boom, overlap=overlap)
