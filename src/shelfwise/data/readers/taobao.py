"""Taobao UserBehavior (Alibaba, Tianchi dataset 649; Zhu et al., KDD 2018).

A headerless CSV: ``user_id,item_id,category_id,behavior,timestamp`` with behaviours ``pv``,
``cart``, ``fav`` and ``buy`` (the quality gate maps these aliases) and Unix seconds. Research
use only: read from the shared data folder, never vendored.

With no header to check, the first record decides whether the file is this format at all: a
first line that is not five comma-separated fields of UTF-8 text is not a UserBehavior file.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from shelfwise.core.errors import InputFileError
from shelfwise.data.readers.base import DatasetFormat, Draft, Problem, ReadOptions, Record, TimeSpec, iter_csv

COLUMNS = ("user_id", "item_id", "category_id", "behavior", "timestamp")
WHAT = "Taobao UserBehavior CSV"


def read(path: Path, opts: ReadOptions) -> Iterator[Record]:
    first = True
    for rec in iter_csv(path, opts, columns=COLUMNS, header=False, what=WHAT):
        if first:
            first = False
            if isinstance(rec, Problem):
                raise InputFileError(f"{path}: not a {WHAT} file (line {rec.line_no}: {rec.detail})")
            line_no, raw, row = rec
            if [v.strip().lower() for v in row.values()] == list(COLUMNS):
                continue  # a header someone added: not data
        if isinstance(rec, Problem):
            yield rec
            continue
        line_no, raw, row = rec
        item = row["item_id"].strip()
        user = row["user_id"].strip()
        yield Draft(
            line_no,
            raw,
            {
                "user_id": user or None,
                "item_id": item,
                "type": row["behavior"],
                "ts": row["timestamp"].strip(),
            },
            item={"item_id": item, "attributes": {"category_id": row["category_id"].strip()}},
        )
    if first:
        raise InputFileError(f"{path}: empty file, expected a valid {WHAT} file")


FORMAT = DatasetFormat(
    name="taobao",
    kind="events",
    title="Taobao UserBehavior: page views, carts, favourites and purchases (Alibaba, 2017)",
    read=read,
    time=TimeSpec(unit="s", tz="UTC"),
    licence="Tianchi terms: research use only (Zhu et al., KDD 2018)",
    redistributable=False,
    shared="taobao_sample/UserBehavior.csv",
    notes="Research use only: never copied into the repository. The file has no header line.",
    required=("user_id", "item_id", "type", "ts"),
)
