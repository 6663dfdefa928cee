"""``iter_csv_chunks`` with Arrow's CSV parser where it provably reads what the stdlib reader reads.

The decompressed file is cut into pieces at line ends (``\\n``). A piece goes to Arrow only when
every line of it is one the stdlib ``csv.reader`` (strict, ``"`` quotes) parses on its own into one
record, so that parsing the piece line by line is parsing it whole:

- *plain* lines: no quote, no ``\\r``, no NUL, header-width fields (``width - 1`` delimiters), no
  longer than the field size limit. With no quote in a line the stdlib reader splits it at each
  delimiter and nothing else; Arrow, with quoting and escaping off, does the same. These lines go
  to Arrow (valid UTF-8 enforced: a bad byte sends the piece to the stdlib path);
- *other* lines (a quote, a blank line, another field count): each parsed alone by ``csv.reader``.
  A line that raises alone (a quote left open, so the record spans lines, or a strict-mode error)
  or holds a byte that is not UTF-8 sends the whole piece to the stdlib path.

Anything else (a ``\\r`` anywhere, a BOM at a piece's start, a one-column file, an over-long line)
goes to the stdlib path too: one ``csv.reader`` reads from that piece on until a record ends at a
piece's end, so a quoted field spanning pieces is read as it always was. Line numbers are counted
as ``csv.reader.line_num`` counts them. The records (rows and problems, in file order) are then cut
into chunks of ``size`` records exactly as the stdlib-only ``base.iter_csv_chunks`` cuts them, and a
chunk from the stdlib path gets the same UTF-8 check. ``tests/unit/test_arrow_csv.py`` holds the
two equal on tricky files and piece sizes small enough to cut records anywhere.
"""

from __future__ import annotations

import csv
import io
import itertools
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from shelfwise.core.errors import InputFileError
from shelfwise.data.readers.base import (
    FIELD_TOO_LARGE,
    MALFORMED,
    RAW_KEEP,
    CsvChunk,
    Problem,
    ReadOptions,
    _csv_names,
    _EscapeCount,
    _invalid_utf8,
    _line_numbers,
    _utf8_checked,
    bad_utf8,
    open_binary,
)

FIRST_PIECE = 1 << 16  # the header's piece (read by the stdlib): small, so Arrow takes the rest
PIECE = 1 << 22
_BOM = b"\xef\xbb\xbf"


class CsvRows(Sequence[list[str]]):
    """A chunk's rows held as Arrow string columns; ``rows[i]`` is the row as ``csv.reader`` gives it."""

    __slots__ = ("columns",)

    def __init__(self, columns: list[pa.Array]) -> None:
        self.columns = columns

    def __len__(self) -> int:
        return len(self.columns[0]) if self.columns else 0

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        return [c[i].as_py() for c in self.columns]


def columns_of(rows: Sequence[Sequence[str]], width: int) -> list[Sequence[str]]:
    """The rows' columns: Arrow arrays as they are, lists of rows transposed."""
    if isinstance(rows, CsvRows):
        return list(rows.columns)
    return [list(col) for col in zip(*rows, strict=True)] if rows else [[] for _ in range(width)]


@dataclass
class _Segment:
    """Records in file order: ``kinds[k]`` is True where record ``k`` is a problem."""

    nums: list[int]
    rows: Any  # rows (stdlib: list[list[str]]) or columns (Arrow: list[pa.Array])
    arrow: bool
    problems: list[Problem]
    kinds: np.ndarray

    def __len__(self) -> int:
        return len(self.kinds)

    def split(self, k: int) -> tuple[_Segment, _Segment]:
        n_problems = int(np.count_nonzero(self.kinds[:k]))
        r = k - n_problems
        if self.arrow:
            head_rows: Any = [c.slice(0, r) for c in self.rows]
            tail_rows: Any = [c.slice(r) for c in self.rows]
        else:
            head_rows, tail_rows = self.rows[:r], self.rows[r:]
        return (
            _Segment(self.nums[:r], head_rows, self.arrow, self.problems[:n_problems], self.kinds[:k]),
            _Segment(self.nums[r:], tail_rows, self.arrow, self.problems[n_problems:], self.kinds[k:]),
        )


def _pieces(binary: IO[bytes], first: int, size: int) -> Iterator[bytes]:
    """The stream in pieces ending at a ``\\n`` (the last one may not)."""
    carry = b""
    want = first
    while True:
        data = binary.read(want)
        want = size
        if not data:
            if carry:
                yield carry
            return
        data = carry + data
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            carry = data
            continue
        carry = data[cut:]
        yield data[:cut]


