"""What every reader yields, and the streaming primitives they share.

A reader turns a file into ``Draft`` records (fields in shelfwise's names, values still raw)
and ``Problem`` records (a line that could not even be parsed). It never validates types or
ranges: that is ``shelfwise.data.quality``'s job, so every format is checked by the same rules.
Readers stream: they hold one record at a time, so memory stays flat in the file's size.
A file that is not what it claims raises ``InputFileError`` before yielding anything.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import itertools
import json
import os
import re
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from shelfwise.core.errors import InputFileError

Kind = Literal["events", "items", "queries"]
ProgressFn = Callable[[int, int], None]  # (bytes read so far, total bytes)

# Reasons a reader itself can give (the quality gate adds its own).
MALFORMED = "malformed_record"
INVALID_UTF8 = "invalid_utf8"
FIELD_TOO_LARGE = "field_too_large"
# A note on a Draft whose time is made up (a file with order but no times): not a measure of pace.
SYNTHETIC_TS = "synthetic_ts"

RAW_KEEP = 65_536  # how much of a bad record is kept in quarantine


@dataclass(slots=True)
class Draft:
    """A parsed record, not yet checked. ``fields`` use shelfwise names (see ``schemas``)."""

    line_no: int
    raw: str
    fields: dict[str, Any]
    item: dict[str, Any] | None = None  # catalogue facts carried inline by an event
    notes: tuple[str, ...] = ()  # conversions applied, e.g. ("cancellation_to_return",)


@dataclass(slots=True)
class Problem:
    """A record that could not be parsed; it goes to quarantine as it was."""

    line_no: int
    raw: str
    field: str | None
    reason: str
    detail: str


@dataclass(frozen=True)
class TimeSpec:
    """How a format writes time: ISO text in a zone, or numbers in seconds or milliseconds."""

    unit: Literal["iso", "s", "ms"] = "iso"
    tz: str = "UTC"


@dataclass(frozen=True)
class ReadOptions:
    progress: ProgressFn | None = None
    field_size_limit: int = 1 << 20
    limit: int | None = None  # stop after this many records (fixtures, previews)


Record = Draft | Problem


@dataclass(slots=True)
class DraftBatch:
    """A chunk of event records in columns, for the batch ingest engine.

    ``fields`` maps each shelfwise field name the gate reads to one value per draft (None where the
    draft lacks it); ``draft(i)`` rebuilds the i-th record exactly as the format's row-by-row reader
    yields it (quarantine keeps its fields, inline catalogue facts come from it), so only the few
    records that need it are ever built. ``problems`` are the chunk's records that could not be parsed.
    """

    line_no: list[int]
    fields: dict[str, Sequence[Any]]
    notes: Sequence[tuple[str, ...]]
    draft: Callable[[int], Draft]
    problems: list[Problem]

    def __len__(self) -> int:
        return len(self.line_no)


def draft_batches(records: Iterable[Record], names: Iterable[str], size: int) -> Iterator[DraftBatch]:
    """Any reader's records, ``size`` at a time, as ``DraftBatch`` columns of ``names``."""
    wanted = tuple(names)
    drafts: list[Draft] = []
    problems: list[Problem] = []
    for rec in records:
        if isinstance(rec, Problem):
            problems.append(rec)
        else:
            drafts.append(rec)
        if len(drafts) + len(problems) >= size:
            yield _batch_of(drafts, problems, wanted)
            drafts, problems = [], []
    if drafts or problems:
        yield _batch_of(drafts, problems, wanted)


def _batch_of(drafts: list[Draft], problems: list[Problem], names: tuple[str, ...]) -> DraftBatch:
    return DraftBatch(
        line_no=[d.line_no for d in drafts],
        fields={n: [d.fields.get(n) for d in drafts] for n in names},
        notes=[d.notes for d in drafts],
        draft=drafts.__getitem__,
        problems=problems,
    )


