"""The pipeline's steps on an engine: ingest batches → features → training → embeddings → batch
scoring. Each step is the in-process code with the engine's ``map``/``fit`` passed in, so
``--engine local`` and ``--engine ray`` run the same functions and give the same results (SASRec
trained data-parallel takes the same steps, with the same dropout draws, up to float summation order).

    >>> with open_engine("ray") as engine:                                   # doctest: +SKIP
    ...     outcome = train(engine, dataset, registry)   # fit, evaluate, register, top lists
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from shelfwise.core.parallel import chunks
from shelfwise.core.settings import Settings
from shelfwise.distributed.engine import Engine
from shelfwise.evaluation.ranking import EvalResult, evaluate
from shelfwise.features.dataset import Dataset
from shelfwise.features.splits import Split
from shelfwise.recommend.base import Recommender
from shelfwise.registry.toplists import TOPLISTS, TopLists, top_lists
from shelfwise.registry.training import FitJob, ProgressFn, TrainingConfig, TrainingOutcome, train_version
from shelfwise.registry.versions import ModelRegistry


def ingest_events(
    engine: Engine, store: Any, path: Path, fmt: Any, settings: Settings, **options: Any
) -> Any:
    """``store.ingest.ingest_events`` with the quality gate run over batches on ``engine``."""
    from shelfwise.store.ingest import ingest_events as ingest

    return ingest(store, path, fmt, settings, mapper=engine.map, **options)


def fit_and_evaluate(
    engine: Engine, split: Split, config: dict[str, Any], *, ks: Sequence[int] = (10, 20), **options: Any
) -> tuple[Recommender, EvalResult]:
    """Fit ``config`` on the split's training part on ``engine``, then rank every test user's
    items there too (chunks of users as tasks); the metrics are merged here."""
    (model,) = engine.fit([FitJob(dict(config), split.train)])
    result = evaluate(model, split, name=model.name, ks=ks, mapper=engine.map, **options)
    result.info["train_seconds"] = model.train_seconds
    return model, result


def _embed_chunk(batch_size: int, texts: list[str]) -> np.ndarray:
    from shelfwise.features.embeddings import embed_texts

    return embed_texts(texts, batch_size=batch_size)


def embed(engine: Engine, texts: Sequence[str], *, chunk: int = 512, batch_size: int = 64) -> np.ndarray:
    """Sentence embeddings (all-MiniLM-L6-v2, unit float32 rows) of ``texts``, ``chunk`` texts a
    task; a worker loads the model once and keeps it for the tasks after."""
    texts = list(texts)
    parts = [texts[lo:hi] for lo, hi in chunks(len(texts), chunk)]
    out = list(engine.map(_embed_chunk, parts, shared=batch_size))
    return np.concatenate(out) if out else np.zeros((0, 384), np.float32)


def score_all(engine: Engine, model: Recommender, *, k: int = 50, chunk_users: int = 2048) -> TopLists:
    """Every known shopper's top-``k`` (batch scoring), chunks of users as tasks."""
    return top_lists(model, k=k, chunk_users=chunk_users, mapper=engine.map)


def train(
    engine: Engine,
    dataset: Dataset,
    registry: ModelRegistry,
    config: TrainingConfig | None = None,
    *,
    top_k: int = 50,
    progress: ProgressFn | None = None,
    activate: bool = True,
    force: bool = False,
    **options: Any,
) -> tuple[TrainingOutcome, dict[str, Any]]:
    """``train_version`` on ``engine`` (its fits at once, held-out scoring in chunks), then the
    served model's top lists for every known shopper, kept with the version (``top_k=0``: none).

    The version is activated (through the gate, unless ``force``) only once its lists are attached:
    a serving process that saw it active earlier would precompute its shoppers' lists by scoring
    them a few at a time (on a 1M-item shop, minutes of CPU that the attached lists save)."""
    say = progress or (lambda _msg: None)
    lists_first = top_k > 0 and len(dataset) > 0  # a catalogue-only version has no shoppers to score
    outcome = train_version(
        dataset,
        registry,
        config,
        fitter=engine.fit,
        mapper=engine.map,
        progress=progress,
        activate=activate and not lists_first,
        force=force,
        **options,
    )
    scoring: dict[str, Any] = {"engine": engine.name, "workers": engine.workers}
    if not lists_first:
        return outcome, scoring
    if activate and not force:
        outcome.gate.raise_if_refused(outcome.info.version)  # refused: registered, not scored
    if outcome.info.metrics:
        say(f"batch scoring: top {top_k} for every known shopper ({engine.name})")
        started = time.perf_counter()
        model = registry.load(outcome.info.version).recommender
        lists = score_all(engine, model, k=top_k)
        registry.attach_arrays(outcome.info.version, TOPLISTS, lists.arrays(), lists.meta())
        seconds = round(time.perf_counter() - started, 3)
        scoring.update(users=int(lists.items.shape[0]), k=lists.k, seconds=seconds)
    if activate:
        registry.activate(outcome.info.version)
        outcome = replace(outcome, activated=True)
    return outcome, scoring


__all__ = ["embed", "fit_and_evaluate", "ingest_events", "score_all", "train"]
