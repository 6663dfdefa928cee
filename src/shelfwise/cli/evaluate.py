"""`shelfwise evaluate`: split, fit on the training part, rank every item, print metrics.
Heavy imports go inside the command."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from shelfwise.cli.common import emit, json_object_option, open_db, user_errors
from shelfwise.cli.progress import bytes_bar, steps_bar

KS = (10, 20)


def _load_dataset(data: Path | None, fmt: str, db: str | None) -> Any:
    from shelfwise.core.errors import InputFileError
    from shelfwise.features.dataset import Dataset

    if data is not None and db is not None:
        raise InputFileError("give --data PATH or --db URL, not both")
    if data is None:
        with open_db(db) as store:
            ds = Dataset.from_store(store)
        if len(ds) == 0:
            raise InputFileError(
                "the store holds no user-item events", hint="run `shelfwise ingest events` first"
            )
        return ds
    if not data.exists():
        raise InputFileError(f"{data}: no such file")
    if not sys.stderr.isatty():
        return Dataset.from_file(data, fmt)
    with bytes_bar(f"read {data.name}") as progress:
        return Dataset.from_file(data, fmt, progress=progress)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the top-level app."""

    @app.command()
    def evaluate(
        data: Annotated[
            Path | None, typer.Option("--data", help="events file (e.g. one user a line: user item item …)")
        ] = None,
        fmt: Annotated[str, typer.Option("--format", "-f", help="format of --data")] = "sequences",
        db: Annotated[str | None, typer.Option("--db", help="evaluate on the store's events instead")] = None,
        protocol: Annotated[
            str | None,
            typer.Option("--protocol", help="loo (last item per user) or temporal (global cut-off)"),
        ] = None,
        model: Annotated[str, typer.Option("--model", "-m", help="model name; see --list-models")] = "ease",
        config: Annotated[
            str | None,
            typer.Option("--config", help="model settings as JSON, e.g. '{\"l2\": 300}', or @file.json"),
        ] = None,
        compare: Annotated[
            str | None, typer.Option("--compare", help="a second model, for a paired significance test")
        ] = None,
        k: Annotated[int, typer.Option("--k", min=1, help="cut-off reported besides 10 and 20")] = 10,
        test_fraction: Annotated[
            float, typer.Option("--test-fraction", min=0.01, max=0.9, help="temporal: share held out")
        ] = 0.2,
        report: Annotated[
            Path | None, typer.Option("--report", help="directory for report.md, metrics.json and plots")
        ] = None,
        engine: Annotated[
            str,
            typer.Option(
                "--engine",
                help="local (this process) or ray (a Ray cluster: SHELFWISE_RAY_ADDRESS, else local)",
            ),
        ] = "local",
        as_json: Annotated[bool, typer.Option("--json", help="print one JSON object on stdout")] = False,
        list_models: Annotated[bool, typer.Option("--list-models", help="list model names and exit")] = False,
    ) -> None:
        """Evaluate a recommender honestly: fit on the training part only, rank all items (no sampled
        negatives), report Recall/NDCG/MRR/MAP/AUC, coverage, diversity, novelty, popularity bias."""

        with user_errors():
            from shelfwise.core.errors import ConfigError
            from shelfwise.recommend.registry import model_from_config, model_names

            if list_models:
                emit({"models": model_names()}, as_json, lambda p: "\n".join(p["models"]))
                return
            chosen = protocol or ("temporal" if db is not None else "loo")
            if chosen not in ("loo", "temporal"):
                raise ConfigError(f"unknown protocol {chosen!r}", hint="use loo or temporal")
            settings = json_object_option(config)
            # validate model names before reading a large file
            models = [model_from_config({**settings, "model": model})]
            if compare:
                models.append(model_from_config({"model": compare}))
            if engine not in ("local", "ray"):
                raise ConfigError(f"unknown engine {engine!r}", hint="use local or ray")
            payload = _run(
                _load_dataset(data, fmt, db), chosen, models, k, test_fraction, report, engine=engine
            )
            if data is not None:
                payload["data"] = str(data)

        emit(payload, as_json, _human)