@dataclass(frozen=True)
class DatasetFormat:
    """A named format ``shelfwise ingest --format NAME`` understands."""

    name: str
    kind: Kind
    title: str
    read: Callable[[Path, ReadOptions], Iterator[Record]]
    time: TimeSpec = TimeSpec()
    currency: str | None = None
    licence: str = "n/a"
    redistributable: bool = False
    # where the file lies: under the repo's data/ when vendored, under ../shared/data otherwise
    vendored: str | None = None
    shared: str | None = None
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    # shelfwise fields every record of this format fills: the quality gate refuses a record with one
    # of them blank (``missing_field``) instead of storing a hole (``shelfwise.data.rules.require``)
    required: tuple[str, ...] = ()
    # optional columnar reader for the batch ingest engine: (path, options, chunk size) → batches that
    # hold exactly the records ``read`` yields; formats without one are chunked from ``read``
    read_batches: Callable[[Path, ReadOptions, int], Iterator[DraftBatch]] | None = None

    def batches(self, path: Path, opts: ReadOptions, names: Iterable[str], size: int) -> Iterator[DraftBatch]:
        """The file's records as ``DraftBatch`` chunks of about ``size`` records."""
        if self.read_batches is not None:
            return self.read_batches(path, opts, size)
        return draft_batches(self.read(path, opts), names, size)


# --- opening files -----------------------------------------------------------------------------


class _CountingReader(io.RawIOBase):
    """Counts bytes read from the file on disk (compressed bytes for .gz), for progress bars."""

    def __init__(self, raw: IO[bytes], progress: ProgressFn | None, total: int) -> None:
        self._raw = raw
        self._progress = progress
        self._total = total
        self._done = 0
        self._since = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self._raw.readinto(buffer)  # type: ignore[attr-defined]
        if n:
            self._done += n
            self._since += n
            if self._progress is not None and self._since >= 1 << 18:
                self._progress(self._done, self._total)
                self._since = 0
        elif self._progress is not None:
            self._progress(self._total, self._total)
        return n or 0

    def close(self) -> None:
        self._raw.close()
        super().close()


def open_binary(path: Path, progress: ProgressFn | None = None) -> IO[bytes]:
    """Open ``path`` for reading bytes, gunzipping when it starts with gzip's magic number."""
    try:
        total = os.path.getsize(path)
        raw = open(path, "rb")  # noqa: SIM115 - handed to the caller
    except OSError as exc:
        raise InputFileError(f"{path}: cannot open ({exc.strerror or exc})") from exc
    counted = io.BufferedReader(_CountingReader(raw, progress, total), buffer_size=1 << 16)
    if counted.peek(2)[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=counted, mode="rb")  # type: ignore[return-value]
    return counted


_SURROGATE = re.compile("[\udc80-\udcff]")


def bad_utf8(text: str) -> bool:
    """True when ``text`` came from bytes that are not UTF-8 (decoded with ``surrogateescape``)."""
    return not text.isascii() and _SURROGATE.search(text) is not None


def open_text(path: Path, opts: ReadOptions, *, errors: str = "surrogateescape") -> IO[str]:
    """Text view of ``path``; bytes that are not UTF-8 survive as surrogates, for ``bad_utf8``."""
    binary = open_binary(path, opts.progress)
    return io.TextIOWrapper(binary, encoding="utf-8-sig", errors=errors, newline="")


class _EscapeCount:
    """``surrogateescape`` that counts its calls: a reader that saw no bad byte needs no per-row
    ``bad_utf8`` scan (the handler runs only on bytes that are not UTF-8, so it costs nothing else)."""

    NAME = "shelfwise.count-surrogateescape"
    calls = 0
    _escape = codecs.lookup_error("surrogateescape")

    @classmethod
    def handle(cls, exc: UnicodeError) -> tuple[str, int]:
        cls.calls += 1
        text, at = cls._escape(exc)
        return str(text), at


codecs.register_error(_EscapeCount.NAME, _EscapeCount.handle)


def _invalid_utf8(line_no: int, text: str) -> Problem:
    shown = text.encode("utf-8", "surrogateescape")[:RAW_KEEP].decode("utf-8", "backslashreplace")
    return Problem(line_no, shown, None, INVALID_UTF8, "bytes that are not UTF-8")


