"""Train, evaluate, register and (through the gate) release a model version.

What is measured and what is served: the candidate is fitted on a temporal split's training part
and evaluated on its held-out part (the version's ``metrics``); then, with ``refit=True`` (the
default), the *same config* is fitted again on every event so the served model knows the latest
items and shoppers. The metrics describe the config's quality; the served artifact is the refit.
``refit=False`` serves the evaluated model itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from shelfwise.core.parallel import Mapper, local_map
from shelfwise.evaluation.protocol import basket_hit_rate, make_split
from shelfwise.evaluation.ranking import evaluate
from shelfwise.features.dataset import Dataset
from shelfwise.recommend.base import Recommender
from shelfwise.recommend.memory import MatrixShape
from shelfwise.recommend.registry import model_from_config
from shelfwise.recommend.sizing import AUTO, resolve_config
from shelfwise.registry.gate import GateDecision
from shelfwise.registry.toplists import TOPLISTS, covers, load_top_lists, top_lists
from shelfwise.registry.versions import ModelRegistry, RegistryError, VersionInfo

ProgressFn = Callable[[str], None]


@dataclass(frozen=True)
class FitJob:
    """One model to fit: a config, the events it learns from, and whether the shilling defence
    fits it without flagged accounts. Jobs are independent, so a ``Fitter`` may run them at once."""

    config: dict[str, Any]
    dataset: Dataset
    defended: bool = False


Fitter = Callable[[list[FitJob]], list[Recommender]]


def fit_job(job: FitJob) -> Recommender:
    """Fit one job (the same function in-process and on a worker)."""
    if not job.defended:
        return model_from_config(job.config).fit(job.dataset)
    from shelfwise.evaluation.robustness import defended_fit

    model, _ = defended_fit(job.config, job.dataset)
    return model  # type: ignore[no-any-return]


def fit_local(jobs: list[FitJob]) -> list[Recommender]:
    """The in-process ``Fitter``: one job after another."""
    return [fit_job(job) for job in jobs]


CATALOGUE_PRIOR = 1e-6  # the popularity every item gets before any event: ties, in catalogue order


class TrainingConfig(BaseModel):
    """What a version is made of and how it is judged."""

    model_config = ConfigDict(extra="forbid")

    recommender: dict[str, Any] = Field(
        default_factory=lambda: {"model": "auto"},
        description='a model config; {"model": "auto"} chooses by catalogue size and memory',
    )
    bought_together: dict[str, Any] | None = Field(default_factory=lambda: {"model": "bought-together"})
    test_fraction: float = Field(0.2, gt=0, lt=1)
    refit: bool = True
    gate_metric: str = "ndcg@10"
    gate_tolerance: float = Field(0.0, ge=0)
    shilling_defence: bool = Field(
        True, description="fit without accounts flagged as shilling (they keep their own history)"
    )
    model_card: bool = Field(True, description="write model_card.json and MODEL_CARD.md beside the version")
    card_robustness_seconds: float = Field(
        20.0, ge=0, description="measure robustness for the card when one fit takes at most this long"
    )


@dataclass(frozen=True)
class TrainingOutcome:
    info: VersionInfo
    gate: GateDecision
    activated: bool
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.info.to_dict(),
            "gate": self.gate.to_dict(),
            "activated": self.activated,
            "seconds": round(self.seconds, 3),
        }


def _window(ds: Dataset) -> dict[str, Any]:
    return {
        "min_ts": int(ds.ts.min()) if len(ds) else None,
        "max_ts": int(ds.ts.max()) if len(ds) else None,
        "events": len(ds),
        "users": ds.n_users,
        "items": ds.n_items,
    }


def _score(
    model: Recommender, split: Any, metric: str, mapper: Mapper = local_map
) -> tuple[float, dict[str, float]]:
    result = evaluate(model, split, name=model.name, ks=(10, 20), mapper=mapper)
    metrics = {k: round(float(v), 6) for k, v in result.metrics.items()}
    if metric not in metrics:
        raise RegistryError(f"gate metric {metric!r} is not computed", hint=f"one of {sorted(metrics)}")
    return metrics[metric], metrics


def train_version(
    dataset: Dataset,
    registry: ModelRegistry,
    config: TrainingConfig | None = None,
    *,
    activate: bool = True,
    force: bool = False,
    progress: ProgressFn | None = None,
    store_id: str | None = None,
    ledger: Any | None = None,
    fitter: Fitter = fit_local,
    mapper: Mapper = local_map,
) -> TrainingOutcome:
    """Fit, evaluate on held-out data, register; then release through the gate when ``activate``.
    ``store_id`` (``Store.store_id`` of the store ``dataset`` came from) binds the version to that
    store: a server over another store refuses to serve it. ``fitter`` fits the (independent)
    models — candidate, bought-together, the active config's baseline and the refits — and
    ``mapper`` runs the held-out scoring: both in-process by default, or on a cluster
    (``shelfwise.distributed``), with the same results.

    Raises ``GateRefusedError`` (after registering the version, inactive) when the candidate is worse
    than the active version on the same held-out set and ``force`` is False."""
    started = time.perf_counter()
    config = config or TrainingConfig()
    say = progress or (lambda _msg: None)
    if len(dataset) == 0 and dataset.n_items > 0 and registry.active is None:
        return _catalogue_version(dataset, registry, activate=activate, store_id=store_id, say=say)
    if len(dataset) == 0:
        raise RegistryError("no user-item events to train on", hint="ingest events first")
    if config.recommender.get("model") == AUTO:
        resolved, why = resolve_config(config.recommender, MatrixShape.of(dataset.matrix()))
        say(f"model auto: {why}")
        config = config.model_copy(update={"recommender": resolved})
    split = make_split(dataset, "temporal", test_fraction=config.test_fraction)
    if split.test.nnz == 0:
        raise RegistryError(
            "nothing to hold out for the gate", hint="more events (over more time) are needed"
        )

    dp_epsilon = config.recommender.get("dp_epsilon")
    if dp_epsilon is not None:
        # the served list is a release: its ε is spent (or refused) before anything is fitted
        if ledger is None:
            raise RegistryError(
                "a model on differentially private counts needs the store's privacy ledger",
                hint="train it with `shelfwise trust dp train`",
            )
        ledger.spend(
            f"recommend:{config.recommender['model']}",
            float(dp_epsilon),
            mechanism="opendp-laplace",
            sensitivity=float(config.recommender.get("dp_max_contributions", 20)),
            scale=float(config.recommender.get("dp_max_contributions", 20)) / float(dp_epsilon),
            detail={"config": config.recommender},
        )
    active_version = registry.active
    active_info = registry.info(active_version) if active_version else None
    # a version with no held-out metrics (catalogue only, or the popularity list a first start
    # serves while this model trains) was never measured: there is nothing to beat
    active_cfg = active_info.config["recommender"] if active_info and active_info.metrics else None
    defended = config.shilling_defence
    jobs = {"candidate": FitJob(config.recommender, split.train, defended)}
    if config.bought_together is not None:
        jobs["bundles"] = FitJob(config.bought_together, split.train)
    if active_cfg is not None:
        jobs["baseline"] = FitJob(active_cfg, split.train)
    if config.refit:
        jobs["served"] = FitJob(config.recommender, dataset, defended)
        if config.bought_together is not None:
            jobs["served_bundles"] = FitJob(config.bought_together, dataset)
    say(
        f"fit {config.recommender['model']} on the training part"
        + (", bought-together" if "bundles" in jobs else "")
        + (f", the active {active_version} config for the gate" if active_cfg else "")
        + (" and the refits on every event for serving" if config.refit else "")
    )
    fitted = dict(zip(jobs, fitter(list(jobs.values())), strict=True))
    candidate = fitted["candidate"]
    value, metrics = _score(candidate, split, config.gate_metric, mapper)

    bundles: Recommender | None = fitted.get("bundles")
    if bundles is not None:
        cutoff = int(split.info["cutoff_ms"]) if split.info else 0
        held_out = dataset.select(dataset.ts >= cutoff)
        metrics.update({f"bundles_{k}": v for k, v in basket_hit_rate(bundles, held_out).items()})

    baseline: float | None = None
    if "baseline" in fitted:
        baseline, _ = _score(fitted["baseline"], split, config.gate_metric, mapper)
    decision = GateDecision(
        metric=config.gate_metric,
        candidate=value,
        active=baseline,
        active_version=active_version,
        tolerance=config.gate_tolerance,
    )

    served = {"recommender": candidate}
    if bundles is not None:
        served["bought_together"] = bundles
    if config.refit:
        served = {"recommender": fitted["served"]}
        if "served_bundles" in fitted:
            served["bought_together"] = fitted["served_bundles"]

    info = registry.register(
        served,
        metrics=metrics,
        data_window=_window(dataset),
        evaluation={
            "protocol": "temporal",
            "test_fraction": config.test_fraction,
            "cutoff_ms": split.info.get("cutoff_ms") if split.info else None,
            "users_evaluated": len(split.test_users),
            "train_window": _window(split.train),
            "served": "refit on all events" if config.refit else "the evaluated model",
            "gate": decision.to_dict(),
        },
        parent=active_version,
        store_id=store_id,
    )
    if config.model_card:
        say("write the model card")
        _write_card(registry, info, candidate, split, dataset, config)
    activated = False
    if activate:
        if not force:
            decision.raise_if_refused(info.version)
        registry.activate(info.version)
        activated = True
    return TrainingOutcome(
        info=info, gate=decision, activated=activated, seconds=time.perf_counter() - started
    )


def _catalogue_version(
    dataset: Dataset, registry: ModelRegistry, *, activate: bool, store_id: str | None, say: ProgressFn
) -> TrainingOutcome:
    """A first version for a shop with a catalogue and no events yet, so ``serve`` can start: item
    pages get content similarity (TF-IDF over titles, categories, brands), and every available item
    the same small prior, so lists show the catalogue rather than nothing. Nothing can be held out,
    so it has no metrics; the first version trained on events replaces it (it has none to beat)."""
    started = time.perf_counter()
    say("no events yet: a catalogue-only version (content similarity, every available item equal)")
    model = model_from_config({"model": "content-tfidf"}).fit(dataset)
    model.state.popularity[:] = np.where(model.state.attributes.available, CATALOGUE_PRIOR, 0.0)
    info = registry.register(
        {"recommender": model},
        metrics={},
        data_window=_window(dataset),
        evaluation={"protocol": "none: no events to hold out", "served": "catalogue only"},
        store_id=store_id,
    )
    decision = GateDecision(metric="ndcg@10", candidate=0.0, active=None, active_version=None, tolerance=0.0)
    if activate:
        registry.activate(info.version)
    return TrainingOutcome(
        info=info, gate=decision, activated=activate, seconds=time.perf_counter() - started
    )


def first_start_version(
    dataset: Dataset, registry: ModelRegistry, *, store_id: str | None = None, say: ProgressFn | None = None
) -> TrainingOutcome:
    """What ``serve`` answers with while its first real model trains in the background: the
    shop's overall popularity on every event (seconds even for a big shop; no held-out evaluation,
    so no metrics). The first trained version replaces it: it has nothing measured to beat.
    A shop with a catalogue and no events gets the catalogue-only version instead."""
    started = time.perf_counter()
    if len(dataset) == 0:
        return _catalogue_version(
            dataset, registry, activate=True, store_id=store_id, say=say or (lambda _m: None)
        )
    if say is not None:
        say("first start: serving popularity while the model trains in the background")
    model = model_from_config({"model": "popular"}).fit(dataset)
    info = registry.register(
        {"recommender": model},
        metrics={},
        data_window=_window(dataset),
        evaluation={
            "protocol": "none: served on first start while the chosen model trains",
            "served": "popularity over every event",
        },
        store_id=store_id,
    )
    registry.activate(info.version)
    decision = GateDecision(metric="ndcg@10", candidate=0.0, active=None, active_version=None, tolerance=0.0)
    return TrainingOutcome(info=info, gate=decision, activated=True, seconds=time.perf_counter() - started)


def _write_card(
    registry: ModelRegistry,
    info: VersionInfo,
    candidate: Recommender,
    split: Any,
    dataset: Dataset,
    config: TrainingConfig,
) -> None:
    import json

    from shelfwise.evaluation.model_card import build_card, card_fairness, card_markdown

    fairness = card_fairness(candidate, split)
    robustness: dict[str, Any] = {"measured": False}
    if candidate.train_seconds <= config.card_robustness_seconds:
        from shelfwise.evaluation.robustness import Attack, shilling_experiment

        try:
            robustness = {
                "measured": True,
                **shilling_experiment(dataset, model=config.recommender, attack=Attack()),
            }
        except (ValueError, IndexError) as exc:  # too few items or shoppers to stage an attack
            robustness = {"measured": False, "reason": f"no attack could be staged on this data ({exc})"}
    elif config.card_robustness_seconds == 0:
        robustness["reason"] = "not measured when trained (run `shelfwise trust shilling` for this model)"
    else:
        robustness["reason"] = (
            f"one fit takes {candidate.train_seconds:.0f} s; run `shelfwise trust shilling` for this model"
        )
    card = build_card(
        version=info.version,
        model_name=info.model,
        config=info.config.get("recommender", {}),
        data_window=info.data_window,
        metrics=info.metrics,
        evaluation=info.evaluation,
        fairness=fairness,
        robustness=robustness,
    )
    registry.attach(
        info.version,
        {"model_card.json": json.dumps(card, indent=2, default=str), "MODEL_CARD.md": card_markdown(card)},
    )


def recorded_gate(registry: ModelRegistry, version: str) -> GateDecision:
    """The gate's decision recorded when the version was trained."""
    info = registry.info(version)
    gate = info.evaluation.get("gate") or {}
    return GateDecision(
        metric=gate.get("metric", "ndcg@10"),
        candidate=float(gate.get("candidate", info.metrics.get("ndcg@10", 0.0))),
        active=gate.get("active"),
        active_version=gate.get("active_version"),
        tolerance=float(gate.get("tolerance", 0.0)),
    )


