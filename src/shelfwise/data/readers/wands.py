"""WANDS, the Wayfair ANnotation DataSet (Chen et al., ECIR 2022, MIT): search queries.

Despite its ``.csv`` name, ``query.csv`` is tab-separated: ``query_id``, ``query`` (the
shopper's text, typos kept) and ``query_class`` (the product class it targets; may be empty).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from shelfwise.data.readers.base import DatasetFormat, Draft, Problem, ReadOptions, Record, iter_csv

COLUMNS = ("query_id", "query")


def read(path: Path, opts: ReadOptions) -> Iterator[Record]:
    for rec in iter_csv(path, opts, required=COLUMNS, delimiter="\t", what="WANDS queries (tab-separated)"):
        if isinstance(rec, Problem):
            yield rec
            continue
        line_no, raw, row = rec
        query_class = row.get("query_class", "").strip()
        yield Draft(
            line_no,
            raw,
            {"query_id": row["query_id"].strip(), "text": row["query"], "query_class": query_class or None},
        )


FORMAT = DatasetFormat(
    name="wands",
    kind="queries",
    title="WANDS: 480 Wayfair search queries with the product class each targets",
    read=read,
    licence="MIT (Wayfair, WANDS; Chen et al., ECIR 2022)",
    redistributable=True,
    vendored="data/wands/query.csv",
    shared="wands_queries/query.csv",
    notes="Only the queries: WANDS products and relevance labels are not included.",
)
