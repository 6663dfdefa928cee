"""What every ``shelfwise`` command shares: the ``--db`` and ``--json`` options, settings and store
opening, one-line user errors with their exit code, and JSON output. The subcommand modules and
``cli.main`` import this module; it imports none of them."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from shelfwise.core.errors import ConfigError, ShelfwiseError

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="store URL (sqlite:///PATH or postgresql://HOST:PORT/DB); "
        "default: the embedded SQLite store under ./var/",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="print one JSON object on stdout")]


def fail(message: str, code: int) -> None:
    """One line on stderr and exit ``code``."""
    typer.echo(f"shelfwise: error: {message}", err=True)
    raise typer.Exit(code)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn what the user can fix into one line on stderr and a non-zero exit."""
    try:
        yield
    except ShelfwiseError as exc:
        fail(str(exc), exc.exit_code)
    except OSError as exc:
        fail(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "), 2)
    except KeyboardInterrupt:
        fail("interrupted", 130)


def load_settings() -> Any:
    """The settings (defaults, file, environment), with logging configured from them."""
    from shelfwise.core.logging import configure_logging
    from shelfwise.core.settings import get_settings

    settings = get_settings()
    configure_logging(level=settings.log_level, json=settings.log_json)
    return settings


def open_db(db: str | None) -> Any:
    """The store at ``--db``, or the settings' store."""
    from shelfwise.store import open_store

    return open_store(db or load_settings().store_url)


def emit(payload: dict[str, Any], as_json: bool, human: Callable[[dict[str, Any]], str]) -> None:
    """``payload`` as one JSON object (``--json``), or as ``human`` renders it."""
    if as_json:
        sys.stdout.write(json.dumps(payload, default=str) + "\n")
    else:
        typer.echo(human(payload))


def json_object_option(text: str | None, option: str = "--config") -> dict[str, Any]:
    """The JSON object an option holds: inline (``'{"l2": 300}'``) or in a file (``@model.json``)."""
    if not text:
        return {}
    if text.startswith("@"):
        path = Path(text[1:])
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError(f"{option}: cannot read {path}: {exc.strerror}") from None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{option} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{option} must be a JSON object, e.g. '{{\"l2\": 300}}'")
    return value


def experiment_release_gate(
    db: str | None, experiment: str, arm: str | None, version: str, *, force: bool
) -> dict[str, Any]:
    """The release gate's verdict on ``version`` from a running or stopped experiment (the arm
    serving it must credibly win: an A/B test's always-valid test on its primary metric with no
    guardrail breached, or an interleaving experiment's preference); refused unless ``force``."""
    from shelfwise.evaluation.experiment_service import ExperimentService
    from shelfwise.registry.gate import experiment_gate

    with open_db(db) as store:
        status = ExperimentService(store).status(experiment)
    try:
        decision = experiment_gate(status, arm=arm, require="win")
    except ValueError as exc:
        raise ConfigError(str(exc), hint="pass --arm NAME") from None
    if not force:
        decision.raise_if_refused(version)
    return decision.to_dict()
