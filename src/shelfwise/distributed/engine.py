"""Where the pipeline's steps run: in this process (``local``, the default) or on a Ray cluster.

An ``Engine`` offers the two things the steps need: ``map`` (a ``shelfwise.core.parallel.Mapper``:
independent parts, in order) and ``fit`` (a ``registry.training.Fitter``: independent models).
``RayEngine`` joins the cluster at ``SHELFWISE_RAY_ADDRESS`` (or ``address``) when given one, and
otherwise starts a local one: no dashboard, ``num_cpus`` set, its files under ``/tmp``, workers'
logs kept out of the driver's output. Nothing is downloaded: workers run this interpreter, with
this venv's packages.

PyTorch models (SASRec) are fitted with Ray Train, data-parallel (DDP over gloo on CPU) on
``train_workers`` workers; the others are fitted as one Ray task each, all at once.

    >>> with open_engine("ray") as engine:                               # doctest: +SKIP
    ...     result = evaluate(model, split, mapper=engine.map)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

from shelfwise.core.errors import ConfigError
from shelfwise.core.parallel import local_map
from shelfwise.core.ray_cluster import ADDRESS_ENV, TMP_ROOT, connect, ray_module
from shelfwise.recommend.base import Recommender
from shelfwise.registry.training import FitJob, fit_job, fit_local

EngineName = Literal["local", "ray"]
TORCH_MODELS = frozenset({"sasrec"})  # fitted with Ray Train (data-parallel)


class LocalEngine:
    """Everything in this process, one part after another: the default."""

    name = "local"
    workers = 1

    def map(
        self, fn: Callable[[Any, Any], Any], parts: Iterable[Any], *, shared: Any = None
    ) -> Iterator[Any]:
        return local_map(fn, parts, shared=shared)

    def fit(self, jobs: list[FitJob]) -> list[Recommender]:
        return fit_local(jobs)

    def close(self) -> None:
        pass


def _ray() -> Any:
    return ray_module()


def _apply(fn: Callable[[Any, Any], Any], shared: Any, part: Any) -> Any:
    return fn(shared, part)


class RayEngine:
    """The steps as Ray tasks; see the module docstring.

    ``workers`` bounds the tasks in flight (by default the cluster's CPUs), ``train_workers`` the
    Ray Train workers of a PyTorch fit; ``num_cpus`` sizes a local cluster this engine starts."""

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        num_cpus: int | None = None,
        workers: int | None = None,
        train_workers: int = 2,
    ) -> None:
        ray = _ray()
        self._started = connect(address, num_cpus=num_cpus)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.workers = max(1, workers or cpus)
        self.train_workers = max(1, min(train_workers, cpus))
        self._task = ray.remote(num_cpus=1, max_retries=0)(_apply)
        self._fit_task = ray.remote(num_cpus=1, max_retries=0)(fit_job)

    def map(
        self, fn: Callable[[Any, Any], Any], parts: Iterable[Any], *, shared: Any = None
    ) -> Iterator[Any]:
        """Each part a Ray task, ``workers`` running at a time, results in the parts' order;
        ``shared`` is put into the object store once (an ``ObjectRef`` is passed on as it is).
        Parts are read lazily (a stream stays a stream).

        A worker gets the next part as soon as *its* task ends, not when the oldest one does (a
        slow part would otherwise leave the other workers idle); results that finish early wait
        here for their turn, at most ``4 × workers`` of them."""
        ray = _ray()
        ref = shared if isinstance(shared, ray.ObjectRef) else ray.put(shared)
        window = 4 * self.workers
        running: dict[Any, int] = {}  # task ref -> part index
        ready: dict[int, Any] = {}  # part index -> finished task ref
        nxt = 0

        def wait_any() -> None:
            done, _ = ray.wait(list(running), num_returns=1)
            for task in done:
                ready[running.pop(task)] = task

        for i, part in enumerate(parts):
            while len(running) >= self.workers or len(running) + len(ready) >= window:
                if running:
                    wait_any()
                while nxt in ready:
                    yield ray.get(ready.pop(nxt))
                    nxt += 1
            running[self._task.remote(fn, ref, part)] = i
        while running or ready:
            if running and nxt not in ready:
                wait_any()
            while nxt in ready:
                yield ray.get(ready.pop(nxt))
                nxt += 1

    def fit(self, jobs: list[FitJob]) -> list[Recommender]:
        """The plain models as tasks, all at once; then each PyTorch model with Ray Train."""
        ray = _ray()
        refs = {i: self._fit_task.remote(job) for i, job in enumerate(jobs) if not _is_torch(job)}
        out: dict[int, Recommender] = {i: ray.get(ref) for i, ref in refs.items()}
        for i, job in enumerate(jobs):
            if i not in out:
                from shelfwise.distributed.torch_train import fit_data_parallel

                out[i] = fit_data_parallel(job, workers=self.train_workers, storage=TMP_ROOT / "train")
        return [out[i] for i in range(len(jobs))]

    def close(self) -> None:
        if self._started:
            _ray().shutdown()
            self._started = False


def _is_torch(job: FitJob) -> bool:
    return str(job.config.get("model")) in TORCH_MODELS


Engine = LocalEngine | RayEngine


@contextmanager
def open_engine(name: str = "local", **options: Any) -> Iterator[Engine]:
    """The engine named ``local`` or ``ray`` (options: ``RayEngine``'s), closed on exit."""
    if name not in ("local", "ray"):
        raise ConfigError(f"unknown engine {name!r}", hint="use local or ray")
    engine: Engine = LocalEngine() if name == "local" else RayEngine(**options)
    try:
        yield engine
    finally:
        engine.close()


__all__ = ["ADDRESS_ENV", "Engine", "EngineName", "LocalEngine", "RayEngine", "open_engine"]
