"""Differentially private versions of the published aggregates: funnels, category popularity, RFM
segment sizes, trending lists and cohort tables.

Every function bounds each shopper's contribution (``max_*``), computes the counts over a domain
that does not depend on the data (the catalogue's categories and brands, the days or months of the
store's span), adds OpenDP Laplace noise for ε, and spends ε from the store's ledger *first*
(``shelfwise.store.ledger``): a query past the budget is refused before any noise is drawn. Rates,
shares, orders and top lists are computed from the noisy counts (post-processing, no extra ε).
``ledger=None`` computes a release without recording it — for offline utility curves only; nothing
computed so may be published.

The unit of privacy is one shopper (a guest session counts as its own shopper).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from shelfwise.analytics.frames import DAY_MS, frame
from shelfwise.data.dp import bound_contributions, laplace_counts, laplace_scale, private_quantile
from shelfwise.store.analytical import AnalyticalStore, FunnelDimension
from shelfwise.store.ledger import PrivacyLedger

MECHANISM = "opendp-discrete-laplace"


@dataclass
class PrivateRelease:
    """A noisy aggregate and what it cost."""

    query: str
    epsilon: float
    sensitivity: float
    scale: float
    table: pl.DataFrame
    release_id: int | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "epsilon": self.epsilon,
            "sensitivity": self.sensitivity,
            "laplace_scale": self.scale,
            "release_id": self.release_id,
            "mechanism": MECHANISM,
            "unit_of_privacy": "shopper",
            **self.notes,
            "rows": self.table.to_dicts(),
        }


def _spend(
    ledger: PrivacyLedger | None, query: str, epsilon: float, sensitivity: float, detail: dict[str, Any]
) -> int | None:
    if ledger is None:
        return None
    release = ledger.spend(
        query,
        epsilon,
        mechanism=MECHANISM,
        sensitivity=sensitivity,
        scale=laplace_scale(epsilon, sensitivity),
        detail=detail,
    )
    return release.id


def _owner_codes(owners: pl.Series) -> np.ndarray:
    return owners.cast(pl.String).fill_null("").rank("dense").cast(pl.Int64).to_numpy()


def _counts_over(keys: pl.Series, domain: list[str]) -> np.ndarray:
    index = {k: i for i, k in enumerate(domain)}
    codes = np.array([index.get(k, -1) for k in keys.to_list()], np.int64)
    return np.bincount(codes[codes >= 0], minlength=len(domain)).astype(np.int64)


def _days(db: AnalyticalStore) -> list[str]:
    span = db.time_range()
    if span is None:
        return []
    first, last = span[0] // DAY_MS, span[1] // DAY_MS
    return [str(np.datetime64(int(d), "D")) for d in range(first, last + 1)]


def private_funnel(
    db: AnalyticalStore,
    ledger: PrivacyLedger | None,
    *,
    epsilon: float,
    by: FunnelDimension = "category",
    top: int | None = 20,
    max_sessions: int = 10,
    closed: bool | None = None,
    seed: int = 0,
) -> PrivateRelease:
    """Sessions that viewed, carted and bought per ``by``, each shopper counted in at most
    ``max_sessions`` (group, session) rows; L1 sensitivity ``3 × max_sessions`` (a row adds at most
    one to each of the three steps)."""
    if closed is None:
        closed = db.counts().get("view", 0) > 0
    sensitivity = 3 * max_sessions
    query = f"funnel:{by}"
    release_id = _spend(
        ledger, query, epsilon, sensitivity, {"by": by, "max_sessions": max_sessions, "top": top}
    )
    rows = frame(db.funnel_sessions(by=by, closed=closed))
    domain = {
        "category": lambda: db.catalogue_keys("funnel_category"),
        "brand": lambda: db.catalogue_keys("brand"),
        "day": lambda: _days(db),
        "total": lambda: ["all"],
    }[by]()
    domain = sorted(set(domain) | ({"(none)"} if by in ("category", "brand") else set()))
    if not rows.is_empty():
        rows = rows.filter(
            pl.Series(bound_contributions(_owner_codes(rows["owner"]), max_sessions, seed=seed))
        )
    steps = [_counts_over(rows.filter(pl.col(c))["key"], domain) for c in ("v", "c", "p")]
    noisy = laplace_counts(np.concatenate(steps), epsilon=epsilon, sensitivity=sensitivity)
    views, carts, buys = (np.maximum(x, 0) for x in np.split(noisy, 3))
    table = pl.DataFrame({"key": domain, "views": views, "carts": carts, "purchases": buys})

    def rate(num: str, den: str) -> pl.Expr:
        return pl.when(pl.col(den) > 0).then((pl.col(num) / pl.col(den)).clip(0.0, 1.0)).otherwise(None)

    table = table.with_columns(
        view_to_cart=rate("carts", "views"),
        cart_to_purchase=rate("purchases", "carts"),
        view_to_purchase=rate("purchases", "views"),
    )
    if by == "day":
        table = table.sort("key")
    else:
        table = table.sort(pl.col("views") + pl.col("purchases"), "key", descending=[True, False])
        if top:
            table = table.head(top)
    return PrivateRelease(
        query,
        epsilon,
        sensitivity,
        laplace_scale(epsilon, sensitivity),
        table,
        release_id,
        {"max_sessions_per_shopper": max_sessions},
    )


def private_category_popularity(
    db: AnalyticalStore,
    ledger: PrivacyLedger | None,
    *,
    epsilon: float,
    types: tuple[str, ...] = ("purchase",),
    max_events: int = 20,
    top: int | None = 20,
    seed: int = 0,
) -> PrivateRelease:
    """Events of ``types`` per category (a catalogue without categories: the product type named by
    the title's last word), each shopper counted for at most ``max_events`` events."""
    query = f"category_popularity:{'+'.join(types)}"
    release_id = _spend(ledger, query, epsilon, max_events, {"types": list(types), "max_events": max_events})
    rows = frame(db.user_item_events(types=list(types)))
    domain = db.catalogue_keys("category")
    if not rows.is_empty():
        rows = rows.filter(pl.Series(bound_contributions(_owner_codes(rows["owner"]), max_events, seed=seed)))
    counts = laplace_counts(_counts_over(rows["category"], domain), epsilon=epsilon, sensitivity=max_events)
    table = (
        pl.DataFrame({"category": domain, "events": np.maximum(counts, 0)})
        .sort("events", "category", descending=[True, False])
        .head(top or len(domain))
    )
    return PrivateRelease(
        query,
        epsilon,
        max_events,
        laplace_scale(epsilon, max_events),
        table,
        release_id,
        {"max_events_per_shopper": max_events},
    )


def private_trending(
    db: AnalyticalStore,
    ledger: PrivacyLedger | None,
    *,
    epsilon: float,
    types: tuple[str, ...] = ("purchase",),
    window_days: float = 7.0,
    max_events: int = 20,
    k: int = 20,
    seed: int = 0,
) -> PrivateRelease:
    """The trending list (growth of the last ``window_days`` over the window before, times volume,
    as the ``trending`` recommender scores it) from noisy item counts; each shopper counts for at
    most ``max_events`` events over both windows."""
    query = f"trending:{'+'.join(types)}"
    release_id = _spend(
        ledger,
        query,
        epsilon,
        max_events,
        {"types": list(types), "window_days": window_days, "max_events": max_events, "k": k},
    )
    span = db.time_range()
    end = span[1] if span else 0
    rows = frame(db.user_item_events(types=list(types))).filter(pl.col("ts") > end - 2 * window_days * DAY_MS)
    domain = [str(i) for i in db.items_table.column("item_id").to_pylist()]
    if not rows.is_empty():
        rows = rows.filter(pl.Series(bound_contributions(_owner_codes(rows["owner"]), max_events, seed=seed)))
    recent_rows = rows.filter(pl.col("ts") > end - window_days * DAY_MS)
    before_rows = rows.filter(pl.col("ts") <= end - window_days * DAY_MS)
    exact = np.concatenate(
        [_counts_over(recent_rows["item_id"], domain), _counts_over(before_rows["item_id"], domain)]
    )
    noisy = np.maximum(laplace_counts(exact, epsilon=epsilon, sensitivity=max_events), 0).astype(np.float64)
    recent, before = np.split(noisy, 2)
    score = (recent + 1.0) / (before + 1.0) * np.log1p(recent)
    order = np.lexsort((np.arange(len(domain)), -score))[:k]
    table = pl.DataFrame(
        {
            "item_id": [domain[i] for i in order],
            "score": score[order],
            "recent": recent[order].astype(np.int64),
            "before": before[order].astype(np.int64),
        }
    )
    return PrivateRelease(
        query,
        epsilon,
        max_events,
        laplace_scale(epsilon, max_events),
        table,
        release_id,
        {"max_events_per_shopper": max_events, "window_days": window_days},
    )


RECENCY_CANDIDATES = np.arange(0, 3651, 1.0)  # days: a decade, public and fixed
FREQUENCY_CANDIDATES = np.arange(1, 501, 1.0)  # orders


def private_rfm_segments(
    db: AnalyticalStore, ledger: PrivacyLedger | None, *, epsilon: float, seed: int = 0
) -> PrivateRelease:
    """Customers per named RFM segment. Quintile scores depend on every other customer, so the
    eight quintile cut points (recency and frequency) are released first with OpenDP's private
    quantile (half of ε, an eighth of it each); each customer then falls in exactly one segment by
    those public cut points, and the segment sizes get Laplace noise with sensitivity 1 (the other
    half of ε)."""
    from shelfwise.analytics.segments import SEGMENTS

    query = "rfm_segments"
    release_id = _spend(ledger, query, epsilon, 1.0, {"split": "1/2 cut points, 1/2 sizes"})
    totals = frame(db.customer_totals())
    span = db.time_range()
    asof = span[1] if span else 0
    names = sorted({name for _, name in SEGMENTS} | {"other"})
    if totals.is_empty():
        table = pl.DataFrame({"segment": names, "customers": [0] * len(names)})
        return PrivateRelease(query, epsilon, 1.0, laplace_scale(epsilon / 2, 1.0), table, release_id)
    recency = ((asof - totals["last_ts"].to_numpy()) / DAY_MS).astype(np.float64)
    frequency = totals["frequency"].to_numpy().astype(np.float64)
    eps_q = epsilon / 2 / 8
    alphas = (0.2, 0.4, 0.6, 0.8)
    r_cuts = [
        private_quantile(recency, alpha=a, candidates=RECENCY_CANDIDATES, epsilon=eps_q) for a in alphas
    ]
    f_cuts = [
        private_quantile(frequency, alpha=a, candidates=FREQUENCY_CANDIDATES, epsilon=eps_q) for a in alphas
    ]
    r_score = 5 - np.searchsorted(np.sort(r_cuts), recency, side="left")  # most recent: 5
    f_score = 1 + np.searchsorted(np.sort(f_cuts), frequency, side="left")
    rf = pl.Series([f"{r}{f}" for r, f in zip(np.clip(r_score, 1, 5), np.clip(f_score, 1, 5), strict=True)])
    segment = pl.lit("other")
    for pattern, name in reversed(SEGMENTS):
        segment = pl.when(pl.col("rf").str.contains(pattern)).then(pl.lit(name)).otherwise(segment)
    labels = pl.DataFrame({"rf": rf}).with_columns(segment=segment)["segment"]
    noisy = np.maximum(laplace_counts(_counts_over(labels, names), epsilon=epsilon / 2, sensitivity=1), 0)
    total = max(int(noisy.sum()), 1)
    table = (
        pl.DataFrame({"segment": names, "customers": noisy})
        .with_columns(share=pl.col("customers") / total)
        .sort("customers", "segment", descending=[True, False])
    )
    return PrivateRelease(
        query,
        epsilon,
        1.0,
        laplace_scale(epsilon / 2, 1.0),
        table,
        release_id,
        {"recency_cut_days": r_cuts, "frequency_cut_orders": f_cuts},
    )


def private_cohorts(
    db: AnalyticalStore, ledger: PrivacyLedger | None, *, epsilon: float, max_periods: int = 12
) -> PrivateRelease:
    """The cohort retention table: customers per first-order month and how many of them ordered N
    months later. A customer is in one cohort and at most ``max_periods + 1`` cells, so the
    L1 sensitivity of the whole table is ``max_periods + 2``; shares are noisy cell / noisy size."""
    sensitivity = max_periods + 2
    query = "cohorts"
    release_id = _spend(ledger, query, epsilon, sensitivity, {"max_periods": max_periods})
    orders = frame(db.orders())
    span = db.time_range()
    if span is None or orders.is_empty():
        return PrivateRelease(
            query, epsilon, sensitivity, laplace_scale(epsilon, sensitivity), pl.DataFrame(), release_id
        )

    def month(ms: int) -> int:
        d = np.datetime64(int(ms), "ms").astype("datetime64[M]").astype(int)
        return int(d)

    months = list(range(month(span[0]), month(span[1]) + 1))
    index = {m: i for i, m in enumerate(months)}
    per = (
        orders.with_columns(
            month=(pl.col("event_time").dt.year() - 1970) * 12 + pl.col("event_time").dt.month() - 1
        )
        .select("user_id", "month")
        .unique()
    )
    first = per.group_by("user_id").agg(cohort=pl.col("month").min())
    cells = (
        per.join(first, on="user_id")
        .with_columns(offset=pl.col("month") - pl.col("cohort"))
        .filter(pl.col("offset") <= max_periods)
    )
    n = len(months)
    sizes = np.bincount([index[c] for c in first["cohort"].to_list()], minlength=n)
    grid = np.zeros((n, max_periods + 1), np.int64)
    np.add.at(grid, ([index[c] for c in cells["cohort"].to_list()], cells["offset"].to_numpy()), 1)
    noisy = laplace_counts(np.concatenate([sizes, grid.ravel()]), epsilon=epsilon, sensitivity=sensitivity)
    noisy_sizes = np.maximum(noisy[:n], 0)
    noisy_grid = np.maximum(noisy[n:].reshape(n, max_periods + 1), 0)
    data: dict[str, Any] = {
        "cohort": [str(np.datetime64(m, "M")) for m in months],
        "customers": noisy_sizes,
    }
    for j in range(max_periods + 1):
        # a period past the store's end has not happened yet: null, not a noisy zero
        observed = np.array([m + j <= months[-1] for m in months])
        share = np.divide(noisy_grid[:, j], noisy_sizes, out=np.zeros(n), where=noisy_sizes > 0).clip(0, 1)
        data[f"m{j}"] = [float(s) if ok else None for s, ok in zip(share, observed, strict=True)]
    return PrivateRelease(
        query,
        epsilon,
        sensitivity,
        laplace_scale(epsilon, sensitivity),
        pl.DataFrame(data),
        release_id,
        {"max_periods": max_periods},
    )


QUERIES = ("funnel", "category-popularity", "rfm-segments", "trending", "cohorts")


def release(
    db: AnalyticalStore,
    ledger: PrivacyLedger | None,
    query: str,
    *,
    epsilon: float,
    by: FunnelDimension = "category",
    top: int = 20,
    window_days: float = 7.0,
    max_contributions: int | None = None,
) -> PrivateRelease:
    """One of ``QUERIES`` by name (what the CLI and the analytics pages publish), spending
    ``epsilon`` from ``ledger`` first; ``max_contributions``: rows one shopper may add (sessions for
    the funnel, events for popularity and trending; the query's default when None)."""
    if query not in QUERIES:
        raise ValueError(f"unknown private query {query!r}; one of {', '.join(QUERIES)}")
    extra: dict[str, Any] = {}
    if max_contributions is not None:
        extra["max_sessions" if query == "funnel" else "max_events"] = max_contributions
    if query == "funnel":
        return private_funnel(db, ledger, epsilon=epsilon, by=by, top=top, **extra)
    if query == "category-popularity":
        return private_category_popularity(db, ledger, epsilon=epsilon, top=top, **extra)
    if query == "trending":
        return private_trending(db, ledger, epsilon=epsilon, k=top, window_days=window_days, **extra)
    if query == "rfm-segments":
        return private_rfm_segments(db, ledger, epsilon=epsilon)
    return private_cohorts(db, ledger, epsilon=epsilon)
