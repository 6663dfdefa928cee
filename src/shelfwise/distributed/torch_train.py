"""Data-parallel training of the PyTorch models with Ray Train (``TorchTrainer``, DDP over gloo on
CPU). Every worker runs the model's own ``fit`` — the same code as in-process: SASRec notices
``torch.distributed`` and trains on its share of each batch — and rank 0 hands the fitted model
back as a checkpoint (the model's ``save`` folder: ``.npy`` + JSON), which the driver loads.

The checkpoint lives under ``storage`` on this machine's disk: on a cluster of several machines it
must be a folder every node shares (NFS…), as Ray Train requires.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from shelfwise.recommend.base import Recommender
from shelfwise.registry.training import FitJob, fit_job


def _loop(config: dict[str, Any]) -> None:
    import ray.train

    model = fit_job(config["job"])
    if ray.train.get_context().get_world_rank() == 0:
        with tempfile.TemporaryDirectory(prefix="shelfwise-fit-") as folder:
            model.save(folder)
            ray.train.report(
                {"train_seconds": model.train_seconds},
                checkpoint=ray.train.Checkpoint.from_directory(folder),
            )
    else:
        ray.train.report({"train_seconds": model.train_seconds})


def fit_data_parallel(job: FitJob, *, workers: int, storage: Path) -> Recommender:
    """Fit ``job`` on ``workers`` Ray Train workers (one CPU each) and return rank 0's model."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    storage.mkdir(parents=True, exist_ok=True)
    trainer = TorchTrainer(
        _loop,
        train_loop_config={"job": job},
        torch_config=TorchConfig(backend="gloo"),
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=False, resources_per_worker={"CPU": 1}),
        run_config=RunConfig(storage_path=str(storage)),
    )
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"Ray Train returned no model: {result.error}")
    with result.checkpoint.as_directory() as folder:
        return Recommender.load(Path(folder))


__all__ = ["fit_data_parallel"]