def iter_lines(path: Path, opts: ReadOptions) -> Iterator[tuple[int, str] | Problem]:
    """(line number, line) for every line, or a ``Problem`` for a line that is not valid UTF-8.

    A gzip file that is cut short or corrupt raises ``InputFileError`` naming where it broke.
    """
    line_no = 0
    try:
        with open_text(path, opts) as fh:
            for line_no, text in enumerate(fh, start=1):
                yield _invalid_utf8(line_no, text) if bad_utf8(text) else (line_no, text)
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
        raise InputFileError(f"{path}: unreadable after line {line_no} ({exc})") from exc


def iter_csv(
    path: Path,
    opts: ReadOptions,
    *,
    columns: Iterable[str] | None = None,
    required: Iterable[str] = (),
    delimiter: str = ",",
    header: bool = True,
    what: str = "CSV",
) -> Iterator[tuple[int, str, dict[str, str]] | Problem]:
    """Rows of a delimited file as dicts, streaming, with per-record problems instead of crashes.

    With ``header=True`` the first line names the columns and must contain every name in
    ``required``; otherwise ``columns`` names them in order. Quoted fields may span lines;
    the line number given is the record's last line.
    """
    csv.field_size_limit(max(opts.field_size_limit, 1024))
    fh = open_text(path, opts)
    reader = csv.reader(fh, delimiter=delimiter, strict=True)
    try:
        with fh:
            names = _csv_names(reader, path, columns, required, delimiter, header, what)
            width = len(names)
            count = 0
            while True:
                try:
                    row = next(reader)
                except StopIteration:
                    break
                except csv.Error as exc:
                    reason = FIELD_TOO_LARGE if "field larger" in str(exc) else MALFORMED
                    yield Problem(reader.line_num, "", None, reason, str(exc))
                    count += 1
                    if opts.limit is not None and count >= opts.limit:
                        return
                    continue
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                raw = delimiter.join(row)
                if bad_utf8(raw):
                    yield _invalid_utf8(reader.line_num, raw)
                elif len(row) != width:
                    yield Problem(
                        reader.line_num,
                        raw[:RAW_KEEP],
                        None,
                        MALFORMED,
                        f"{len(row)} fields, expected {width}",
                    )
                else:
                    yield reader.line_num, raw, dict(zip(names, row, strict=True))
                count += 1
                if opts.limit is not None and count >= opts.limit:
                    return
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
        raise InputFileError(f"{path}: unreadable after line {reader.line_num} ({exc})") from exc


def _csv_names(
    reader: Any,
    path: Path,
    columns: Iterable[str] | None,
    required: Iterable[str],
    delimiter: str,
    header: bool,
    what: str,
) -> list[str]:
    names = list(columns or ())
    if header:
        first = _first_row(reader, path, what)
        if bad_utf8("".join(first)):
            raise InputFileError(f"{path}: not a valid {what} file (its first line is not UTF-8 text)")
        names = [name.strip().lstrip("\ufeff") for name in first]  # spreadsheet BOMs
        missing = [c for c in required if c not in names]
        if missing:
            found = delimiter.join(first)[:120]
            raise InputFileError(
                f"{path}: not a valid {what} file: header lacks {', '.join(missing)} (found {found!r})"
            )
    elif not names:
        raise ValueError("columns are required when header=False")
    return names


CsvChunk = tuple[list[str], list[int], list[list[str]], list[Problem]]


