"""`shelfwise serve` and `shelfwise models …`. Heavy imports stay inside."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Annotated, Any

import typer

from shelfwise.cli.common import (
    DbOption,
    JsonOption,
    emit,
    experiment_release_gate,
    load_settings,
    open_db,
    user_errors,
)


def _training_config(
    model: str, bundles: bool, settings: dict[str, Any] | None = None, precision: str | None = None
) -> Any:
    """What ``models train`` fits: the model's settings (``--config``) and, for models that keep
    factor matrices, the precision they are served at (``--precision``, as ``evaluate`` measures)."""
    from shelfwise.core.errors import ConfigError
    from shelfwise.recommend.registry import model_from_config
    from shelfwise.registry.training import TrainingConfig

    recommender = {**(settings or {}), "model": (settings or {}).get("model", model)}
    if recommender["model"] == "auto":
        if precision is not None or len(recommender) > 1:
            raise ConfigError(
                "--config settings and --precision need a named model, not auto",
                hint='name it with --model (e.g. --model als) or "model" in the JSON',
            )
        return TrainingConfig(
            recommender=recommender, bought_together={"model": "bought-together"} if bundles else None
        )
    if precision is not None:
        probe = model_from_config(recommender)
        if "serving_precision" not in type(probe.config).model_fields:
            raise ConfigError(
                f"model {recommender['model']!r} keeps no factor matrices to serve at {precision}",
                hint="--precision applies to the factor models (als, bpr)",
            )
        recommender["serving_precision"] = precision
    model_from_config(recommender)  # refuse unknown names and settings before reading the store
    return TrainingConfig(
        recommender=recommender, bought_together={"model": "bought-together"} if bundles else None
    )


def _train(
    db: str | None,
    model: str,
    *,
    bundles: bool,
    force: bool,
    settings: dict[str, Any] | None = None,
    precision: str | None = None,
    engine: str = "local",
    top_lists: int = 50,
    card_robustness: bool = True,
) -> dict[str, Any]:
    from shelfwise.distributed import open_engine, train
    from shelfwise.features.dataset import Dataset
    from shelfwise.registry import ModelRegistry

    config = _training_config(model, bundles, settings, precision)
    if not card_robustness:
        config = config.model_copy(update={"card_robustness_seconds": 0.0})
    registry = ModelRegistry(load_settings().models_root)
    with open_db(db) as store:
        typer.echo("reading the store's events…", err=True)
        ds = Dataset.from_store(store)
        store_id = store.store_id
    with open_engine(engine) as running:
        outcome, scoring = train(
            running,
            ds,
            registry,
            config,
            top_k=top_lists,
            force=force,
            progress=lambda msg: typer.echo(f"  {msg}", err=True),
            store_id=store_id,  # the version is served over this store only
        )
    return {**outcome.to_dict(), "top_lists": scoring}


def _first_start(db: str | None, model: str, settings: Any) -> subprocess.Popen[bytes] | None:
    """No version is active: train one. A small shop (``serve_train_on_start_events`` events at
    most) trains now, before the server listens, as ``models train`` would. A bigger one is served
    at once from the popularity of its events (seconds) while ``models train`` runs in a background
    process at a lower CPU priority (the model card's robustness experiment skipped: `shelfwise
    trust shilling` measures it); the server follows the registry and serves the model when it is
    activated. Returns that process (None when training finished here)."""
    from shelfwise.features.dataset import Dataset
    from shelfwise.registry import ModelRegistry
    from shelfwise.registry.training import first_start_version

    with open_db(db) as store:
        events = int(store.counts().get("events", 0))
    if events <= settings.serve_train_on_start_events:
        typer.echo("no active model version: training one (first start)", err=True)
        result = _train(db, model, bundles=True, force=False)
        ndcg = result["metrics"].get("ndcg@10")
        judged = "no events yet: catalogue only" if ndcg is None else f"held-out ndcg@10 {ndcg:.4f}"
        typer.echo(f"activated {result['version']} ({judged}, {result['seconds']:.1f} s)", err=True)
        return None
    typer.echo(
        f"no active model version and {events:,} events: serving popularity now, training {model} "
        "in the background (first start)",
        err=True,
    )
    registry = ModelRegistry(settings.models_root)
    with open_db(db) as store:
        ds = Dataset.from_store(store)
        store_id = store.store_id
    first = first_start_version(ds, registry, store_id=store_id)
    typer.echo(f"activated {first.info.version} (popularity, {first.seconds:.1f} s)", err=True)
    del ds
    cmd = [
        sys.executable,
        "-m",
        "shelfwise.cli.main",
        "models",
        "train",
        "--model",
        model,
        "--no-card-robustness",
    ]
    if db:
        cmd += ["--db", db]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, preexec_fn=_background_child)


def _background_child() -> None:
    """In the training child before it runs: a lower CPU priority than the server's, and (Linux)
    a SIGTERM when the server dies, however it dies."""
    import contextlib
    import ctypes
    import signal

    os.nice(10)
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG


def _require_store(url: str, *, create: bool) -> None:
    """A SQLite store that does not exist yet is a typo more often than a wish: refuse it (one
    line) unless ``--create`` says an empty shop is meant."""
    from shelfwise.core.errors import ShelfwiseError
    from shelfwise.store.analytical import sqlite_path

    path = sqlite_path(url)
    if path is not None and not path.exists() and not create:
        raise ShelfwiseError(
            f"no store at {path}",
            hint="load data first (`shelfwise ingest events FILE --db ...`), fix --db, or pass --create",
        )


def _refuse_foreign_model(registry: Any, db: str | None) -> None:
    """The registry's active version must have been trained on this store: serving a model of
    another store's data (the SQLite demo's, over a PostgreSQL shop) is refused, with what to do."""
    from shelfwise.registry import check_store

    active = registry.active
    if active is None:
        return
    with open_db(db) as store:
        check_store(registry.info(active), store.store_id)


def register(app: typer.Typer) -> None:
    models_app = typer.Typer(help="Model versions: train, list, activate, roll back.", no_args_is_help=True)
    app.add_typer(models_app, name="models")
    from shelfwise.cli.freshness import register as register_freshness

    register_freshness(models_app)  # models drift, models retrain

    @app.command()
    def serve(
        db: DbOption = None,
        port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8000,
        host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
        workers: Annotated[int, typer.Option("--workers", min=1, max=64)] = 1,
        model: Annotated[
            str | None, typer.Option("--model", help="model to train when none is active")
        ] = None,
        train: Annotated[bool, typer.Option("--train/--no-train", help="train on first start")] = True,
        create: Annotated[
            bool, typer.Option("--create", help="serve a new, empty SQLite store if none exists at --db")
        ] = False,
    ) -> None:
        """Serve the API (and pages) over the store; trains, registers and activates a model first
        when no version is active."""

        with user_errors():
            from shelfwise.registry import ModelRegistry

            settings = load_settings()
            _require_store(db or settings.store_url, create=create)
            registry = ModelRegistry(settings.models_root)
            _refuse_foreign_model(registry, db)
            trainer = None
            if registry.active is None and train:
                trainer = _first_start(db, model or settings.serve_model, settings)
            url = db or settings.store_url
            key_file = settings.var_dir / "api.key"
            from shelfwise.store.analytical import shown_url

            typer.echo(f"serving {shown_url(url)} on http://{host}:{port} (docs: /docs)", err=True)
            if not settings.api_key_hashes:
                typer.echo(
                    f"admin API key: {key_file} (header X-API-Key; more keys: `shelfwise keys create`)",
                    err=True,
                )
            if workers > 1 and not settings.redis_url:
                typer.echo(
                    "warning: without SHELFWISE_REDIS_URL each worker keeps its own sessions and "
                    "result cache: a shopper's event changes the next answers only of the worker "
                    "that took it (deletions reach every worker); set SHELFWISE_REDIS_URL to share them",
                    err=True,
                )
            from shelfwise.api.server import run_server

            try:
                run_server(settings, url, host=host, port=port, workers=workers)
            finally:
                if trainer is not None and trainer.poll() is None:
                    typer.echo("stopping the first model's training (the next start trains it)", err=True)
                    trainer.terminate()
                    try:
                        trainer.wait(timeout=20)
                    except subprocess.TimeoutExpired:
                        trainer.kill()

    @models_app.command("train")
    def models_train(
        db: DbOption = None,
        model: Annotated[
            str, typer.Option("--model", "-m", help="model name, or auto (by catalogue size, memory)")
        ] = "auto",
        bundles: Annotated[
            bool, typer.Option("--bundles/--no-bundles", help="also fit bought-together")
        ] = True,
        force: Annotated[bool, typer.Option("--force", help="activate even if the gate refuses")] = False,
        config: Annotated[
            str | None,
            typer.Option("--config", help="model settings as JSON (as `evaluate --config`), or @file.json"),
        ] = None,
        precision: Annotated[
            str | None,
            typer.Option("--precision", help="serve factor models at float32, float16 or int8"),
        ] = None,
        engine: Annotated[
            str,
            typer.Option(
                "--engine",
                help="local (this process) or ray (a Ray cluster: SHELFWISE_RAY_ADDRESS, else local)",
            ),
        ] = "local",
        top_lists: Annotated[
            int,
            typer.Option(
                "--top-lists",
                min=0,
                max=1000,
                help="precompute every known shopper's top K for serving (0: none)",
            ),
        ] = 50,
        card_robustness: Annotated[
            bool,
            typer.Option(
                "--card-robustness/--no-card-robustness",
                help="measure the model card's shilling robustness when a fit is quick (extra fits)",
            ),
        ] = True,
        as_json: JsonOption = False,
    ) -> None:
        """Train on the store's events, evaluate on a held-out period, register, and activate through
        the release gate (refused when worse than the active version on the same held-out set).
        What is measured is what is deployed: the version's metrics are those of the settings and
        precision given here."""
        from shelfwise.cli.common import json_object_option
        from shelfwise.core.errors import ConfigError

        with user_errors():
            if precision is not None and precision not in ("float32", "float16", "int8"):
                raise ConfigError(f"unknown precision {precision!r}", hint="use float32, float16 or int8")
            if engine not in ("local", "ray"):
                raise ConfigError(f"unknown engine {engine!r}", hint="use local or ray")
            settings = json_object_option(config)
            result = _train(
                db,
                model,
                bundles=bundles,
                force=force,
                settings=settings,
                precision=precision,
                engine=engine,
                top_lists=top_lists,
                card_robustness=card_robustness,
            )
        emit(
            result,
            as_json,
            lambda r: f"activated {r['version']}: ndcg@10 {r['metrics'].get('ndcg@10', float('nan')):.4f}",
        )

    @models_app.command("select")
    def models_select(
        db: DbOption = None,
        candidates: Annotated[
            str, typer.Option("--candidates", help="comma-separated models to train and compare")
        ] = "ease,hybrid",
        budget_ms: Annotated[
            float, typer.Option("--budget-ms", min=0, help="p99 latency budget of one recommendation request")
        ] = 15.0,
        bundles: Annotated[
            bool, typer.Option("--bundles/--no-bundles", help="also fit bought-together")
        ] = True,
        as_json: JsonOption = False,
    ) -> None:
        """Train each candidate on the same held-out split, time it as the server calls it, and
        activate the best one within the latency budget; the decision (every candidate's metric and
        latency) is kept in the registry and shown on the operations page."""
        from shelfwise.core.errors import ConfigError
        from shelfwise.features.dataset import Dataset
        from shelfwise.recommend.registry import model_from_config
        from shelfwise.registry import ModelRegistry
        from shelfwise.registry.selection import select_best

        with user_errors():
            names = [c.strip() for c in candidates.split(",") if c.strip()]
            if not names:
                raise ConfigError("--candidates names no model", hint="e.g. --candidates ease,hybrid")
            for name in names:
                model_from_config({"model": name})  # an unknown name fails before the store is read
            registry = ModelRegistry(load_settings().models_root)
            with open_db(db) as store:
                typer.echo("reading the store's events…", err=True)
                ds = Dataset.from_store(store)
                store_id = store.store_id
            outcome = select_best(
                ds,
                registry,
                names,
                budget_ms=budget_ms,
                bundles=bundles,
                store_id=store_id,
                progress=lambda msg: typer.echo(f"  {msg}", err=True),
            )
        emit(outcome.to_dict(), as_json, lambda r: r["reason"])

    @models_app.command("list")
    def models_list(as_json: JsonOption = False) -> None:
        """Registered versions with their held-out metrics; the active one is marked."""

        with user_errors():
            from shelfwise.registry import ModelRegistry

            registry = ModelRegistry(load_settings().models_root)
            pointer = registry.pointer()
            rows = [{**i.to_dict(), "active": i.version == pointer.active} for i in registry.list()]
        emit(
            {"active": pointer.active, "versions": rows},
            as_json,
            lambda p: (
                "\n".join(
                    f"{'*' if r['active'] else ' '} {r['version']}  ndcg@10={r['metrics'].get('ndcg@10', -1):.4f}"  # noqa: E501
                    for r in p["versions"]
                )
                or "no versions"
            ),
        )

    @models_app.command("activate")
    def models_activate(
        version: Annotated[str, typer.Argument()],
        force: Annotated[bool, typer.Option("--force")] = False,
        require_experiment: Annotated[
            str | None,
            typer.Option("--require-experiment", help="also require this online experiment's arm to win"),
        ] = None,
        arm: Annotated[str | None, typer.Option("--arm", help="the experiment's arm serving VERSION")] = None,
        lists: Annotated[
            bool,
            typer.Option(
                "--lists/--no-lists",
                help="batch-score the shoppers' top lists first if the version has none (servers slice them)",
            ),
        ] = True,
        db: DbOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Activate a registered version (servers follow within a second). A version without top
        lists (trained by older code, `evaluate` or `dp train`) gets them first, through its gate."""

        out: dict[str, Any] = {"active": version}
        with user_errors():
            from shelfwise.registry import ModelRegistry, release

            registry = ModelRegistry(load_settings().models_root)
            if require_experiment is not None:
                out["experiment_gate"] = experiment_release_gate(
                    db, require_experiment, arm, version, force=force
                )
            if lists:
                from shelfwise.registry.training import attach_top_lists, recorded_gate

                if not force:  # a refused version is not scored
                    recorded_gate(registry, version).raise_if_refused(version)
                typer.echo(f"checking {version}'s top lists…", err=True)
                scored = attach_top_lists(registry, version, k=load_settings().precompute_k)
                if scored is not None:
                    out["top_lists"] = scored
                    typer.echo(
                        f"  scored {scored['users']:,} shoppers in {scored['seconds']:.1f} s", err=True
                    )
            release(registry, version, force=force)
        emit(out, as_json, lambda p: f"active: {p['active']}")

    @models_app.command("rollback")
    def models_rollback(as_json: JsonOption = False) -> None:
        """Make the previously active version active again."""

        with user_errors():
            from shelfwise.registry import ModelRegistry

            started = time.perf_counter()
            pointer = ModelRegistry(load_settings().models_root).rollback()
        emit(
            {"active": pointer.active, "seconds": round(time.perf_counter() - started, 4)},
            as_json,
            lambda p: f"active: {p['active']}",
        )
