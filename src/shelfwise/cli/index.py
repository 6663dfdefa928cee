"""`shelfwise index …`: search index versions built from the store's catalogue (``var/indexes``).

    shelfwise index build [--mode hybrid|bm25|ltr] [--queries Q.tsv --qrels Q.txt] [--force]
    shelfwise index list | activate VERSION | rollback | eval [--queries … --qrels …]
    shelfwise index actors [--stop-unused]       (sharded indexes held by Ray actors)

A running server picks up the active version at its next catalogue check; ``serve`` builds one on
its first start (and a new one when the catalogue changed) in the mode ``SHELFWISE_SEARCH_MODE``
names (``auto``: the active version's mode, hybrid for a shop's first index).
"""

from __future__ import annotations

from pathlib import Path
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

QueriesOpt = Annotated[Path | None, typer.Option("--queries", help="labelled set: TSV query_id<TAB>query")]
QrelsOpt = Annotated[
    Path | None, typer.Option("--qrels", help="labelled set: TREC qrels query_id 0 id grade")
]

index_app = typer.Typer(
    help="Search index versions: build from the store's catalogue, gate on a labelled set, "
    "activate, roll back.",
    no_args_is_help=True,
)


def _registry() -> Any:
    """The registry ``serve`` reads, holding a sharded version's shards where the settings say
    (``SHELFWISE_SHARD_ENGINE``): `index eval` of a version on Ray actors asks the actors."""
    from shelfwise.serving.search_service import index_registry

    return index_registry(load_settings())


def _labelled(queries: Path | None, qrels: Path | None) -> Any:
    if queries is None and qrels is None:
        return None
    from shelfwise.core.errors import ConfigError

    if queries is None or qrels is None:
        raise ConfigError("a labelled set needs both --queries and --qrels")
    from shelfwise.registry.indexes import Labelled
    from shelfwise.search.documents import read_qrels, read_queries

    return Labelled(queries.stem, read_queries(queries), read_qrels(qrels))


def _summary(info: Any, active: str | None) -> dict[str, Any]:
    out = info.to_dict()
    out.pop("files")
    out["files"] = len(info.files)
    out["active"] = info.version == active
    return out


def _human(p: dict[str, Any]) -> str:
    ndcg = p.get("metrics", {}).get("ndcg@10")
    score = f"  nDCG@10 {ndcg:.4f} on {p['metrics'].get('set')}" if ndcg is not None else ""
    mark = "*" if p.get("active") else " "
    return f"{mark} {p['version']}  {p['mode']:<6} {p['items']:>8} items  {p['embedded']} embedded{score}"


