"""OTTO Recommender Systems Dataset (OTTO GmbH & Co KG, CC BY 4.0): sessions of a German shop.

JSON Lines, one session a line: ``{"session": 42, "events": [{"aid": 1, "ts": 1659304800025,
"type": "clicks"}, ...]}``. Each event becomes one ``Draft`` carrying its session's line number;
``ts`` is Unix milliseconds and ``clicks``/``carts``/``orders`` are aliases the quality gate maps.
OTTO has no user ids: the session stands in for the user.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from shelfwise.core.errors import InputFileError
from shelfwise.data.readers.base import (
    MALFORMED,
    RAW_KEEP,
    DatasetFormat,
    Draft,
    Problem,
    ReadOptions,
    Record,
    TimeSpec,
    iter_jsonl,
)
from shelfwise.data.readers.generic import NotAValue, raw_text

WHAT = "OTTO sessions JSON Lines"


def _session_records(line_no: int, raw: str, value: Any) -> Iterator[Record]:
    if not isinstance(value, dict):
        yield Problem(line_no, raw, None, MALFORMED, f"a JSON {type(value).__name__}, not a session object")
        return
    session = value.get("session")
    try:
        session_id = raw_text(session)
    except NotAValue as exc:
        yield Problem(line_no, raw, "session_id", exc.reason, f"session: {exc.detail}")
        return
    if session_id is None or not session_id.strip():
        yield Problem(line_no, raw, "session_id", MALFORMED, "no session")
        return
    events = value.get("events")
    if not isinstance(events, list):
        shown = "missing" if events is None else f"a JSON {type(events).__name__}, not a list"
        yield Problem(line_no, raw, None, MALFORMED, f"events: {shown}")
        return
    for pos, event in enumerate(events):
        one = json.dumps({"session": session, "event": event}, ensure_ascii=False, default=str)[:RAW_KEEP]
        if not isinstance(event, dict):
            yield Problem(line_no, one, None, MALFORMED, f"event {pos}: not an object")
            continue
        try:
            fields = {
                "user_id": session_id,
                "session_id": session_id,
                "item_id": raw_text(event.get("aid")),
                "type": raw_text(event.get("type")),
                "ts": raw_text(event.get("ts")),
                "context": {"position": pos},
            }
        except NotAValue as exc:
            yield Problem(line_no, one, None, exc.reason, f"event {pos}: {exc.detail}")
            continue
        yield Draft(line_no, one, fields)


def read(path: Path, opts: ReadOptions) -> Iterator[Record]:
    # one line holds many events, so the limit counts records here, not lines
    count = 0
    first = True
    for rec in iter_jsonl(path, replace(opts, limit=None), what=WHAT):
        if isinstance(rec, Problem):
            records: Iterator[Record] = iter((rec,))
        else:
            line_no, raw, value = rec
            if first and not (isinstance(value, dict) and "session" in value):
                raise InputFileError(f'{path}: not an {WHAT} file (line {line_no} has no "session")')
            records = _session_records(line_no, raw, value)
        first = False
        for out in records:
            yield out
            count += 1
            if opts.limit is not None and count >= opts.limit:
                return


FORMAT = DatasetFormat(
    name="otto",
    kind="events",
    title="OTTO sessions: clicks, carts and orders of a German online shop, one session a line",
    read=read,
    time=TimeSpec(unit="ms", tz="UTC"),
    licence="CC BY 4.0 (OTTO GmbH & Co KG, https://github.com/otto-de/recsys-dataset)",
    redistributable=True,
    vendored="data/otto/train.jsonl",
    shared="otto_fixture/train.jsonl",
    notes="OTTO has no user ids: user_id is the session id, so each session counts as its own shopper.",
    required=("user_id", "item_id", "type", "ts"),
)
