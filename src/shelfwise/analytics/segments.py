"""RFM segmentation with named segments, a customer-lifetime-value estimate, and cohort retention."""

from __future__ import annotations

import polars as pl

from shelfwise.analytics.frames import DAY_MS, frame
from shelfwise.store.analytical import AnalyticalStore

# The usual recency × frequency grid (scores 1–5, 5 = most recent / most frequent), first match wins.
SEGMENTS: tuple[tuple[str, str], ...] = (
    (r"^[1-2][1-2]$", "hibernating"),
    (r"^[1-2][3-4]$", "at risk"),
    (r"^[1-2]5$", "can't lose them"),
    (r"^3[1-2]$", "about to sleep"),
    (r"^33$", "need attention"),
    (r"^[3-4][4-5]$", "loyal customers"),
    (r"^41$", "promising"),
    (r"^51$", "new customers"),
    (r"^[4-5][2-3]$", "potential loyalists"),
    (r"^5[4-5]$", "champions"),
)


def _score(column: str, *, descending: bool = False) -> pl.Expr:
    # Quintile by rank, ties broken by order of appearance, so every score holds a fifth of customers.
    rank = pl.col(column).rank("ordinal", descending=descending)
    return ((rank - 1) * 5 // pl.len() + 1).cast(pl.Int8)


def rfm(db: AnalyticalStore, *, asof: int | None = None) -> pl.DataFrame:
    """Per customer: recency (days since last order at ``asof``, default the last event), frequency
    (orders), monetary (purchases minus returns), their 1–5 scores and a named segment."""
    totals = frame(db.customer_totals(until=None if asof is None else asof + 1))
    if asof is None:
        span = db.time_range()
        asof = span[1] if span else 0
    if totals.is_empty():
        return pl.DataFrame(
            schema={"user_id": pl.String, "recency_days": pl.Float64, "frequency": pl.Int64}
        ).with_columns(monetary=pl.lit(0.0), segment=pl.lit(""))
    table = (
        totals.with_columns(
            recency_days=(asof - pl.col("last_ts")) / DAY_MS,
            tenure_days=(asof - pl.col("first_ts")) / DAY_MS,
            monetary=pl.col("gross") - pl.col("returned"),
        )
        .sort("user_id")
        .with_columns(
            r_score=_score("recency_days", descending=True),
            f_score=_score("frequency"),
            m_score=_score("monetary"),
        )
        .with_columns(rf=pl.col("r_score").cast(pl.String) + pl.col("f_score").cast(pl.String))
    )
    segment = pl.lit("other")
    for pattern, name in reversed(SEGMENTS):
        segment = pl.when(pl.col("rf").str.contains(pattern)).then(pl.lit(name)).otherwise(segment)
    return table.with_columns(segment=segment).select(
        "user_id",
        "recency_days",
        "frequency",
        "monetary",
        "tenure_days",
        "r_score",
        "f_score",
        "m_score",
        "segment",
    )


def segment_summary(rfm_frame: pl.DataFrame) -> pl.DataFrame:
    """Customers, share, and mean recency, frequency and monetary value per named segment."""
    total = max(rfm_frame.height, 1)
    return (
        rfm_frame.group_by("segment")
        .agg(
            customers=pl.len(),
            recency_days=pl.col("recency_days").mean(),
            frequency=pl.col("frequency").mean(),
            monetary=pl.col("monetary").mean(),
            revenue=pl.col("monetary").sum(),
        )
        .with_columns(share=pl.col("customers") / total)
        .sort("revenue", descending=True)
    )


def clv(
    rfm_frame: pl.DataFrame,
    *,
    horizon_months: int = 12,
    monthly_discount: float = 0.01,
    margin: float = 1.0,
) -> pl.DataFrame:
    """Customer lifetime value over the next ``horizon_months``: the customer's monthly net spend so
    far, times the chance they are still buying, discounted month by month.

    The chance of still buying is ``exp(-recency / typical gap)``, the typical gap being the
    customer's own mean days between orders (tenure / (orders − 1); 90 days for one-order
    customers), a simple stand-in for a BG/NBD "probability alive". ``margin`` turns revenue into
    profit when the shop knows it.
    """
    months = max(horizon_months, 1)
    annuity = sum(1 / (1 + monthly_discount) ** t for t in range(1, months + 1))
    gap = (
        pl.when(pl.col("frequency") > 1)
        .then(pl.col("tenure_days") / (pl.col("frequency") - 1))
        .otherwise(90.0)
        .clip(lower_bound=7.0)
    )
    monthly = pl.col("monetary").clip(lower_bound=0.0) / (pl.col("tenure_days").clip(lower_bound=30.0) / 30.0)
    return (
        rfm_frame.with_columns(typical_gap_days=gap)
        .with_columns(p_alive=(-pl.col("recency_days") / pl.col("typical_gap_days")).exp())
        .with_columns(
            monthly_value=monthly,
            clv=monthly * pl.col("p_alive") * annuity * margin,
        )
        .select("user_id", "segment", "monthly_value", "p_alive", "clv")
        .sort("clv", descending=True)
    )


def cohort_retention(db: AnalyticalStore, *, max_periods: int = 12) -> pl.DataFrame:
    """Cohort retention matrix: one row per first-order month (``cohort``, ``customers``), and columns
    ``m0``…``mN``: the share of the cohort that ordered N months after their first month."""
    orders = frame(db.orders())
    if orders.is_empty():
        return pl.DataFrame(schema={"cohort": pl.Date, "customers": pl.UInt32})
    months = orders.with_columns(
        month=pl.col("event_time").dt.year() * 12 + pl.col("event_time").dt.month() - 1
    ).select("user_id", "month")
    first = months.group_by("user_id").agg(cohort_month=pl.col("month").min())
    active = (
        months.unique()
        .join(first, on="user_id")
        .with_columns(offset=pl.col("month") - pl.col("cohort_month"))
        .filter(pl.col("offset") <= max_periods)
    )
    sizes = first.group_by("cohort_month").agg(customers=pl.len())
    counts = active.group_by("cohort_month", "offset").agg(n=pl.len()).join(sizes, on="cohort_month")
    wide = (
        counts.with_columns(share=pl.col("n") / pl.col("customers"), col=pl.format("m{}", pl.col("offset")))
        .pivot(on="col", index=["cohort_month", "customers"], values="share")
        .sort("cohort_month")
    )
    present = [f"m{i}" for i in range(max_periods + 1) if f"m{i}" in wide.columns]
    cohort = pl.date(pl.col("cohort_month") // 12, pl.col("cohort_month") % 12 + 1, 1)
    return wide.select(cohort.alias("cohort"), "customers", *present)
