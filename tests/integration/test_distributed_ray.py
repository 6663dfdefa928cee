"""The pipeline on a real Ray cluster (a head and a worker node, processes on 127.0.0.1, one CPU
each) gives what it gives in-process: the same metrics, the same top lists, the same stored
events. SASRec is trained by Ray Train with DDP over both nodes' workers, each on half of every
batch with the dropout masks one process draws for the whole batch: the same steps up to float
summation order, so its metrics are held to the acceptance's ±1%.

On the same cluster, a sharded search index with each shard in a Ray actor of its own answers as
the in-process thread pool does, its actors are shared by every process loading the version, and
a dead actor is started again (or the query says why)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray")

from shelfwise.core.settings import Settings  # noqa: E402
from shelfwise.data.readers import get_format  # noqa: E402
from shelfwise.distributed import RayEngine, fit_and_evaluate, open_engine, score_all, train  # noqa: E402
from shelfwise.distributed import ingest_events as ingest_on  # noqa: E402
from shelfwise.features.splits import temporal_split  # noqa: E402
from shelfwise.registry import ModelRegistry, TrainingConfig  # noqa: E402
from shelfwise.registry.toplists import load_top_lists  # noqa: E402
from shelfwise.store import open_store  # noqa: E402
from tests.conftest import TEST_KEY  # noqa: E402
from tests.unit.recommend.slices import retail_purchases  # noqa: E402

pytestmark = pytest.mark.ray
RAY = Path(sys.executable).parent / "ray"
START_TIMEOUT_S = 90


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_cpus(address: str, cpus: int) -> None:
    """Until the cluster shows both nodes' CPUs (the worker node joins a moment after the head)."""
    probe = (
        "import ray, sys, time\n"
        f"ray.init(address='{address}', log_to_driver=False, logging_level='ERROR')\n"
        f"deadline = time.time() + {START_TIMEOUT_S}\n"
        f"while ray.cluster_resources().get('CPU', 0) < {cpus} and time.time() < deadline: time.sleep(0.5)\n"
        f"sys.exit(0 if ray.cluster_resources().get('CPU', 0) >= {cpus} else 1)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], timeout=START_TIMEOUT_S + 30, capture_output=True)
    assert done.returncode == 0, f"the Ray cluster did not come up: {done.stderr.decode()[-500:]}"


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A head and a worker node started with ``ray start --block`` (so each is one process of ours
    to stop, with everything it started), torn down at the end of the module."""
    port = _free_port()
    address = f"127.0.0.1:{port}"
    tmp = Path(tempfile.mkdtemp(prefix="shelfwise-ray-", dir="/tmp"))
    common = ["--num-cpus", "1", "--disable-usage-stats", "--block"]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    logs = (tmp / "head.log").open("wb"), (tmp / "worker.log").open("wb")
    head = subprocess.Popen(
        [str(RAY), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
         "--include-dashboard=false", "--temp-dir", str(tmp), *common],
        stdout=logs[0], stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )  # fmt: skip
    procs = [head]
    try:
        time.sleep(3)
        worker = subprocess.Popen(
            [str(RAY), "start", "--address", address, "--node-ip-address", "127.0.0.1", *common],
            stdout=logs[1], stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip
        procs.append(worker)
        _wait_for_cpus(address, 2)
        yield address
    finally:
        if ray.is_initialized():
            ray.shutdown()
        # each node runs in a process group of its own, its raylet, GCS and workers with it: a
        # terminated `ray start --block` alone waited out 30 s a node, and left agents behind
        for proc in reversed(procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:  # the head node does not end on SIGTERM here
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        for log in logs:
            log.close()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def engine(cluster: str) -> Iterator[RayEngine]:
    with open_engine("ray", address=cluster) as running:
        assert isinstance(running, RayEngine)
        yield running


@pytest.fixture(scope="module")
def split():  # type: ignore[no-untyped-def]
    return temporal_split(retail_purchases(), test_fraction=0.2)


def test_the_tasks_run_on_both_nodes(engine: RayEngine) -> None:
    def node(_shared: None, _part: int) -> str:
        time.sleep(0.5)  # long enough that the two tasks overlap
        return str(ray.get_runtime_context().get_node_id())

    assert engine.workers == 2
    assert len(set(engine.map(node, range(4)))) == 2


def test_a_slow_part_does_not_hold_the_other_worker_back(engine: RayEngine) -> None:
    def timed(_shared: None, seconds: float) -> tuple[float, float]:
        started = time.time()
        time.sleep(seconds)
        return started, time.time()

    spans = list(engine.map(timed, [3.0] + [0.1] * 6))
    # in the parts' order: the slow one first
    assert spans[0][1] - spans[0][0] >= 2.9 and all(b - a < 2.9 for a, b in spans[1:])
    slow_end = spans[0][1]
    # the fast parts ran on the other worker meanwhile, not after the slow one (the oldest) ended
    assert all(started < slow_end for started, _ in spans[1:])


@pytest.mark.parametrize("config", [{"model": "ease", "l2": 200.0}, {"model": "als", "factors": 32}])
def test_ray_metrics_and_top_lists_equal_in_process(engine: RayEngine, split, config) -> None:  # type: ignore[no-untyped-def]
    with open_engine("local") as local:
        here, expected = fit_and_evaluate(local, split, config, chunk_users=8)
        lists_here = score_all(local, here, k=20, chunk_users=300)
    there, got = fit_and_evaluate(engine, split, config, chunk_users=8)
    lists_there = score_all(engine, there, k=20, chunk_users=300)
    assert got.info["users"] == expected.info["users"] > 16  # several chunks, on both nodes
    # the same code; only float rounding differs (a worker's BLAS runs one thread, this process two)
    for key in ("ndcg@10", "recall@10", "map@10", "auc", "coverage@10"):
        assert got.metrics[key] == pytest.approx(expected.metrics[key], rel=1e-4), key
    assert lists_there.items.shape == lists_here.items.shape
    assert (lists_there.items == lists_here.items).mean() > 0.99


def test_sasrec_trained_with_ray_train_matches_in_process(engine: RayEngine, split) -> None:  # type: ignore[no-untyped-def]
    config = {
        "model": "sasrec",
        "loss": "sampled",  # the per-rank negatives path (the default is the full softmax here)
        "epochs": 3,
        "patience": 10,
        "hidden": 32,
        "valid_users": 0,
        "negatives": 256,
    }
    with open_engine("local") as local:
        _, expected = fit_and_evaluate(local, split, config)
    model, got = fit_and_evaluate(engine, split, config)
    assert model.name == "sasrec"  # loaded from rank 0's checkpoint
    for key in ("ndcg@10", "recall@10"):
        assert got.metrics[key] == pytest.approx(expected.metrics[key], rel=0.01), key


def test_ingest_on_ray_stores_what_in_process_stores(
    engine: RayEngine, retail_slice: Path, tmp_path: Path
) -> None:
    fmt = get_format("online-retail")
    reports, events = [], []
    for name, running in (("local", None), ("ray", engine)):
        settings = Settings(var_dir=tmp_path / name, pseudonym_key=TEST_KEY, ingest_batch_size=400)
        with open_store(f"sqlite:///{tmp_path / name}.db") as store:
            if running is None:
                with open_engine("local") as local:
                    report = ingest_on(local, store, retail_slice, fmt, settings)
            else:
                report = ingest_on(running, store, retail_slice, fmt, settings)
            reports.append(report.to_dict())
            events.append(sorted((e.user_id or "", e.item_id or "", e.ts) for e in store.iter_events()))
    drop = {"run_id", "seconds", "records_per_second", "path", "started_at", "finished_at"}
    assert {k: v for k, v in reports[1].items() if k not in drop} == {
        k: v for k, v in reports[0].items() if k not in drop
    }
    assert reports[0]["accepted"] > 2000 and events[1] == events[0]


def test_train_on_ray_keeps_top_lists_that_serving_reads(engine: RayEngine, tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "models")
    config = TrainingConfig(
        recommender={"model": "ease", "l2": 200.0}, bought_together=None, model_card=False
    )
    outcome, scoring = train(engine, retail_purchases(), registry, config, top_k=20)
    assert scoring["users"] == retail_purchases().n_users and scoring["k"] == 20
    info = registry.info(outcome.info.version)
    assert registry.verify(outcome.info.version) == []  # the lists are covered by the checksums
    lists = load_top_lists(info.path)  # type: ignore[arg-type]
    assert lists is not None
    model = registry.load(outcome.info.version).recommender
    user = str(model.user_map.external[5])
    assert (
        model.item_map.to_external(lists.items[5][lists.items[5] >= 0])
        == model.recommend([user], 20)[0].items
    )


# --- a sharded search index with each shard in its own process (SHELFWISE_SHARD_ENGINE=ray) -----------


@pytest.fixture(scope="module")
def sharded(engine: RayEngine, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """flipkart-1k in 3 shards (keyword + vectors), on disk, and the same vectors."""
    from shelfwise.search.documents import read_dataset
    from shelfwise.search.engine import SearchConfig
    from shelfwise.search.shards import build_sharded
    from tests.unit.search.test_shards import _vectors

    items = read_dataset("flipkart-1k")
    vectors = _vectors(len(items))
    directory = tmp_path_factory.mktemp("sharded") / "engine"
    config = SearchConfig(calibration_probes=0, min_similarity=-1.0)
    build_sharded(items, directory, shards=3, config=config, vectors=vectors, workers=1)
    return directory, vectors


def _answers(engine: Any, vectors: Any, mode: str, **kw: Any) -> list[Any]:
    import numpy as np

    from tests.unit.search.test_shards import _queries

    out = []
    for i, q in enumerate(_queries(engine.live_items())):
        near = vectors[(7 * i) % len(vectors)] + 0.3 * vectors[(11 * i + 1) % len(vectors)]
        result = engine.search(
            q, k=10, mode=mode, vector=(near / np.linalg.norm(near)).astype("float32"), **kw
        )
        out.append((q, result.item_ids, [h.score for h in result.hits], result.total, result.facets))
    return out


def test_ray_shard_actors_answer_as_the_thread_pool(sharded: tuple[Path, Any]) -> None:
    """Each shard in its own actor process; keyword top-10 ids and scores bit for bit the thread
    pool's, dense and hybrid the same ids (cosines to 1e-6), the same totals and facets, with and
    without a filter, and after removals (which reach a shared actor only as the caller's mask)."""
    import numpy as np

    from shelfwise.search.engine import Filters, SearchEngine
    from shelfwise.search.shard_actors import RayShards

    directory, vectors = sharded
    threads = SearchEngine.load(directory)
    remote = SearchEngine.load(directory, shard_engine="ray")
    backend = remote.keyword.shard_backend
    assert isinstance(backend, RayShards) and backend.shards == 3
    # rounds to actors wait on other processes: the hybrid issues its independent ones together
    assert remote.keyword.remote and remote.dense.remote
    assert not threads.keyword.remote and not threads.dense.remote
    pids = backend.pids()
    assert len(set(pids)) == 3 and os.getpid() not in pids  # three processes, none of them this one
    cheap = Filters(price_max=800.0)
    for mode in ("bm25", "dense", "hybrid"):
        for kw in ({}, {"filters": cheap}):
            expected, got = _answers(threads, vectors, mode, **kw), _answers(remote, vectors, mode, **kw)
            assert sum(len(e[1]) > 0 for e in expected) >= 40
            for (q, ids_a, scores_a, total_a, facets_a), (_, ids_b, scores_b, total_b, facets_b) in zip(
                expected, got, strict=True
            ):
                assert ids_b == ids_a, (mode, q)
                if mode == "bm25":
                    assert scores_b == scores_a, q
                else:
                    assert np.allclose(scores_b, scores_a, rtol=0, atol=1e-6), (mode, q)
                assert (total_b, facets_b) == (total_a, facets_a), (mode, q)
    gone = threads.search("shirt", k=3, mode="hybrid", vector=vectors[0]).item_ids
    for engine in (threads, remote):
        assert engine.remove(gone) == len(gone)
    for mode in ("bm25", "dense", "hybrid"):
        assert [a[1] for a in _answers(remote, vectors, mode)] == [
            a[1] for a in _answers(threads, vectors, mode)
        ]
    assert backend.pids() == pids  # the actors were not changed by the removal


def test_processes_loading_a_version_share_its_shard_actors(cluster: str, sharded: tuple[Path, Any]) -> None:
    """A second load, and another process joining the cluster (another API worker or replica),
    find the shards' actors by name instead of loading copies."""
    from shelfwise.search.engine import SearchEngine
    from shelfwise.search.shard_actors import RayShards

    directory, _ = sharded
    first = SearchEngine.load(directory, shard_engine="ray").keyword.shard_backend
    second = SearchEngine.load(directory, shard_engine="ray").keyword.shard_backend
    assert isinstance(first, RayShards) and isinstance(second, RayShards)
    assert second.pids() == first.pids()
    probe = (
        "import json\n"
        "from pathlib import Path\n"
        "from shelfwise.search.engine import SearchEngine\n"
        f"engine = SearchEngine.load(Path({str(directory)!r}), shard_engine='ray')\n"
        "ids = engine.search('shirt', k=5, mode='bm25').item_ids\n"
        "print(json.dumps({'pids': engine.keyword.shard_backend.pids(), 'ids': ids}))\n"
    )
    env = {**os.environ, "SHELFWISE_RAY_ADDRESS": cluster}
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, timeout=180, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    there = json.loads(done.stdout.strip().splitlines()[-1])
    here = SearchEngine.load(directory, shard_engine="ray")
    assert there == {"pids": first.pids(), "ids": here.search("shirt", k=5, mode="bm25").item_ids}


def _kill(actor: Any) -> None:
    """``ray.kill``, then wait until the actor no longer answers: the kill lands asynchronously, and
    a query sent before it does would still reach the old process."""
    ray.kill(actor, no_restart=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            ray.get(actor.call.remote("info"), timeout=5)
        except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError):
            return
        except ray.exceptions.GetTimeoutError:
            pass
        time.sleep(0.05)
    raise AssertionError("the killed actor still answers after 30 s")


def test_a_dead_shard_actor_is_started_again_or_the_query_says_why(
    sharded: tuple[Path, Any], tmp_path: Path
) -> None:
    import numpy as np

    from shelfwise.core.errors import UnavailableError
    from shelfwise.search.engine import SearchEngine
    from shelfwise.search.shard_actors import RayShards, ShardUnavailableError

    directory, vectors = sharded
    threads = SearchEngine.load(directory)
    remote = SearchEngine.load(directory, shard_engine="ray")
    backend = remote.keyword.shard_backend
    assert isinstance(backend, RayShards)
    before = backend.pids()
    _kill(backend.actors[1])
    # killed: created again from the same files, and the answer is unchanged
    for mode in ("bm25", "hybrid"):
        a = threads.search("men shirt", k=10, mode=mode, vector=vectors[3])
        b = remote.search("men shirt", k=10, mode=mode, vector=vectors[3])
        assert b.item_ids == a.item_ids and np.allclose([h.score for h in b.hits], [h.score for h in a.hits])
    after = backend.pids()
    assert after[0] == before[0] and after[2] == before[2] and after[1] != before[1]
    # killed, and its files gone: the query fails with a message (a 503), not a bare error
    copy = tmp_path / "engine"
    shutil.copytree(directory, copy)
    broken = SearchEngine.load(copy, shard_engine="ray")  # the same content: the same actors
    shutil.rmtree(copy / "shards" / "1")
    _kill(backend.actors[1])
    with pytest.raises(ShardUnavailableError, match="shard 1 does not answer") as caught:
        broken.search("men shirt", k=10, mode="bm25")
    assert isinstance(caught.value, UnavailableError) and caught.value.hint
    # the index whose files are there starts its shard again
    assert (
        remote.search("men shirt", k=10, mode="bm25").item_ids
        == threads.search("men shirt", k=10, mode="bm25").item_ids
    )


def test_index_actors_names_each_held_index_and_stops_those_no_server_answers_from(
    cluster: str, sharded: tuple[Path, Any], tmp_path: Path
) -> None:
    """Actors are detached: an index version no server answers from any more keeps its shards in
    memory until `shelfwise index actors --stop-unused` ends them. Served: the active version, the
    rollback target and the versions running experiments' arms answer from. (Last in this module:
    it ends the actors of the other tests' index.)"""
    from shelfwise.registry.indexes import IndexRegistry
    from shelfwise.search.documents import read_dataset
    from shelfwise.search.engine import SearchEngine
    from shelfwise.search.shard_actors import index_key, list_actors

    items = read_dataset("flipkart-1k")
    reg = IndexRegistry(tmp_path / "var" / "indexes", shard_engine="ray")
    v = [reg.build(items[:n], mode="bm25", shards=2, force=True).version for n in (600, 700, 800)]
    assert reg.served_versions() == [v[2], v[1]]  # active, then the rollback target
    key = {version: index_key(reg.root / version / "engine") for version in v}
    engines = {version: reg.load(version) for version in v}  # every version's actors exist now
    other = index_key(sharded[0])
    SearchEngine.load(sharded[0], shard_engine="ray")
    report = reg.shard_actors()
    assert report["stopped"] == []
    assert {r["key"]: (r["versions"], r["shards"], r["served"]) for r in report["indexes"]} == {
        other: ([], [0, 1, 2], False),  # not a version of this registry
        key[v[0]]: ([v[0]], [0, 1], False),
        key[v[1]]: ([v[1]], [0, 1], True),
        key[v[2]]: ([v[2]], [0, 1], True),
    }
    # an experiment's arm still answering from the oldest version keeps it
    kept = reg.shard_actors(also_served=[v[0]], stop=True)
    assert kept["stopped"] == [f"shelfwise-shard-{other}-{s}" for s in range(3)]
    assert set(list_actors()) == set(key.values())
    # the command, as an operator runs it: the oldest version's two actors end, the served answer
    env = {**os.environ, "SHELFWISE_RAY_ADDRESS": cluster, "SHELFWISE_VAR_DIR": str(tmp_path / "var")}
    done = subprocess.run(
        [str(Path(sys.executable).parent / "shelfwise"), "index", "actors", "--stop-unused", "--json"],
        env=env, capture_output=True, timeout=180, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout)
    assert out["stopped"] == [f"shelfwise-shard-{key[v[0]]}-{s}" for s in range(2)]
    assert out["served_versions"] == sorted(v[1:])
    assert list_actors() == {key[v[1]]: [0, 1], key[v[2]]: [0, 1]}
    for version in v[1:]:
        assert engines[version].search("shirt", k=5, mode="bm25").item_ids