class _Feed:
    """Lines for ``csv.reader``, decoded as ``open_text`` decodes them, a piece at a time; counts
    the lines handed out (and those the Arrow path takes) as ``reader.line_num`` would."""

    def __init__(self, pieces: Iterator[bytes]) -> None:
        self._pieces = pieces
        self._lines: list[str] = []
        self._at = 0
        self._pulled = 0
        self.line_no = 0

    def next_piece(self) -> bytes | None:
        piece = next(self._pieces, None)
        if piece is not None:
            self._pulled += 1
        return piece

    def load(self, piece: bytes) -> None:
        encoding = "utf-8-sig" if self._pulled == 1 else "utf-8"  # a BOM only opens the file
        text = piece.decode(encoding, errors=_EscapeCount.NAME)
        self._lines = io.StringIO(text, newline="").readlines()  # \n, \r, \r\n: as open_text splits
        self._at = 0

    def remaining(self) -> int:
        return len(self._lines) - self._at

    def __iter__(self) -> _Feed:
        return self

    def __next__(self) -> str:
        while self._at >= len(self._lines):
            piece = self.next_piece()
            if piece is None:
                raise StopIteration
            self.load(piece)
        line = self._lines[self._at]
        self._at += 1
        self.line_no += 1
        return line


def _stdlib_segment(feed: _Feed, reader: Any, width: int, delimiter: str) -> _Segment:
    """What the stdlib reader reads from the feed until a record ends where a piece ends (the
    per-row rules of ``base.iter_csv_chunks``, records kept in file order)."""
    nums: list[int] = []
    rows: list[list[str]] = []
    problems: list[Problem] = []
    kinds: list[bool] = []
    while feed.remaining() > 0:
        start = feed.line_no
        chunk: list[list[str]] = []
        error: csv.Error | None = None
        try:
            chunk.extend(itertools.islice(reader, feed.remaining()))
        except csv.Error as exc:
            error = exc
        if not chunk and error is None:
            break
        lines = _line_numbers(chunk, start, feed.line_no, error is not None)
        for line_no, row in zip(lines, chunk, strict=True):
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) == width:
                rows.append(row)
                nums.append(line_no)
                kinds.append(False)
                continue
            raw = delimiter.join(row)
            if bad_utf8(raw):
                problems.append(_invalid_utf8(line_no, raw))
            else:
                detail = f"{len(row)} fields, expected {width}"
                problems.append(Problem(line_no, raw[:RAW_KEEP], None, MALFORMED, detail))
            kinds.append(True)
        if error is not None:
            reason = FIELD_TOO_LARGE if "field larger" in str(error) else MALFORMED
            problems.append(Problem(feed.line_no, "", None, reason, str(error)))
            kinds.append(True)
    return _Segment(nums, rows, False, problems, np.asarray(kinds, dtype=bool))


_PARSE = pacsv.ParseOptions(
    quote_char=False,
    double_quote=False,
    escape_char=False,
    newlines_in_values=False,
    ignore_empty_lines=False,
)


def arrow_piece(piece: bytes, first_line: int, width: int, delimiter: str, limit: int) -> _Segment | None:
    """A piece's records by Arrow (plain lines) and ``csv.reader`` line by line (the others), or
    None when the piece must be read by the stdlib reader whole. ``first_line`` is the line number
    before the piece."""
    if width < 2 or piece.startswith(_BOM) or b"\r" in piece or b"\x00" in piece:
        return None
    if not piece.endswith(b"\n"):
        piece += b"\n"  # the file's last line: the reader ends it at the end of the file alike
    buf = np.frombuffer(piece, dtype=np.uint8)
    ends = np.flatnonzero(buf == 10)
    n = len(ends)
    starts = np.empty(n, dtype=np.int64)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    lengths = ends - starts
    if int(lengths.max()) > limit:
        return None  # a field might pass the limit: the stdlib reader says which
    delims = np.bincount(np.searchsorted(ends, np.flatnonzero(buf == ord(delimiter))), minlength=n)
    plain = (delims == width - 1) & (lengths > 0)
    quoted = np.flatnonzero(buf == 34)
    if len(quoted):
        plain[np.searchsorted(ends, quoted)] = False
    others = np.flatnonzero(~plain)
    # the other lines, each alone
    row_at: list[int] = []
    other_rows: list[list[str]] = []
    problems: list[Problem] = []
    problem_at: list[int] = []
    for i in others.tolist():
        text = piece[starts[i] : ends[i] + 1].decode("utf-8", errors=_EscapeCount.NAME)
        if bad_utf8(text):
            return None
        try:
            parsed = list(csv.reader([text], delimiter=delimiter, strict=True))
        except csv.Error:
            return None
        row = parsed[0] if parsed else []
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) == width:
            other_rows.append(row)
            row_at.append(i)
        else:
            detail = f"{len(row)} fields, expected {width}"
            raw = delimiter.join(row)
            problems.append(Problem(first_line + i + 1, raw[:RAW_KEEP], None, MALFORMED, detail))
            problem_at.append(i)
    plain_at = np.flatnonzero(plain)
    names = [f"c{k}" for k in range(width)]
    columns: list[pa.Array] = []
    if len(plain_at):
        body = piece if len(others) == 0 else buf[np.repeat(plain, lengths + 1)].tobytes()
        if body.startswith(_BOM):
            return None
        try:
            table = pacsv.read_csv(
                pa.py_buffer(body),
                read_options=pacsv.ReadOptions(
                    column_names=names, use_threads=False, block_size=len(body) + 1
                ),
                parse_options=_PARSE,
                convert_options=pacsv.ConvertOptions(
                    column_types=dict.fromkeys(names, pa.string()),
                    strings_can_be_null=False,
                    quoted_strings_can_be_null=False,
                    null_values=[],
                    check_utf8=True,
                ),
            )
        except pa.ArrowException:
            return None
        if table.num_rows != len(plain_at):
            return None
        columns = [table.column(k).combine_chunks() for k in range(width)]
    else:
        columns = [pa.array([], pa.string()) for _ in range(width)]
    at = plain_at
    if other_rows:
        extra = [pa.array([r[k] for r in other_rows], pa.string()) for k in range(width)]
        at = np.concatenate([plain_at, np.asarray(row_at, dtype=np.int64)])
        order = np.argsort(at, kind="stable")
        take = pa.array(order)
        columns = [pa.concat_arrays([c, e]).take(take) for c, e in zip(columns, extra, strict=True)]
        at = at[order]
    nums = (at + (first_line + 1)).tolist()
    if problems:
        line_of = np.concatenate([at, np.asarray(problem_at, dtype=np.int64)])
        kinds = np.r_[np.zeros(len(at), dtype=bool), np.ones(len(problem_at), dtype=bool)]
        kinds = kinds[np.argsort(line_of, kind="stable")]
    else:
        kinds = np.zeros(len(at), dtype=bool)
    return _Segment(nums, columns, True, problems, kinds)


