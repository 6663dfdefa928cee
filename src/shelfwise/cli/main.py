"""The ``shelfwise`` command. Every command that touches data takes ``--db URL``; ``--json`` prints
one JSON object on stdout; a user error exits non-zero with one line on stderr, never a traceback.
Heavy modules are imported inside the commands so ``shelfwise --help`` stays instant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from shelfwise.cli.common import DbOption, JsonOption, emit, fail, load_settings, open_db, user_errors
from shelfwise.cli.progress import bytes_bar
from shelfwise.core.errors import ShelfwiseError

app = typer.Typer(
    name="shelfwise",
    help="Search, recommendations and shopper-behaviour analytics for an online shop.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
ingest_app = typer.Typer(
    help="Check, clean, pseudonymise and store a file of events or items.", no_args_is_help=True
)
app.add_typer(ingest_app, name="ingest")

# --- datasets -----------------------------------------------------------------------------------


@app.command()
def datasets(as_json: JsonOption = False) -> None:
    """List the dataset formats shelfwise reads, their licence and where the file was found."""
    with user_errors():
        from shelfwise.data.readers import FORMATS
        from shelfwise.data.readers.locate import find_dataset_file

        rows = []
        for fmt in FORMATS.values():
            path = find_dataset_file(fmt)
            rows.append(
                {
                    "format": fmt.name,
                    "kind": fmt.kind,
                    "title": fmt.title,
                    "licence": fmt.licence,
                    "redistributable": fmt.redistributable,
                    "path": str(path) if path else None,
                }
            )

        def human(payload: dict[str, Any]) -> str:
            out = []
            for r in payload["formats"]:
                where = r["path"] or (
                    "(your file)" if not r["licence"] or r["licence"] == "n/a" else "not found"
                )
                out.append(
                    f"{r['format']:<16} {r['kind']:<8} {where}\n{'':<26}{r['title']}  [{r['licence']}]"
                )
            return "\n".join(out)

        emit({"formats": rows}, as_json, human)


# --- ingest -------------------------------------------------------------------------------------


def _ingest(
    kind: str,
    path: Path,
    fmt_name: str,
    db: str | None,
    as_json: bool,
    *,
    limit: int | None,
    generic: dict[str, Any],
    unknown_items: str = "create",
    engine: str = "local",
    method: str | None = None,
) -> None:
    with user_errors():
        from shelfwise.data.readers import get_format
        from shelfwise.store.ingest import ingest_events, ingest_items

        settings = load_settings()
        fmt = get_format(fmt_name)
        given = {k: v for k, v in generic.items() if v}
        if given:
            fmt = _mapped_format(fmt, kind, given)
        if not path.exists():
            raise _input_error(f"{path}: no such file")
        if engine not in ("local", "ray"):
            raise _input_error(f"unknown engine {engine!r}: use local or ray")
        from contextlib import ExitStack

        from shelfwise.core.parallel import local_map

        with ExitStack() as stack:
            store = stack.enter_context(open_db(db))
            mapper = local_map
            if engine == "ray":  # imported only when asked for: it brings the whole pipeline
                from shelfwise.distributed import open_engine

                mapper = stack.enter_context(open_engine("ray")).map
            progress = stack.enter_context(bytes_bar(f"ingest {fmt.name} ({engine})"))
            if kind == "events":  # the quality gate runs over batches on the engine
                report = ingest_events(
                    store,
                    path,
                    fmt,
                    settings,
                    progress=progress,
                    unknown_items=unknown_items,
                    limit=limit,
                    mapper=mapper,
                    engine=method,
                )
            else:
                report = ingest_items(store, path, fmt, settings, progress=progress, limit=limit)

        def human(r: dict[str, Any]) -> str:
            lines = [
                f"{r['source']}: {r['records']:,} records in {r['seconds']:.1f} s "
                f"({r['records_per_second']:,.0f}/s): {r['accepted']:,} accepted, "
                f"{r['duplicates']:,} duplicates, {r['quarantined']:,} quarantined"
            ]
            lines += [f"  quarantined {reason}: {n:,}" for reason, n in r["reasons"].items()]
            lines += [f"  converted {name}: {n:,}" for name, n in r["conversions"].items()]
            if kind == "events":
                lines.append(
                    f"  users: {r['users']:,} ({r['flagged_users']:,} flagged as likely bots); "
                    f"guest events: {r['guest_events']:,}; items touched: {r['items_upserted']:,}"
                )
            return "\n".join(lines)

        emit(report.to_dict(), as_json, human)


def _input_error(message: str) -> ShelfwiseError:
    from shelfwise.core.errors import InputFileError

    return InputFileError(message)


# the option a generic-format setting comes from, where names differ
_FLAG = {"required": "require", "event_type": "type"}


def _mapped_format(fmt: Any, kind: str, given: dict[str, Any]) -> Any:
    """A generic format with the user's column mapping (``--map``, ``--ts-unit``, ``--tz``…)."""
    from pydantic import ValidationError

    from shelfwise.data.readers.generic import ColumnMapping, make_generic_format

    base = fmt.name.split("-")[0]
    if base not in ("csv", "jsonl", "parquet"):
        flags = ", ".join(f"--{_FLAG.get(k, k).replace('_', '-')}" for k in given)
        raise _input_error(f"{flags} apply to the generic formats csv, jsonl and parquet, not {fmt.name!r}")
    columns: dict[str, str] = {}
    for pair in given.pop("map", []):
        field, sep, column = pair.partition("=")
        if not sep or not field.strip() or not column.strip():
            raise _input_error(f"--map expects FIELD=COLUMN, got {pair!r}")
        columns[field.strip()] = column.strip()
    if "context" in given:
        given["context_columns"] = given.pop("context")
    try:
        spec = ColumnMapping(columns=columns, **given)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = _FLAG.get(str(first["loc"][0]), str(first["loc"][0])) if first["loc"] else "mapping"
        message = str(first["msg"]).removeprefix("Value error, ")
        raise _input_error(f"invalid column mapping: --{where.replace('_', '-')}: {message}") from None
    return make_generic_format(kind, base, spec)