@index_app.command("build")
def index_build(
    mode: Annotated[
        str, typer.Option("--mode", help="bm25, hybrid or ltr (ltr needs a labelled set)")
    ] = "hybrid",
    queries: QueriesOpt = None,
    qrels: QrelsOpt = None,
    tolerance: Annotated[float, typer.Option("--tolerance", help="gate: nDCG@10 below active allowed")] = 0.0,
    force: Annotated[
        bool, typer.Option("--force", help="register and activate even if the gate refuses")
    ] = False,
    no_activate: Annotated[bool, typer.Option("--no-activate", help="register only")] = False,
    shards: Annotated[
        int,
        typer.Option(
            "--shards", min=1, help="partition the index: shards built in parallel, queried by scatter-gather"
        ),
    ] = 1,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Build a version from the store's catalogue (only new or changed items are embedded)."""
    from shelfwise.cli.progress import steps_bar
    from shelfwise.core.errors import InputFileError

    with user_errors():
        labelled = _labelled(queries, qrels)
        with open_db(db) as store:
            items = list(store.get_items(store.item_ids()).values())
            store_id = store.store_id
        if not items:
            raise InputFileError("the store holds no catalogue: `shelfwise ingest items FILE` first")
        reg = _registry()
        with steps_bar() as bar:
            tasks: dict[str, Any] = {}

            def progress(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    tasks[stage] = bar.add_task(stage, total=total)
                bar.update(tasks[stage], completed=done, total=total)

            info = reg.build(
                items,
                mode=mode,
                embeddings=load_settings().var_dir / "embeddings",
                labelled=labelled,
                tolerance=tolerance,
                force=force,
                activate=not no_activate,
                store_id=store_id,
                progress=progress,
                shards=shards,
            )
        emit(_summary(info, reg.active), as_json, _human)


@index_app.command("list")
def index_list(db: DbOption = None, as_json: JsonOption = False) -> None:
    """Every index version, the active one marked."""

    with user_errors():
        reg = _registry()
        rows = [_summary(i, reg.active) for i in reg.list_indexes()]
        emit(
            {"active": reg.active, "versions": rows},
            as_json,
            lambda p: "\n".join(_human(r) for r in p["versions"]) or "no search index versions yet",
        )


@index_app.command("activate")
def index_activate(
    version: Annotated[str, typer.Argument(help="a version `index list` shows")],
    require_experiment: Annotated[
        str | None,
        typer.Option(
            "--require-experiment",
            help="also require this search experiment's arm (A/B or interleaving) to win",
        ),
    ] = None,
    arm: Annotated[str | None, typer.Option("--arm", help="the experiment's arm serving VERSION")] = None,
    force: Annotated[bool, typer.Option("--force", help="activate even if the experiment refuses")] = False,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Serve ``version`` (its checksums are verified first)."""

    with user_errors():
        reg = _registry()
        reg.index_info(version)
        gate = (
            experiment_release_gate(db, require_experiment, arm, version, force=force)
            if require_experiment is not None
            else None
        )
        out = reg.activate(version).to_dict()
        if gate is not None:
            out["experiment_gate"] = gate
        emit(out, as_json, lambda p: f"active search index: {p['active']}")


@index_app.command("rollback")
def index_rollback(db: DbOption = None, as_json: JsonOption = False) -> None:
    """Serve the previously active version again."""

    with user_errors():
        pointer = _registry().rollback()
        emit(pointer.to_dict(), as_json, lambda p: f"active search index: {p['active']}")


@index_app.command("actors")
def index_actors(
    stop_unused: Annotated[
        bool, typer.Option("--stop-unused", help="end the actors of every index no server answers from")
    ] = False,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Sharded indexes held by Ray actors (SHELFWISE_SHARD_ENGINE=ray): which version each is and
    whether it is served (active, canary or shadow, the rollback target, a running experiment's
    arm); ``--stop-unused`` ends the others' actors, which otherwise hold their shards until the
    cluster stops."""
    import os

    from shelfwise.core.errors import ConfigError
    from shelfwise.core.ray_cluster import ADDRESS_ENV
    from shelfwise.store.experiments import list_experiments

    with user_errors():
        if not os.environ.get(ADDRESS_ENV):
            raise ConfigError(
                f"{ADDRESS_ENV} is not set: shard actors outlive a server only on a Ray cluster",
                hint=f"set {ADDRESS_ENV} to the address the servers join (host:port)",
            )
        with open_db(db) as store:
            arms = [
                arm["index_version"]
                for row in list_experiments(store, status="running")
                for arm in row.spec.get("arms", [])
                if arm.get("index_version")
            ]
        report = _registry().shard_actors(also_served=arms, stop=stop_unused)
        emit(report, as_json, _human_actors)


def _human_actors(p: dict[str, Any]) -> str:
    lines = []
    for r in p["indexes"]:
        versions = ", ".join(r["versions"]) or "(no version here)"
        state = "served" if r["served"] else "unused"
        lines.append(f"{state}  {r['key']}  {versions}  {len(r['shards'])} shard actors")
    if p["stopped"]:
        lines.append(f"stopped {len(p['stopped'])} actors")
    return "\n".join(lines) or "no shard actors on the cluster"


@index_app.command("eval")
def index_eval(
    queries: QueriesOpt = None,
    qrels: QrelsOpt = None,
    version: Annotated[str | None, typer.Option("--version", help="default: the active one")] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """nDCG@10 of an index version, in its own mode, on a labelled set (what the server answers)."""
    from shelfwise.core.errors import ConfigError
    from shelfwise.registry.indexes import evaluate_index

    with user_errors():
        labelled = _labelled(queries, qrels)
        if labelled is None:
            raise ConfigError("give a labelled set: --queries and --qrels")
        reg = _registry()
        version = version or reg.active
        if version is None:
            raise ConfigError("no search index version yet: `shelfwise index build` first")
        info = reg.index_info(version)
        report = {
            "version": version,
            "mode": info.mode,
            **evaluate_index(reg.load(version), labelled, info.mode),
        }
        emit(
            report,
            as_json,
            lambda p: f"{p['version']} ({p['mode']}): nDCG@10 {p['ndcg@10']:.4f}  MRR@10 {p['mrr@10']:.4f}",
        )


def register(app: typer.Typer) -> None:
    app.add_typer(index_app, name="index")