def iter_csv_chunks(
    path: Path,
    opts: ReadOptions,
    size: int,
    *,
    required: Iterable[str] = (),
    delimiter: str = ",",
    what: str = "CSV",
) -> Iterator[CsvChunk]:
    """``iter_csv`` for the batch engine: the same records, ``size`` at a time, as (column names,
    line numbers, rows of the header's width, problems). The same parser and the same rules decide
    what is a record and what is a problem; only the per-row dict and text are left to the caller."""
    csv.field_size_limit(max(opts.field_size_limit, 1024))
    fh = open_text(path, opts, errors=_EscapeCount.NAME)
    reader = csv.reader(fh, delimiter=delimiter, strict=True)
    escapes = _EscapeCount.calls  # once it moves (a bad byte here, or in another thread), rows are checked
    try:
        with fh:
            names = _csv_names(reader, path, None, required, delimiter, True, what)
            width = len(names)
            limit = opts.limit
            count = 0  # records (rows and problems), as ``iter_csv`` counts them for ``limit``
            nums: list[int] = []
            rows: list[list[str]] = []
            problems: list[Problem] = []
            while limit is None or count < limit:
                room = size - len(rows) - len(problems)
                if limit is not None:
                    room = min(room, limit - count)
                start = reader.line_num
                chunk: list[list[str]] = []
                error: csv.Error | None = None
                try:
                    chunk.extend(itertools.islice(reader, room))  # the C parser, no Python per row
                except csv.Error as exc:
                    error = exc
                if not chunk and error is None:
                    break  # end of file
                lines = _line_numbers(chunk, start, reader.line_num, error is not None)
                before = len(rows) + len(problems)
                if set(map(len, chunk)) <= {width} and (width > 1 or all(r[0].strip() for r in chunk)):
                    rows.extend(chunk)
                    nums.extend(lines)
                else:
                    _sort_rows(chunk, lines, width, delimiter, rows, nums, problems)
                if error is not None:
                    reason = FIELD_TOO_LARGE if "field larger" in str(error) else MALFORMED
                    problems.append(Problem(reader.line_num, "", None, reason, str(error)))
                count += len(rows) + len(problems) - before
                if len(rows) + len(problems) >= size:
                    checked = _utf8_checked(nums, rows, problems, delimiter, _EscapeCount.calls != escapes)
                    yield names, *checked
                    nums, rows, problems = [], [], []
            if rows or problems:
                yield names, *_utf8_checked(nums, rows, problems, delimiter, _EscapeCount.calls != escapes)
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
        raise InputFileError(f"{path}: unreadable after line {reader.line_num} ({exc})") from exc


def _line_numbers(chunk: list[list[str]], start: int, end: int, cut: bool) -> list[int]:
    """The line number ``csv.reader`` gives each row of ``chunk`` (its last line), read from line
    ``start`` to ``end``: consecutive unless a quoted field spans lines (or a bad record followed)."""
    if not cut and end - start == len(chunk):
        return list(range(start + 1, end + 1))
    out: list[int] = []
    line = start
    for row in chunk:
        line += 1
        for cell in row:
            if "\n" in cell or "\r" in cell:
                line += cell.count("\n") + cell.count("\r") - cell.count("\r\n")
        out.append(line)
    return out


def _sort_rows(
    chunk: list[list[str]],
    lines: list[int],
    width: int,
    delimiter: str,
    rows: list[list[str]],
    nums: list[int],
    problems: list[Problem],
) -> None:
    """``iter_csv``'s per-row rules for a chunk with blank or wrongly sized rows."""
    for line_no, row in zip(lines, chunk, strict=True):
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) == width:
            rows.append(row)
            nums.append(line_no)
            continue
        raw = delimiter.join(row)
        if bad_utf8(raw):
            problems.append(_invalid_utf8(line_no, raw))
        else:
            detail = f"{len(row)} fields, expected {width}"
            problems.append(Problem(line_no, raw[:RAW_KEEP], None, MALFORMED, detail))


def _utf8_checked(
    nums: list[int], rows: list[list[str]], problems: list[Problem], delimiter: str, suspect: bool
) -> tuple[list[int], list[list[str]], list[Problem]]:
    """Rows whose bytes were not UTF-8 become problems, as ``iter_csv`` makes them (only looked
    for when the decoder met a byte that is not UTF-8: ``suspect``)."""
    if not suspect:
        return nums, rows, problems
    kept_nums: list[int] = []
    kept: list[list[str]] = []
    for line_no, row in zip(nums, rows, strict=True):
        raw = delimiter.join(row)
        if bad_utf8(raw):
            problems.append(_invalid_utf8(line_no, raw))
        else:
            kept_nums.append(line_no)
            kept.append(row)
    return kept_nums, kept, problems