PathArg = Annotated[Path, typer.Argument(help="file to read (.gz is read directly)")]
FormatOpt = Annotated[str, typer.Option("--format", "-f", help="format name; see `shelfwise datasets`")]
LimitOpt = Annotated[int | None, typer.Option("--limit", help="read only the first N records")]
MethodOpt = Annotated[
    str | None,
    typer.Option(
        "--method",
        help="batch: check records a chunk at a time in columns (default, SHELFWISE_INGEST_ENGINE);"
        " rows: one at a time (the reference; same results, slower)",
    ),
]
MapOpt = Annotated[list[str] | None, typer.Option("--map", help="generic formats: FIELD=COLUMN, repeatable")]
TsUnitOpt = Annotated[str | None, typer.Option("--ts-unit", help="generic formats: iso, s or ms")]
TzOpt = Annotated[str | None, typer.Option("--tz", help="generic formats: zone of times without one")]
DelimiterOpt = Annotated[str | None, typer.Option("--delimiter", help="generic CSV: field separator")]
ContextOpt = Annotated[
    list[str] | None,
    typer.Option("--context", help="generic formats: a column to keep as context, repeatable"),
]
RequireOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--require", help="generic formats: a field every record must fill (else quarantined), repeatable"
    ),
]
UnknownItemsOpt = Annotated[
    str,
    typer.Option(
        "--unknown-items", help="create: add missing items to the catalogue; quarantine: reject the event"
    ),
]


