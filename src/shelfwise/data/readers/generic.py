"""Plain CSV, JSON Lines and Parquet files of events or items, with a column mapping.

``ColumnMapping`` says which source column holds each shelfwise field; a field whose column
already has the shelfwise name needs no entry. The formats registered here (``csv``, ``jsonl``,
``parquet`` for events, ``csv-items``, ``jsonl-items``, ``parquet-items`` for items) use the
identity mapping; ``make_generic_format`` builds one for any other layout.

Events need at least ``type`` and ``ts``; items need ``item_id``. A CSV or Parquet file whose
header lacks them is not the format (``InputFileError``); so is a JSON Lines file whose first
record is not an object holding them. Later records that lack them, or hold a list or object
where a single value belongs, are ``Problem``s.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from shelfwise.core.errors import ConfigError, InputFileError
from shelfwise.data.columnar import Coded, encode
from shelfwise.data.readers.base import (
    INVALID_UTF8,
    MALFORMED,
    DatasetFormat,
    Draft,
    DraftBatch,
    Kind,
    Problem,
    ReadOptions,
    Record,
    TimeSpec,
    iter_csv,
    iter_csv_chunks,
    iter_jsonl,
    iter_parquet,
)
from shelfwise.data.schemas import EVENT_COLUMNS, EVENT_TYPE_ALIASES, ITEM_COLUMNS, EventType

# A file supplies every stored field but ``source`` (the format's name) and ``updated_ts`` (ingest time).
EVENT_FIELDS = tuple(c for c in EVENT_COLUMNS if c != "source")
ITEM_FIELDS = tuple(c for c in ITEM_COLUMNS if c not in ("source", "updated_ts"))
FIELDS: dict[str, tuple[str, ...]] = {"events": EVENT_FIELDS, "items": ITEM_FIELDS}
REQUIRED: dict[str, tuple[str, ...]] = {"events": ("type", "ts"), "items": ("item_id",)}
DICT_FIELD: dict[str, str] = {"events": "context", "items": "attributes"}
CONTAINERS = {"csv": "CSV", "jsonl": "JSON Lines", "parquet": "Parquet"}


class ColumnMapping(BaseModel):
    """Where each shelfwise field comes from in a plain tabular file."""

    model_config = ConfigDict(extra="forbid")

    columns: dict[str, str] = Field(
        default_factory=dict, description="shelfwise field name -> source column name; identity when absent"
    )
    delimiter: str = Field(default=",", min_length=1, max_length=1, description="CSV only")
    ts_unit: Literal["iso", "s", "ms"] = "iso"
    tz: str = "UTC"
    currency: str | None = Field(
        default=None, pattern=r"^[A-Z]{3}$", description="when the file has no currency"
    )
    context_columns: list[str] = Field(
        default_factory=list, description="source columns copied into context (events) or attributes (items)"
    )
    required: list[str] = Field(
        default_factory=list,
        description="shelfwise fields every record must fill (beyond type/ts or item_id): a record with "
        "one blank is quarantined as missing_field",
    )

    event_type: str | None = Field(
        default=None,
        description="events only: the type of every record, for files with no type column "
        "(an order export: every row is a purchase)",
    )

    @field_validator("event_type")
    @classmethod
    def _known_type(cls, value: str | None) -> str | None:
        if value is None:
            return None
        text = value.strip().lower()
        if text in EventType.__members__.values() or text in EVENT_TYPE_ALIASES:
            return text
        known = ", ".join(t.value for t in EventType)
        raise ValueError(f"unknown event type {value!r} (known: {known})")

    @field_validator("tz")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    def source(self, field: str) -> str:
        return self.columns.get(field, field)

    def from_file(self, kind: str) -> tuple[str, ...]:
        """The required fields the file itself must hold (a constant event type fills ``type``)."""
        if self.event_type is not None and "type" not in self.columns:
            return tuple(f for f in REQUIRED[kind] if f != "type")
        return REQUIRED[kind]


class NotAValue(ValueError):
    """A list or object where a single value belongs, or bytes that are not UTF-8."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def raw_text(value: Any) -> str | None:
    """A scalar from JSON or Parquet as the raw text the quality gate parses (None stays None)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | Decimal):
        return str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise NotAValue(INVALID_UTF8, "bytes that are not UTF-8") from exc
    if isinstance(value, dict | list | tuple):
        raise NotAValue(MALFORMED, f"a {type(value).__name__} where a single value belongs")
    return str(value)


def _dict_value(value: Any) -> dict[str, Any]:
    """Context or attributes: an object, JSON text of one, or nothing."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        if not value.strip():
            return {}
        try:
            parsed = json.loads(value)
        except ValueError as exc:
            raise NotAValue(MALFORMED, f"not JSON: {exc}") from exc
        if isinstance(parsed, dict):
            return parsed
    raise NotAValue(MALFORMED, "not a JSON object")


