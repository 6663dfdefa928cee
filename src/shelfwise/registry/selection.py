"""Serve the best model that meets the latency budget.

Each candidate (``ease``, ``hybrid``, …) is trained and registered (inactive) through the usual
``train_version`` path, so each carries the same held-out metric on the same temporal split. Then each
registered version is loaded as a server loads it and timed: ``recommend([user], k)`` for a sample of
known shoppers, one at a time, uncached, in this process. The candidate with the best held-out
metric whose p99 meets the budget is activated; the decision, with every candidate's metric and
latency, is written to ``SELECTION.json`` in the registry (the operations page shows it).

    outcome = select_best(dataset, registry, ["ease", "hybrid"], budget_ms=15.0)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shelfwise.features.dataset import Dataset
from shelfwise.registry.training import TrainingConfig, train_version
from shelfwise.registry.versions import ModelRegistry, RegistryError, write_json_atomic

SELECTION = "SELECTION.json"


@dataclass
class Timed:
    model: str
    version: str
    metric: float
    p50_ms: float
    p99_ms: float
    train_seconds: float
    within_budget: bool

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class SelectionOutcome:
    chosen: str | None
    budget_ms: float
    metric: str
    candidates: list[Timed] = field(default_factory=list)
    reason: str = ""
    at: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "chosen": self.chosen,
            "budget_ms": self.budget_ms,
            "metric": self.metric,
            "reason": self.reason,
            "at": self.at,
            "candidates": [c.to_dict() for c in self.candidates],
        }


def time_version(
    registry: ModelRegistry, version: str, users: Sequence[str], *, k: int = 10
) -> tuple[float, float]:
    """(p50, p99) milliseconds of ``recommend([user], k)`` over ``users``, each once, after a warm-up."""
    if not users:
        return 0.0, 0.0
    model = registry.load(version).recommender
    for u in users[:5]:
        model.recommend([u], k)
    took = []
    for u in users:
        started = time.perf_counter()
        model.recommend([u], k)
        took.append((time.perf_counter() - started) * 1000)
    arr = np.asarray(took)
    return float(np.percentile(arr, 50)), float(np.percentile(arr, 99))


def select_best(
    dataset: Dataset,
    registry: ModelRegistry,
    candidates: Sequence[str | dict[str, Any]],
    *,
    budget_ms: float = 15.0,
    bundles: bool = True,
    sample_users: int = 300,
    store_id: str | None = None,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> SelectionOutcome:
    """Train every candidate, time each, activate the best one within ``budget_ms`` (p99)."""
    say = progress or (lambda _msg: None)
    if not candidates:
        raise RegistryError("no candidate models to choose from", hint="e.g. --candidates ease,hybrid")
    timed: list[Timed] = []
    metric = "ndcg@10"
    rng = np.random.default_rng(seed)
    users: list[str] = []
    for cand in candidates:
        recommender = {"model": cand} if isinstance(cand, str) else dict(cand)
        config = TrainingConfig(
            recommender=recommender, bought_together={"model": "bought-together"} if bundles else None
        )
        metric = config.gate_metric
        say(f"candidate {recommender['model']}: train and hold out")
        outcome = train_version(dataset, registry, config, activate=False, store_id=store_id, progress=say)
        if not users:
            known = registry.load(outcome.info.version).recommender.user_map.external
            pick = rng.choice(len(known), size=min(sample_users, len(known)), replace=False)
            users = [str(known[i]) for i in pick]
        say(f"candidate {recommender['model']}: time {len(users)} single requests")
        p50, p99 = time_version(registry, outcome.info.version, users)
        timed.append(
            Timed(
                model=str(recommender["model"]),
                version=outcome.info.version,
                metric=float(outcome.gate.candidate),
                p50_ms=round(p50, 3),
                p99_ms=round(p99, 3),
                train_seconds=round(outcome.seconds, 1),
                within_budget=p99 <= budget_ms,
            )
        )
    fitting = [t for t in timed if t.within_budget]
    result = SelectionOutcome(
        chosen=None,
        budget_ms=budget_ms,
        metric=metric,
        candidates=timed,
        at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    if fitting:
        best = max(fitting, key=lambda t: t.metric)
        registry.activate(best.version)
        result.chosen = best.version
        others = ", ".join(
            f"{t.model} {t.metric:.4f} (p99 {t.p99_ms:.1f} ms)" for t in timed if t is not best
        )
        result.reason = (
            f"{best.model}: best {metric} {best.metric:.4f} with p99 {best.p99_ms:.1f} ms within the "
            f"{budget_ms:g} ms budget; others: {others or 'none'}"
        )
    else:
        result.reason = f"no candidate met the {budget_ms:g} ms p99 budget; the active version is kept"
    write_json_atomic(registry.root / SELECTION, result.to_dict())
    return result


def last_selection(registry: ModelRegistry) -> dict[str, Any] | None:
    """The last ``select_best`` decision, for the operations page (None when there was none)."""
    import json

    path = registry.root / SELECTION
    try:
        return dict(json.loads(path.read_text()))
    except (FileNotFoundError, ValueError):
        return None