@ingest_app.command("events")
def ingest_events_cmd(
    path: PathArg,
    fmt: FormatOpt,
    db: DbOption = None,
    as_json: JsonOption = False,
    unknown_items: UnknownItemsOpt = "create",
    limit: LimitOpt = None,
    method: MethodOpt = None,
    mapping: MapOpt = None,
    ts_unit: TsUnitOpt = None,
    tz: TzOpt = None,
    delimiter: DelimiterOpt = None,
    context: ContextOpt = None,
    require: RequireOpt = None,
    event_type: Annotated[
        str | None,
        typer.Option("--type", help="generic formats: the event type of every record (e.g. purchase)"),
    ] = None,
    engine: Annotated[
        str, typer.Option("--engine", help="local, or ray: the quality gate's batches as Ray tasks")
    ] = "local",
) -> None:
    """Ingest shopper events (views, carts, purchases, returns, searches…)."""
    if unknown_items not in ("create", "quarantine"):
        fail("--unknown-items must be create or quarantine", 2)
    if method not in (None, "batch", "rows"):
        fail("--method must be batch or rows", 2)
    generic = {
        "map": mapping,
        "ts_unit": ts_unit,
        "tz": tz,
        "delimiter": delimiter,
        "context": context,
        "required": require,
        "event_type": event_type,
    }
    _ingest(
        "events",
        path,
        fmt,
        db,
        as_json,
        limit=limit,
        generic=generic,
        unknown_items=unknown_items,
        engine=engine,
        method=method,
    )


@ingest_app.command("items")
def ingest_items_cmd(
    path: PathArg,
    fmt: FormatOpt,
    db: DbOption = None,
    as_json: JsonOption = False,
    limit: LimitOpt = None,
    mapping: MapOpt = None,
    delimiter: DelimiterOpt = None,
    context: ContextOpt = None,
    require: RequireOpt = None,
) -> None:
    """Ingest catalogue items (fields given replace the stored ones)."""
    generic = {"map": mapping, "delimiter": delimiter, "context": context, "required": require}
    _ingest("items", path, fmt, db, as_json, limit=limit, generic=generic)


# --- quality, backup, restore -------------------------------------------------------------------


@app.command("quality-report")
def quality_report(
    db: DbOption = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="directory for .json, .md and .png; default: var/reports/quality"),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Counts of accepted, duplicate and quarantined records by source, reason and field."""
    with user_errors():
        from shelfwise.store.quality_report import write_quality_report

        settings = load_settings()
        with open_db(db) as store:
            report, paths = write_quality_report(store, out or settings.var_dir / "reports" / "quality")
        report["files"] = {k: str(v) for k, v in paths.items()}
        emit(
            report,
            as_json,
            lambda _: paths["markdown"].read_text() + f"\n(written to {paths['markdown'].parent})",
        )


@app.command()
def backup(
    out: Annotated[Path, typer.Option("--out", help="new directory for the backup")],
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Back up every table (Parquet + a manifest with row counts and checksums)."""
    with user_errors():
        from shelfwise.store.backup import backup as run_backup

        with open_db(db) as store:
            manifest = run_backup(store, out)
        emit(
            manifest,
            as_json,
            lambda m: "\n".join(
                [f"backup of {m['source']} in {out} ({m['seconds']:.1f} s)"]
                + [
                    f"  {name}: {t['rows']:,} rows, checksum {t['checksum'][:16]}…"
                    for name, t in m["tables"].items()
                ]
            ),
        )


@app.command()
def restore(
    backup_dir: Annotated[Path, typer.Argument(help="a directory written by `shelfwise backup`")],
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Restore a backup into an empty store and verify every table's rows and checksum."""
    with user_errors():
        from shelfwise.store.backup import read_manifest
        from shelfwise.store.backup import restore as run_restore

        read_manifest(backup_dir)  # refuse a corrupt backup before creating anything
        with open_db(db) as store:
            result = run_restore(store, backup_dir)
        emit(
            result,
            as_json,
            lambda r: "\n".join(
                [f"restored {backup_dir} in {r['seconds']:.1f} s; every table verified"]
                + [
                    f"  {name}: {t['rows']:,} rows, checksum {t['checksum'][:16]}… ok"
                    for name, t in r["tables"].items()
                ]
            ),
        )


def _register_extensions() -> None:
    # Each engine's commands live in a module of their own; they import their engines lazily.
    from shelfwise.cli import (
        analytics,
        drill,
        evaluate,
        experiment,
        generate,
        index,
        keys,
        placements,
        privacy,
        search,
        serving,
        trust,
    )

    for module in (
        evaluate,
        search,
        analytics,
        serving,
        privacy,
        drill,
        trust,
        keys,
        generate,
        experiment,
        index,
    ):
        module.register(app)
    placements.register(app)


_register_extensions()


def main() -> None:  # pragma: no cover - entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