def _plan(kind: str, mapping: ColumnMapping, available: Iterable[str]) -> dict[str, str]:
    """shelfwise field -> source column, for the fields this file has."""
    names = set(available)
    plan: dict[str, str] = {}
    for name in FIELDS[kind]:
        src = mapping.source(name)
        if name in mapping.columns or name in mapping.from_file(kind) or src in names:
            plan[name] = src
    return plan


def _needed(kind: str, mapping: ColumnMapping) -> list[str]:
    """Columns a file must have: the required fields', every mapped one, and the context columns."""
    needed = [mapping.source(f) for f in mapping.from_file(kind)]
    needed += [c for c in mapping.columns.values() if c not in needed]
    needed += [c for c in mapping.context_columns if c not in needed]
    return needed


def _build(
    kind: str, mapping: ColumnMapping, plan: Mapping[str, str], row: Mapping[str, Any], *, empty_is_none: bool
) -> dict[str, Any] | tuple[str, str, str]:
    """The Draft's fields, or (field, reason, detail) when a record does not fit."""
    bag = DICT_FIELD[kind]
    fields: dict[str, Any] = {}
    for name, src in plan.items():
        if src not in row:
            if name in REQUIRED[kind]:
                return name, MALFORMED, f"no {src!r}"
            continue
        value = row[src]
        try:
            if name == bag:
                fields[name] = dict(_dict_value(value))
                continue
            text = raw_text(value)
        except NotAValue as exc:
            return name, exc.reason, f"{src!r}: {exc.detail}"
        fields[name] = None if empty_is_none and text is not None and not text.strip() else text
    if kind == "events" and mapping.event_type is not None and not fields.get("type"):
        fields["type"] = mapping.event_type
    extra = fields.setdefault(bag, {})
    for col in mapping.context_columns:
        value = row.get(col)
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        extra[col] = value
    return fields


def _drafts(
    kind: str,
    mapping: ColumnMapping,
    rows: Iterator[tuple[int, str, Mapping[str, Any]] | Problem],
    *,
    empty_is_none: bool,
) -> Iterator[Record]:
    plan: dict[str, str] | None = None
    for rec in rows:
        if isinstance(rec, Problem):
            yield rec
            continue
        line_no, raw, row = rec
        if plan is None:
            plan = _plan(kind, mapping, row)
        built = _build(kind, mapping, plan, row, empty_is_none=empty_is_none)
        if isinstance(built, tuple):
            field, reason, detail = built
            yield Problem(line_no, raw, field, reason, detail)
        else:
            yield Draft(line_no, raw, built)