def release(registry: ModelRegistry, version: str, *, force: bool = False) -> GateDecision:
    """Activate an already registered version through the gate recorded when it was trained."""
    decision = recorded_gate(registry, version)
    if not force:
        decision.raise_if_refused(version)
    registry.activate(version)
    return decision


def attach_top_lists(registry: ModelRegistry, version: str, *, k: int = 50) -> dict[str, Any] | None:
    """Batch-score and keep with ``version`` every known shopper's top ``k`` when it has no lists
    that long (trained by older code, by ``evaluate`` or ``dp train``): a server that activates it
    then slices them instead of scoring its shoppers a few at a time (minutes on a 1M-item shop).
    None when the version already has them, or has no shoppers to score."""
    info = registry.info(version)
    assert info.path is not None
    model = registry.load(version).recommender
    n_users = len(model.user_map)
    if n_users == 0 or covers(load_top_lists(info.path), k, model):
        return None
    started = time.perf_counter()
    lists = top_lists(model, k=k)
    registry.attach_arrays(version, TOPLISTS, lists.arrays(), lists.meta())
    return {
        "users": int(lists.items.shape[0]),
        "k": lists.k,
        "seconds": round(time.perf_counter() - started, 3),
    }


def data_window(ds: Dataset) -> dict[str, Any]:
    """The training data window of a dataset (min/max event time, sizes)."""
    return _window(ds)


__all__ = [
    "FitJob",
    "Fitter",
    "TrainingConfig",
    "TrainingOutcome",
    "attach_top_lists",
    "data_window",
    "first_start_version",
    "fit_job",
    "fit_local",
    "recorded_gate",
    "release",
    "train_version",
]
