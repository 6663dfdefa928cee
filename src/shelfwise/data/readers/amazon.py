"""One user a line: ``user item item …`` in time order (the S3-Rec / ICLRec sequence files).

``amazon-beauty`` is the Amazon Beauty 5-core file (McAuley et al.; research use), whose
interactions are reviews: each item becomes a ``rate`` event with no rating value. The files
carry no times, so each event gets a synthetic one: 2014-01-01 00:00:00 UTC plus its position
in the user's sequence, in seconds. That keeps the order and nothing else; ``context`` says so.
``sequences`` is the same reader for any file laid out this way.

With no header to check, the first line decides whether the file is this format: it must be
ids separated by single spaces (no tabs, quotes, commas or braces), a user and at least one
item. Later lines may separate ids by any whitespace.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from shelfwise.core.errors import InputFileError
from shelfwise.data.readers.base import (
    FIELD_TOO_LARGE,
    MALFORMED,
    RAW_KEEP,
    SYNTHETIC_TS,
    DatasetFormat,
    Draft,
    Problem,
    ReadOptions,
    Record,
    TimeSpec,
    iter_lines,
)

BASE_TS = 1_388_534_400  # 2014-01-01T00:00:00Z
WHAT = "sequences (user item item …)"
_FIRST_LINE = re.compile(r"[^\s\"'{}\[\],;]+(?: +[^\s\"'{}\[\],;]+)+")  # ids, single-space separated


def read(path: Path, opts: ReadOptions) -> Iterator[Record]:
    count = 0
    first = True
    for rec in iter_lines(path, opts):
        if isinstance(rec, Problem):
            if first:
                raise InputFileError(f"{path}: not a {WHAT} file (line {rec.line_no} is not UTF-8 text)")
            records: list[Record] = [rec]
        else:
            line_no, text = rec
            line = text.strip()
            if not line:
                continue
            if len(line) > opts.field_size_limit:
                records = [
                    Problem(line_no, line[:RAW_KEEP], None, FIELD_TOO_LARGE, f"{len(line)} characters")
                ]
            else:
                tokens = line.split()
                if first and not _FIRST_LINE.fullmatch(line):
                    raise InputFileError(
                        f"{path}: not a {WHAT} file (line {line_no}: {line[:80]!r} is not a user and items)"
                    )
                if len(tokens) < 2:
                    records = [Problem(line_no, line, None, MALFORMED, "a user with no items")]
                else:
                    records = _drafts(line_no, line[:RAW_KEEP], tokens)
        first = False
        for out in records:
            yield out
            count += 1
            if opts.limit is not None and count >= opts.limit:
                return
    if first:
        raise InputFileError(f"{path}: empty file, expected a valid {WHAT} file")


def _drafts(line_no: int, raw: str, tokens: list[str]) -> list[Record]:
    user = tokens[0]
    return [
        Draft(
            line_no,
            raw,
            {
                "user_id": user,
                "session_id": None,
                "item_id": item,
                "type": "rate",
                "ts": str(BASE_TS + pos),
                "context": {"position": pos, "ts_synthetic": True},
            },
            notes=(SYNTHETIC_TS,),
        )
        for pos, item in enumerate(tokens[1:])
    ]


SEQUENCES = DatasetFormat(
    name="sequences",
    kind="events",
    title="one user a line: user item item … in time order",
    read=read,
    time=TimeSpec(unit="s", tz="UTC"),
    notes="No times in the file: ts is synthetic (2014-01-01 UTC + position in seconds), order only.",
    required=("user_id", "item_id"),
)

AMAZON_BEAUTY = DatasetFormat(
    name="amazon-beauty",
    kind="events",
    title="Amazon Beauty 5-core review sequences (McAuley et al.), one user a line (S3-Rec/ICLRec layout)",
    read=read,
    time=TimeSpec(unit="s", tz="UTC"),
    licence="research use (Amazon review data, McAuley et al.; no open licence)",
    redistributable=False,
    shared="amazon_beauty/Beauty.txt",
    notes=(
        "Interactions are reviews, read as 'rate' events with no value. No times in the file: ts is "
        "synthetic (2014-01-01 UTC + position in seconds), order only. Research use: never vendored."
    ),
    required=("user_id", "item_id"),
)
FORMATS = (AMAZON_BEAUTY, SEQUENCES)
