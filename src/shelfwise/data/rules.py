"""Input rules the quality gate applies to every record, as plain functions any ingest path can call
(the row-by-row reference gate in ``shelfwise.data.quality``, a columnar batch path, the events API).

- ``require``: a format declares the fields every one of its records has (``DatasetFormat.required``);
  a record with one of them blank is refused as ``missing_field`` naming it (an Online Retail line
  with no unit price would otherwise be stored with price NULL, and revenue silently understated).
- ``clean_nested``: a free-form object (an event's ``context``, an item's ``attributes``) is checked
  at every depth, not only at its top: each text is cleaned and scrubbed of contact details, a text
  over the limit is refused naming its path (``context.device.note``), and so is an object that is
  too deep or too large in total.

Each rule raises ``Violation(field, reason, detail)``; the caller turns it into a quarantine row.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from shelfwise.data.normalize import clean_text
from shelfwise.data.privacy import scrub_pii

MISSING_FIELD = "missing_field"
BAD_TYPE = "bad_type"
NOT_FINITE = "not_finite"
FIELD_TOO_LARGE = "field_too_large"

MAX_DEPTH = 8  # objects nested deeper than this are refused (no shop sends them; a parser bomb does)
SCALAR_SIZE = 16  # what a number, boolean or null counts towards an object's size

TextCleaner = Callable[[str], tuple[str, int]]


class Violation(Exception):
    """A record breaks a rule: ``field`` (a dotted path for nested values), ``reason``, ``detail``."""

    def __init__(self, field: str, reason: str, detail: str) -> None:
        super().__init__(f"{field}: {reason} ({detail})")
        self.field, self.reason, self.detail = field, reason, detail


def blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def require(fields: Mapping[str, Any], names: Sequence[str]) -> None:
    """Refuse a record in which one of ``names`` (the format's required fields) is missing or blank."""
    for name in names:  # ``blank`` inlined: this runs for every field of every record
        value = fields.get(name)
        if value is None or (value.__class__ is str and (not value or value.isspace())):
            raise Violation(name, MISSING_FIELD, "empty, and this format requires it")


def clean_and_scrub(text: str) -> tuple[str, int]:
    """NFKC-cleaned text with e-mail addresses and phone numbers replaced; (text, how many)."""
    return scrub_pii(clean_text(text))


def clean_nested(
    value: Mapping[str, Any],
    *,
    field: str,
    max_text: int,
    clean: TextCleaner = clean_and_scrub,
) -> tuple[dict[str, Any], int]:
    """``value`` cleaned at every depth; returns it and how many contact details were scrubbed.

    Texts (keys too) are cleaned and scrubbed with ``clean``; a text longer than ``max_text`` after
    cleaning, a non-finite number, nesting deeper than ``MAX_DEPTH`` or a whole object larger than
    ``max_text`` (texts by length, other values ``SCALAR_SIZE`` each) raise ``Violation`` naming the
    path. Texts that clean to nothing become None, as top-level fields do."""
    walker = _Walker(max_text, clean)
    out = walker.mapping(value, field, 0)
    if walker.size > max_text:
        raise Violation(field, FIELD_TOO_LARGE, f"about {walker.size} characters in all, limit {max_text}")
    return out, walker.scrubbed


class _Walker:
    def __init__(self, max_text: int, clean: TextCleaner) -> None:
        self.max_text, self.clean = max_text, clean
        self.size = 0
        self.scrubbed = 0

    def text(self, raw: str, path: str) -> str:
        if len(raw) > 4 * self.max_text:  # refused before the cost of cleaning it
            raise Violation(path, FIELD_TOO_LARGE, f"{len(raw)} characters, limit {self.max_text}")
        text, n = self.clean(raw)
        if len(text) > self.max_text:
            raise Violation(path, FIELD_TOO_LARGE, f"{len(text)} characters, limit {self.max_text}")
        self.scrubbed += n
        self.size += len(text)
        return text

    def mapping(self, value: Mapping[str, Any], path: str, depth: int) -> dict[str, Any]:
        if depth >= MAX_DEPTH:
            raise Violation(path, FIELD_TOO_LARGE, f"nested deeper than {MAX_DEPTH} levels")
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = self.text(str(key), f"{path}.{str(key)[:40]}")
            out[name] = self.value(item, f"{path}.{name[:40]}", depth + 1)
        return out

    def value(self, item: Any, path: str, depth: int) -> Any:
        if isinstance(item, str):
            return self.text(item, path) or None
        if isinstance(item, Mapping):
            return self.mapping(item, path, depth)
        if isinstance(item, list | tuple):
            if depth >= MAX_DEPTH:
                raise Violation(path, FIELD_TOO_LARGE, f"nested deeper than {MAX_DEPTH} levels")
            return [self.value(v, f"{path}.{i}", depth + 1) for i, v in enumerate(item)]
        if isinstance(item, float) and not math.isfinite(item):
            raise Violation(path, NOT_FINITE, repr(item))
        if item is None or isinstance(item, bool | int | float):
            self.size += SCALAR_SIZE
            return item
        raise Violation(path, BAD_TYPE, f"a {type(item).__name__} is not a JSON value")
