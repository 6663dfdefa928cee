"""Personalised marketing lists: whom to win back, with what — churn risk × category affinity."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import polars as pl

from shelfwise.analytics.frames import frame
from shelfwise.data.normalize import clean_id
from shelfwise.store.analytical import AnalyticalStore


def category_affinity(db: AnalyticalStore, *, prior: float = 1.0) -> pl.DataFrame:
    """Per customer and category: share of their events (purchases count triple) in the category,
    smoothed with ``prior`` events spread over all categories so one click is not a passion."""
    counts = frame(db.user_category_counts()).with_columns(weight=pl.col("events") + 2 * pl.col("purchases"))
    n_categories = max(counts["category"].n_unique(), 1)
    return counts.with_columns(
        affinity=(pl.col("weight") + prior / n_categories) / (pl.col("weight").sum().over("user_id") + prior)
    ).select("user_id", "category", "affinity", "events", "purchases")


def marketing_lists(
    scores: pl.DataFrame,
    affinity: pl.DataFrame,
    *,
    per_category: int = 50,
    min_risk: float = 0.3,
    categories: int = 10,
) -> pl.DataFrame:
    """For the ``categories`` categories with the most customers at risk, the ``per_category``
    customers to contact first: priority = churn probability × affinity for the category.
    ``scores`` is ``ChurnResult.scores`` (user_id, churn_probability, …)."""
    risky = scores.filter(pl.col("churn_probability") >= min_risk).select("user_id", "churn_probability")
    joined = affinity.join(risky, on="user_id").with_columns(
        priority=pl.col("churn_probability") * pl.col("affinity")
    )
    biggest = (
        joined.group_by("category")
        .agg(at_risk=pl.len(), total=pl.col("priority").sum())
        .sort("total", descending=True)
        .head(categories)["category"]
    )
    return (
        joined.filter(pl.col("category").is_in(biggest.to_list()))
        .sort("priority", descending=True)
        .with_columns(rank=pl.col("priority").rank("ordinal", descending=True).over("category"))
        .filter(pl.col("rank") <= per_category)
        .sort("category", "rank")
        .select("category", "rank", "user_id", "churn_probability", "affinity", "priority")
    )


# --- the list with the shop's own ids (admin only: see ``shelfwise.web.pages``) ----------------
MAX_SHOP_IDS = 1_000_000
MAX_ID_LENGTH = 256
ID_HEADERS = ("customer_id", "customer", "user_id", "user", "id", "customerid", "customer id")


class ShopIdsError(ValueError):
    """The shop's ids cannot be read; the message names what is wrong (``field``: where)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True, slots=True)
class ShopIdList:
    """The marketing list keyed by the shop's own ids, and how much of it the ids covered."""

    table: pl.DataFrame  # category, rank, customer_id, churn_probability, affinity, priority
    matched_rows: int  # list rows whose shopper is among the ids given
    unmatched_rows: int  # list rows whose shopper is not (they stay pseudonymous: not exported)
    erased_rows: int  # list rows naming a shopper erased since the list was built (never exported)
    ids_given: int  # distinct ids given
    ids_matched: int  # of those, how many name someone on the list

    def counts(self) -> dict[str, int]:
        return {
            "matched_rows": self.matched_rows,
            "unmatched_rows": self.unmatched_rows,
            "erased_rows": self.erased_rows,
            "ids_given": self.ids_given,
            "ids_matched": self.ids_matched,
        }


def check_shop_ids(values: Iterable[object], field: str = "customer_ids") -> list[str]:
    """The ids as strings; ShopIdsError naming ``field`` for a non-string, an empty or over-long
    id, or too many. Numbers are accepted (a shop's customer numbers) and written as text."""
    ids: list[str] = []
    for i, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ShopIdsError(f"{field}[{i}]", f"must be a string, not {type(value).__name__}")
        text = str(value)
        if not clean_id(text):
            raise ShopIdsError(f"{field}[{i}]", "is empty")
        if len(text) > MAX_ID_LENGTH:
            raise ShopIdsError(f"{field}[{i}]", f"is longer than {MAX_ID_LENGTH} characters")
        ids.append(text)
        if len(ids) > MAX_SHOP_IDS:
            raise ShopIdsError(field, f"at most {MAX_SHOP_IDS:,} ids per request")
    if not ids:
        raise ShopIdsError(field, "no ids given: send the shop's customer ids")
    return ids


def read_shop_ids(text: str, field: str = "file") -> list[str]:
    """The ids in a CSV text: one column (a header line such as ``customer_id`` is skipped), or
    several columns one of which is headed ``customer_id`` (or user_id, id …). Blank lines are
    skipped. ShopIdsError naming ``field`` when no id column can be told apart."""
    rows = [row for row in csv.reader(io.StringIO(text)) if any(cell.strip() for cell in row)]
    if not rows:
        raise ShopIdsError(field, "is empty: one customer id per line")
    header = [cell.strip().lower() for cell in rows[0]]
    named = [i for i, name in enumerate(header) if name in ID_HEADERS]
    if len(header) > 1 or any(len(row) > 1 for row in rows[1:]):
        if not named:
            raise ShopIdsError(
                field, f"has {len(header)} columns and none is headed {' or '.join(ID_HEADERS[:3])}"
            )
        column = named[0]
        values = [row[column] if column < len(row) else "" for row in rows[1:]]
    else:
        values = [row[0] for row in (rows[1:] if named else rows)]
    for i, value in enumerate(values):
        if not value.strip():
            raise ShopIdsError(field, f"line {i + 2 if named else i + 1} has no customer id")
    return check_shop_ids(values, field)


def with_shop_ids(
    lists: pl.DataFrame,
    shop_ids: Iterable[str],
    pseudonymize: Callable[[str], str],
    *,
    erased_among: Callable[[Iterable[str]], set[str]] | None = None,
) -> ShopIdList:
    """``lists`` (``marketing_lists``' columns, keyed by pseudonym) with the shop's own id for each
    row whose pseudonym is the pseudonym of one of ``shop_ids`` (``pseudonymize``: the store's
    ``Pseudonymizer``, which cleans each id as ingest did). The store never keeps raw ids, so this
    join against ids the shop supplies is the only way back to them.

    Rows naming a shopper ``erased_among`` reports erased are dropped first, whatever ids are given;
    rows no given id matches are left out (they are counted, never exported as pseudonyms)."""
    mapping: dict[str, str] = {}
    for raw in shop_ids:
        mapping.setdefault(pseudonymize(raw), raw)
    pseudonyms = lists["user_id"].unique().to_list()
    erased = erased_among(pseudonyms) if erased_among is not None and pseudonyms else set()
    kept = lists.filter(~pl.col("user_id").is_in(sorted(erased)))
    ids = pl.DataFrame(
        {"user_id": list(mapping), "customer_id": list(mapping.values())},
        schema={"user_id": pl.String, "customer_id": pl.String},
    )
    joined = kept.join(ids, on="user_id", how="inner", maintain_order="left")
    columns = [c if c != "user_id" else "customer_id" for c in lists.columns]
    return ShopIdList(
        table=joined.select(columns),
        matched_rows=joined.height,
        unmatched_rows=kept.height - joined.height,
        erased_rows=lists.height - kept.height,
        ids_given=len(mapping),
        ids_matched=joined["user_id"].n_unique() if joined.height else 0,
    )
