"""The pipeline on a real Ray cluster (a head and a worker node, processes on 127.0.0.1, one CPU
each) gives what it gives in-process: the same metrics, the same top lists, the same stored
events. SASRec is trained by Ray Train with DDP over both nodes' workers, each on half of every
batch with the dropout masks one process draws for the whole batch: the same steps up to float
summation order, so its metrics are held to the acceptance's ±1%."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

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
        stdout=logs[0], stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    procs = [head]
    try:
        time.sleep(3)
        worker = subprocess.Popen(
            [str(RAY), "start", "--address", address, "--node-ip-address", "127.0.0.1", *common],
            stdout=logs[1], stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        procs.append(worker)
        _wait_for_cpus(address, 2)
        yield address
    finally:
        if ray.is_initialized():
            ray.shutdown()
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
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