def _run(
    ds: Any,
    protocol: str,
    models: list[Any],
    k: int,
    test_fraction: float,
    report: Path | None,
    *,
    engine: str = "local",
) -> dict[str, Any]:
    if engine != "local":
        from shelfwise.distributed import open_engine

        with open_engine(engine) as running:
            payload = _run_on(ds, protocol, models, k, test_fraction, report, running)
        payload["engine"] = engine
        return payload
    return _run_on(ds, protocol, models, k, test_fraction, report, None)


def _run_on(
    ds: Any,
    protocol: str,
    models: list[Any],
    k: int,
    test_fraction: float,
    report: Path | None,
    engine: Any,
) -> dict[str, Any]:
    from shelfwise.evaluation.protocol import make_split
    from shelfwise.evaluation.ranking import evaluate
    from shelfwise.evaluation.report import write_report
    from shelfwise.evaluation.significance import bootstrap_ci, paired_test

    split = make_split(ds, protocol, test_fraction=test_fraction)  # type: ignore[arg-type]
    if split.test.nnz == 0:
        from shelfwise.core.errors import InputFileError

        raise InputFileError(
            "no user has anything to hold out for testing", hint="more events per user needed"
        )
    ks = tuple(sorted({*KS, k}))
    results = []
    for i, m in enumerate(models):
        with steps_bar() as bar:
            bar.add_task(f"fit {m.name}" + (f" ({engine.name})" if engine else ""), total=None)
            if engine is None:
                m.fit(split.train)
            else:  # the same fit, on a worker (SASRec: Ray Train, data-parallel)
                from shelfwise.registry.training import FitJob

                (m,) = engine.fit([FitJob(m.config.model_dump(mode="json"), split.train)])
                models[i] = m
        with steps_bar() as bar:
            task = bar.add_task(f"rank all items ({m.name})", total=len(split.test_users))

            def tick(done: int, _total: int, bar: Any = bar, task: Any = task) -> None:
                bar.update(task, completed=done)

            mapper = {"mapper": engine.map} if engine is not None else {}
            result = evaluate(m, split, name=m.name, ks=ks, progress=tick, **mapper)
        result.info["train_seconds"] = m.train_seconds
        results.append(result)
    main = results[0]
    payload: dict[str, Any] = {
        "model": main.model,
        "protocol": protocol,
        **{key: round(v, 6) for key, v in main.metrics.items()},
        "train_seconds": round(models[0].train_seconds, 3),
        "eval_seconds": main.info["eval_seconds"],
        "users": main.info["users"],
        "items": main.info["items"],
        "events": len(ds),
        "ci95": {
            key: [round(x, 6) for x in bootstrap_ci(main.per_user[key], n_resamples=500)]
            for key in (f"recall@{k}", f"ndcg@{k}")
        },
    }
    if len(results) > 1:
        other = results[1]
        payload["compare"] = {
            "model": other.model,
            **{key: round(other.metrics[key], 6) for key in (f"recall@{k}", f"ndcg@{k}")},
            "train_seconds": round(models[1].train_seconds, 3),
            f"paired_ndcg@{k}": paired_test(main.per_user[f"ndcg@{k}"], other.per_user[f"ndcg@{k}"]),
        }
    if report is not None:
        paths = write_report(
            results,
            report,
            title=f"Evaluation: {', '.join(r.model for r in results)} ({protocol})",
            context={"protocol": protocol, "events": len(ds), "users evaluated": main.info["users"]},
        )
        payload["report"] = str(paths["markdown"])
    return payload


def _human(p: dict[str, Any]) -> str:
    lines = [
        f"{p['model']} ({p['protocol']}, {p['users']:,} users, {p['items']:,} items, full ranking): "
        f"trained in {p['train_seconds']:.1f} s"
    ]
    for key in (
        "recall@10",
        "ndcg@10",
        "recall@20",
        "ndcg@20",
        "mrr",
        "map@10",
        "auc",
        "coverage@10",
        "diversity@10",
        "novelty@10",
        "head_share@10",
    ):
        if key in p:
            lines.append(f"  {key:<14} {p[key]:.4f}")
    if "compare" in p:
        c = p["compare"]
        t = next(v for key, v in c.items() if key.startswith("paired_"))
        lines.append(f"  vs {c['model']}: NDCG diff {t['diff']:+.4f}, p = {t['p_value']:.4g}")
    if "report" in p:
        lines.append(f"  report: {p['report']}")
    return "\n".join(lines)