def _merge(parts: list[_Segment], width: int, suspect: bool, delimiter: str) -> tuple[Any, ...]:
    nums = [x for p in parts for x in p.nums]
    problems = [x for p in parts for x in p.problems]
    if all(p.arrow for p in parts):
        cols = [pa.concat_arrays([p.rows[k] for p in parts]) for k in range(width)]
        return nums, CsvRows(cols), problems  # Arrow holds valid UTF-8 only: nothing to check
    lists: list[list[str]] = []
    for p in parts:
        if p.arrow:  # beside rows the stdlib read: back to Python rows (rare: a piece's neighbours)
            lists.extend(map(list, zip(*(c.to_pylist() for c in p.rows), strict=True)))
        else:
            lists.extend(p.rows)
    return _utf8_checked(nums, lists, problems, delimiter, suspect)


def iter_csv_chunks_arrow(
    path: Path,
    opts: ReadOptions,
    size: int,
    *,
    required: Sequence[str] = (),
    delimiter: str = ",",
    what: str = "CSV",
    piece: int | None = None,
    first_piece: int | None = None,
) -> Iterator[CsvChunk]:
    """``base.iter_csv_chunks`` (no ``limit``), the same chunks, read by Arrow where it is sure.
    ``piece`` and ``first_piece`` (bytes; ``PIECE`` and ``FIRST_PIECE`` by default) only move
    where the pieces are cut: tests make them small to cut records anywhere."""
    limit = max(opts.field_size_limit, 1024)
    csv.field_size_limit(limit)
    binary = open_binary(path, opts.progress)
    feed = _Feed(_pieces(binary, first_piece or FIRST_PIECE, piece or PIECE))
    reader = csv.reader(feed, delimiter=delimiter, strict=True)
    escapes = _EscapeCount.calls
    try:
        with binary:
            names = _csv_names(reader, path, None, required, delimiter, True, what)
            width = len(names)
            parts: list[_Segment] = []
            have = 0
            for segment in _segments(feed, reader, width, delimiter, limit):
                while len(segment):
                    head, segment = segment.split(min(size - have, len(segment)))
                    parts.append(head)
                    have += len(head)
                    if have >= size:
                        yield names, *_merge(parts, width, _EscapeCount.calls != escapes, delimiter)
                        parts, have = [], 0
            if have:
                yield names, *_merge(parts, width, _EscapeCount.calls != escapes, delimiter)
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
        raise InputFileError(f"{path}: unreadable after line {feed.line_no} ({exc})") from exc


def _segments(feed: _Feed, reader: Any, width: int, delimiter: str, limit: int) -> Iterator[_Segment]:
    use_arrow = len(delimiter) == 1 and delimiter.isascii() and delimiter not in '"\r\n'
    while True:
        if feed.remaining() > 0:
            yield _stdlib_segment(feed, reader, width, delimiter)
            continue
        piece = feed.next_piece()
        if piece is None:
            return
        fast = arrow_piece(piece, feed.line_no, width, delimiter, limit) if use_arrow else None
        if fast is None:
            feed.load(piece)
            continue
        feed.line_no += piece.count(b"\n") + (0 if piece.endswith(b"\n") else 1)
        yield fast
