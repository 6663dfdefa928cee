"""Helpers the subcommand modules share (they import this module, never ``cli.main``'s privates)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from shelfwise.core.errors import ConfigError


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