def _first_row(reader: Any, path: Path, what: str) -> list[str]:
    try:
        for row in reader:
            if row and any(cell.strip() for cell in row):
                return list(row)
    except csv.Error as exc:
        raise InputFileError(f"{path}: not a valid {what} file ({exc})") from exc
    raise InputFileError(f"{path}: empty file, expected a valid {what} file")


def iter_jsonl(
    path: Path, opts: ReadOptions, *, what: str = "JSON Lines"
) -> Iterator[tuple[int, str, Any] | Problem]:
    """Parsed JSON values, one per non-blank line. A file whose first record is not JSON is not JSONL."""
    count = 0
    for rec in iter_lines(path, opts):
        out: tuple[int, str, Any] | Problem
        if isinstance(rec, Problem):
            if count == 0:
                raise InputFileError(
                    f"{path}: not a valid {what} file (line {rec.line_no} is not UTF-8 text)"
                )
            out = rec
        else:
            line_no, text = rec
            if not text.strip():
                continue
            if len(text) > opts.field_size_limit:
                out = Problem(line_no, text[:RAW_KEEP], None, FIELD_TOO_LARGE, f"{len(text)} characters")
            else:
                try:
                    value = json.loads(text)
                except (ValueError, RecursionError) as exc:  # ValueError: JSONDecodeError, or a huge int
                    if count == 0:
                        raise InputFileError(
                            f"{path}: not a valid {what} file (line {line_no}: {exc})"
                        ) from exc
                    out = Problem(line_no, text[:RAW_KEEP], None, MALFORMED, f"invalid JSON: {exc}")
                else:
                    out = (line_no, text.rstrip("\r\n")[:RAW_KEEP], value)
        yield out
        count += 1  # problems count toward the limit too
        if opts.limit is not None and count >= opts.limit:
            return
    if count == 0:
        raise InputFileError(f"{path}: empty file, expected a valid {what} file")


def _text_as_bytes(batch: Any) -> Any:
    """``batch`` with its (large) string columns cast to (large) binary, which does not decode."""
    import pyarrow as pa

    columns = []
    for col in batch.columns:
        if pa.types.is_string(col.type):
            col = col.cast(pa.binary())
        elif pa.types.is_large_string(col.type):
            col = col.cast(pa.large_binary())
        columns.append(col)
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names)


def iter_parquet(
    path: Path, opts: ReadOptions, *, batch_size: int = 65_536
) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """Rows of a Parquet file as dicts, a record batch at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except (OSError, pa.ArrowException, UnicodeDecodeError) as exc:  # column names not UTF-8
        raise InputFileError(f"{path}: not a Parquet file ({exc})") from exc
    total = os.path.getsize(path)
    row_no = 0
    batches = pf.iter_batches(batch_size=batch_size)
    while True:
        try:
            batch = next(batches, None)
        except (OSError, pa.ArrowException) as exc:
            raise InputFileError(f"{path}: unreadable after row {row_no} ({exc})") from exc
        if batch is None:
            return
        try:
            rows = batch.to_pylist()
        except UnicodeDecodeError:
            # a text column holds bytes that are not UTF-8: read its text as bytes, so each record's
            # check names the field (``invalid_utf8``) and the other records go in
            try:
                rows = _text_as_bytes(batch).to_pylist()
            except UnicodeDecodeError as exc:  # inside a nested value: nothing to name but the rows
                raise InputFileError(
                    f"{path}: rows {row_no + 1}-{row_no + batch.num_rows}: text that is not UTF-8 ({exc})"
                ) from exc
        for row in rows:
            row_no += 1
            yield row_no, json.dumps(row, default=str)[:RAW_KEEP], row
            if opts.limit is not None and row_no >= opts.limit:
                return
        if opts.progress is not None:
            opts.progress(min(total, total * row_no // max(pf.metadata.num_rows, 1)), total)