def make_generic_format(
    kind: Kind,
    fmt_name: Literal["csv", "jsonl", "parquet"],
    mapping: ColumnMapping,
    *,
    name: str | None = None,
) -> DatasetFormat:
    """A format reading ``fmt_name`` files of ``kind`` records laid out as ``mapping`` says."""
    if kind not in FIELDS:
        raise ConfigError(f"generic formats read events or items, not {kind!r}")
    unknown = sorted((set(mapping.columns) | set(mapping.required)) - set(FIELDS[kind]))
    if unknown:
        raise ConfigError(
            f"column mapping names fields {kind} do not have: {', '.join(unknown)}",
            hint=f"known fields: {', '.join(FIELDS[kind])}",
        )
    what = f"{CONTAINERS.get(fmt_name, fmt_name)} {kind}"
    needed = _needed(kind, mapping)

    read_batches = None
    if fmt_name == "csv":

        def read(path: Path, opts: ReadOptions) -> Iterator[Record]:
            rows = iter_csv(path, opts, required=needed, delimiter=mapping.delimiter, what=what)
            yield from _drafts(kind, mapping, rows, empty_is_none=True)

        if kind == "events" and not mapping.context_columns:

            def read_batches(path: Path, opts: ReadOptions, size: int) -> Iterator[DraftBatch]:
                yield from _csv_batches(path, opts, size, mapping=mapping, needed=needed, what=what)

    elif fmt_name == "jsonl":

        def read(path: Path, opts: ReadOptions) -> Iterator[Record]:
            yield from _read_jsonl(path, opts, kind, mapping, what)

    elif fmt_name == "parquet":

        def read(path: Path, opts: ReadOptions) -> Iterator[Record]:
            _check_parquet_schema(path, needed, what)
            yield from _drafts(kind, mapping, iter_parquet(path, opts), empty_is_none=False)

    else:
        raise ConfigError(f"unknown file format {fmt_name!r}", hint="csv, jsonl or parquet")

    suffix = "" if kind == "events" else "-items"
    return DatasetFormat(
        name=name or f"{fmt_name}{suffix}",
        kind=kind,
        title=f"{what} file, columns named as shelfwise names them or as a column mapping says",
        read=read,
        time=TimeSpec(unit=mapping.ts_unit, tz=mapping.tz),
        currency=mapping.currency,
        extra={"mapping": mapping},
        required=tuple(dict.fromkeys([*REQUIRED[kind], *mapping.required])),
        read_batches=read_batches,
    )


def _csv_batches(
    path: Path, opts: ReadOptions, size: int, *, mapping: ColumnMapping, needed: list[str], what: str
) -> Iterator[DraftBatch]:
    """``read`` in columns (events with no context columns): the chunks ``draft_batches`` would cut
    from ``read``'s records, each field's rule (blank -> None, context JSON) run once per distinct
    value, and the file read by Arrow where it reads what the stdlib reader reads (``arrow_csv``)."""
    from shelfwise.data.readers.arrow_csv import columns_of, iter_csv_chunks_arrow

    delimiter = mapping.delimiter
    chunks = (
        iter_csv_chunks_arrow(path, opts, size, required=needed, delimiter=delimiter, what=what)
        if opts.limit is None  # Arrow reads ahead a piece: a limit stays with the stdlib reader
        else iter_csv_chunks(path, opts, size, required=needed, delimiter=delimiter, what=what)
    )
    for names, nums, rows, problems in chunks:
        yield _csv_batch(mapping, names, nums, rows, problems, delimiter, columns_of)


def _csv_batch(
    mapping: ColumnMapping,
    names: list[str],
    nums: list[int],
    rows: Sequence[list[str]],
    problems: list[Problem],
    delimiter: str,
    columns_of: Any,
) -> DraftBatch:
    plan = _plan("events", mapping, names)
    by_name = dict(zip(names, columns_of(rows, len(names)), strict=True))
    fields: dict[str, Sequence[Any]] = {}
    kept: np.ndarray | None = None
    for name, src in plan.items():
        if src not in by_name:  # the header holds every required field's column (``_csv_names``)
            continue
        distinct, codes = encode(by_name[src])
        if name == "context":
            parsed: list[Any] = []
            bad: list[NotAValue | None] = []
            for v in distinct:
                try:
                    parsed.append(_dict_value(v))
                    bad.append(None)
                except NotAValue as exc:
                    parsed.append(None)
                    bad.append(exc)
            broken = np.fromiter((b is not None for b in bad), dtype=bool, count=len(bad))[codes]
            if broken.any():
                for i in np.flatnonzero(broken).tolist():
                    why = bad[codes[i]]
                    assert why is not None
                    raw = delimiter.join(rows[i])
                    problems.append(Problem(nums[i], raw, name, why.reason, f"{src!r}: {why.detail}"))
                kept = ~broken if kept is None else kept & ~broken
            fields[name] = Coded(parsed, codes)
        else:
            fields[name] = Coded([None if not v.strip() else v for v in distinct], codes)
    if mapping.event_type is not None:
        types = fields.get("type")
        if types is None:
            fields["type"] = Coded([mapping.event_type], np.zeros(len(nums), dtype=np.intp))
        else:
            assert isinstance(types, Coded)
            fields["type"] = Coded([v or mapping.event_type for v in types.distinct], types.codes)
    at = np.arange(len(nums), dtype=np.intp)
    if kept is not None:  # rows whose context did not parse are problems, in file order among the others
        problems.sort(key=lambda p: p.line_no)
        at = np.flatnonzero(kept)
        fields = {n: Coded(list(c.distinct), c.codes[at]) for n, c in fields.items() if isinstance(c, Coded)}
        nums = [nums[i] for i in at.tolist()]
    positions = at

    def draft(i: int) -> Draft:
        k = int(positions[i])
        row = rows[k]
        built = _build("events", mapping, plan, dict(zip(names, row, strict=True)), empty_is_none=True)
        assert not isinstance(built, tuple)  # the rows that fail to build were taken out above
        return Draft(nums[i], delimiter.join(row), built)

    notes = Coded([()], np.zeros(len(nums), dtype=np.intp))  # a generic file's records carry none
    return DraftBatch(line_no=nums, fields=fields, notes=notes, draft=draft, problems=problems)


def _no_draft(i: int) -> Draft:
    raise IndexError(i)


def _read_jsonl(
    path: Path, opts: ReadOptions, kind: str, mapping: ColumnMapping, what: str
) -> Iterator[Record]:
    # JSON leaves out what is null, so only the required fields' keys decide the format
    needed = [mapping.source(f) for f in mapping.from_file(kind)]
    first = True
    for rec in iter_jsonl(path, opts, what=what):
        if isinstance(rec, Problem):
            yield rec
            continue
        line_no, raw, value = rec
        if first:
            first = False
            if not isinstance(value, dict):
                raise InputFileError(f"{path}: not a valid {what} file (line {line_no} is not a JSON object)")
            missing = [c for c in needed if c not in value]
            if missing:
                raise InputFileError(
                    f"{path}: not a valid {what} file: line {line_no} lacks {', '.join(missing)}"
                )
        if not isinstance(value, dict):
            yield Problem(line_no, raw, None, MALFORMED, f"a JSON {type(value).__name__}, not an object")
            continue
        built = _build(kind, mapping, _plan(kind, mapping, value), value, empty_is_none=False)
        if isinstance(built, tuple):
            field, reason, detail = built
            yield Problem(line_no, raw, field, reason, detail)
        else:
            yield Draft(line_no, raw, built)


def _check_parquet_schema(path: Path, needed: list[str], what: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        names = pq.read_schema(path).names
    except (OSError, pa.ArrowException, UnicodeDecodeError) as exc:  # column names not UTF-8
        raise InputFileError(f"{path}: not a Parquet file ({exc})") from exc
    missing = [c for c in needed if c not in names]
    if missing:
        found = ", ".join(names)[:120]
        raise InputFileError(
            f"{path}: not a valid {what} file: its columns lack {', '.join(missing)} (found {found!r})"
        )


IDENTITY = ColumnMapping()
CSV = make_generic_format("events", "csv", IDENTITY)
JSONL = make_generic_format("events", "jsonl", IDENTITY)
PARQUET = make_generic_format("events", "parquet", IDENTITY)
CSV_ITEMS = make_generic_format("items", "csv", IDENTITY)
JSONL_ITEMS = make_generic_format("items", "jsonl", IDENTITY)
PARQUET_ITEMS = make_generic_format("items", "parquet", IDENTITY)
FORMATS = (CSV, JSONL, PARQUET, CSV_ITEMS, JSONL_ITEMS, PARQUET_ITEMS)
