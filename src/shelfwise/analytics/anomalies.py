"""Anomalies: bot-like users, fraud-like purchases, return abuse, demand spikes and shilling-like
rating bursts — and an honest test of the detectors on synthetic anomalies injected into a copy
of the real data.

Each detector returns a frame with a ``flagged`` column and a human-readable ``reason``, so a
person can see why something was flagged. Thresholds are robust (median/MAD in log space) with
absolute floors, because some populations have no spread at all (every Online Retail customer acts
at most twice a minute) and a z-score over zero spread flags everything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from shelfwise.analytics.frames import DAY_MS, frame
from shelfwise.store.analytical import EVENT_SCHEMA, AnalyticalStore

BOT_FEATURES = ("max_per_minute", "actions_per_session", "actions_per_day")


@dataclass(frozen=True)
class BotRule:
    """A user is bot-like when a feature is ``z`` robust deviations above the population (in log
    space) *and* they act at least ``min_per_minute`` times in some minute or ``min_per_session``
    times in an average session."""

    z: float = 6.0
    min_per_minute: int = 12
    min_per_session: int = 60


def _robust_z(x: pl.Expr, *, floor: float = 0.25) -> pl.Expr:
    logged = x.log1p()
    mad = (logged - logged.median()).abs().median() * 1.4826
    return (logged - logged.median()) / pl.max_horizontal(mad, pl.lit(floor))


def bot_users(db: AnalyticalStore, *, rule: BotRule | None = None) -> pl.DataFrame:
    """Every known user with their pace and session shape, a bot score (the largest robust z) and
    ``flagged`` with the feature that stood out."""
    rule = rule or BotRule()
    activity = frame(db.user_activity())
    if activity.is_empty():
        return activity.with_columns(score=pl.lit(0.0), flagged=pl.lit(False), reason=pl.lit(""))
    days = ((pl.col("last_ts") - pl.col("first_ts")) / DAY_MS).clip(lower_bound=1.0)
    scored = activity.with_columns(actions_per_day=pl.col("actions") / days).with_columns(
        [_robust_z(pl.col(f)).alias(f"z_{f}") for f in BOT_FEATURES]
    )
    zs = [f"z_{f}" for f in BOT_FEATURES]
    fast = (pl.col("max_per_minute") >= rule.min_per_minute) | (
        pl.col("actions_per_session") >= rule.min_per_session
    )
    top = pl.concat_list(zs).list.arg_max()
    return (
        scored.with_columns(score=pl.max_horizontal(zs))
        .with_columns(
            flagged=(pl.col("score") >= rule.z) & fast,
            reason=pl.format(
                "{} (z={})",
                top.replace_strict(list(range(len(BOT_FEATURES))), list(BOT_FEATURES)),
                pl.col("score").round(1),
            ),
        )
        .drop(zs)
        .sort("score", descending=True)
    )


@dataclass(frozen=True)
class FraudRule:
    """Orders in a *burst* (a customer's orders with at most ``gap_minutes`` between them) of at
    least ``min_orders`` orders whose median value is above the ``value_quantile`` of ordinary
    orders and ``novelty`` times the customer's own usual order (any value for a new account)."""

    gap_minutes: float = 30.0
    min_orders: int = 4
    value_quantile: float = 0.9
    novelty: float = 2.0
    amount_z: float = 5.0


def fraud_orders(db: AnalyticalStore, *, rule: FraudRule | None = None) -> pl.DataFrame:
    """Every order with its burst (size, mean value), its amount's robust z against all orders,
    and ``flagged`` for bursts of costly orders (the fraud-like pattern: stolen card or taken-over
    account buying fast). ``amount_outlier`` marks single orders far above the rest, for review."""
    rule = rule or FraudRule()
    orders = frame(db.orders()).sort("user_id", "ts")
    if orders.is_empty():
        return orders.with_columns(flagged=pl.lit(False), reason=pl.lit(""))
    gap = pl.col("ts") - pl.col("ts").shift(1).over("user_id")
    with_bursts = orders.with_columns(
        burst=(gap.is_null() | (gap > rule.gap_minutes * 60_000)).cast(pl.Int32).cum_sum().over("user_id")
    ).with_columns(
        burst_orders=pl.len().over("user_id", "burst"),
        burst_median_value=pl.col("value").median().over("user_id", "burst"),
        amount_z=_robust_z(pl.col("value").clip(lower_bound=0.0)),
    )
    # "Costly" is judged against ordinary orders only, so a flood of fraud cannot raise the bar.
    ordinary = with_bursts.filter(pl.col("burst_orders") < rule.min_orders)["value"]
    threshold = (ordinary if ordinary.len() else with_bursts["value"]).quantile(rule.value_quantile)
    # A customer's usual order: the median of their orders before this burst (none for a new account).
    usual = (
        with_bursts.group_by("user_id", "burst")
        .agg(first_ts=pl.col("ts").min())
        .join(with_bursts.select("user_id", "ts", "value"), on="user_id")
        .filter(pl.col("ts") < pl.col("first_ts"))
        .group_by("user_id", "burst")
        .agg(usual_value=pl.col("value").median())
    )
    with_bursts = with_bursts.join(usual, on=["user_id", "burst"], how="left")
    unusual = pl.col("usual_value").is_null() | (
        pl.col("burst_median_value") >= rule.novelty * pl.col("usual_value")
    )
    burst = (
        (pl.col("burst_orders") >= rule.min_orders) & (pl.col("burst_median_value") >= threshold) & unusual
    )
    return with_bursts.with_columns(
        flagged=burst,
        amount_outlier=pl.col("amount_z") >= rule.amount_z,
        reason=pl.when(burst)
        .then(
            pl.format(
                "{} orders within minutes, median {}",
                pl.col("burst_orders"),
                pl.col("burst_median_value").round(2),
            )
        )
        .when(pl.col("amount_z") >= rule.amount_z)
        .then(pl.format("amount {} (z={})", pl.col("value").round(2), pl.col("amount_z").round(1)))
        .otherwise(pl.lit("")),
    ).drop("burst")


def return_abusers(db: AnalyticalStore, *, min_returns: int = 5, min_share: float = 0.3) -> pl.DataFrame:
    """Customers with at least ``min_returns`` returned lines making up ``min_share`` of their lines."""
    lines = frame(db.order_lines())
    return (
        lines.group_by("user_id")
        .agg(
            lines=pl.len(),
            returns=(pl.col("type") == "return").sum(),
            returned_value=pl.when(pl.col("type") == "return").then(pl.col("amount")).otherwise(0.0).sum(),
        )
        .with_columns(return_share=pl.col("returns") / pl.col("lines"))
        .with_columns(flagged=(pl.col("returns") >= min_returns) & (pl.col("return_share") >= min_share))
        .sort("returned_value", descending=True)
    )


def demand_spikes(
    db: AnalyticalStore, *, top: int = 300, z: float = 8.0, ratio: float = 5.0, min_units: int = 20
) -> pl.DataFrame:
    """Item-days of the ``top`` items whose units are ``z`` standard deviations and ``ratio`` times
    above the item's previous 28 days, and at least ``min_units``."""
    keys = db.top_keys(level="item", n=top)
    demand = frame(db.demand_series(level="item", freq="day", keys=keys))
    if demand.is_empty():
        return demand.with_columns(flagged=pl.lit(False))
    days = pl.date_range(demand["period"].min(), demand["period"].max(), "1d", eager=True).alias("period")
    grid = pl.DataFrame({"key": keys}).join(days.to_frame(), how="cross")
    full = (
        grid.join(demand, on=["key", "period"], how="left")
        .with_columns(pl.col("units").fill_null(0).cast(pl.Float64))
        .sort("key", "period")
    )
    prev = pl.col("units").shift(1)
    mean28 = prev.rolling_mean(28, min_samples=14).over("key")
    std28 = prev.rolling_std(28, min_samples=14).over("key")
    return (
        full.with_columns(baseline=mean28, spread=std28)
        .with_columns(
            z=(pl.col("units") - pl.col("baseline")) / pl.max_horizontal(pl.col("spread"), pl.lit(1.0))
        )
        .with_columns(
            flagged=(pl.col("z") >= z)
            & (pl.col("units") >= ratio * pl.col("baseline"))
            & (pl.col("units") >= min_units)
        )
        .filter(pl.col("baseline").is_not_null())
    )


def rating_bursts(
    db: AnalyticalStore, *, window_hours: int = 24, min_ratings: int = 10, new_share: float = 0.7
) -> pl.DataFrame:
    """Shilling-like bursts: an item rated at least ``min_ratings`` times within one window of
    ``window_hours`` where at least ``new_share`` of the raters are throwaway accounts (first seen
    that day, or with at most three events) and the mean rating is extreme (≥ 4.5 or ≤ 1.5 of 5:
    pushing or nuking an item). Empty when the store has no ``rate`` events."""
    ratings = frame(db.rating_events())
    if ratings.is_empty():
        return pl.DataFrame(
            schema={"key": pl.String, "window": pl.Int64, "ratings": pl.UInt32, "flagged": pl.Boolean}
        )
    throwaway = ((pl.col("ts") - pl.col("first_ts")) < DAY_MS) | (pl.col("n_events") <= 3)
    return (
        ratings.with_columns(window=pl.col("ts") // (window_hours * 3_600_000), throwaway=throwaway)
        .group_by(pl.col("item_id").alias("key"), "window")
        .agg(
            ratings=pl.len(),
            new_share=pl.col("throwaway").mean(),
            mean_value=pl.col("value").mean(),
        )
        .with_columns(
            flagged=(pl.col("ratings") >= min_ratings)
            & (pl.col("new_share") >= new_share)
            & ((pl.col("mean_value") - 3).abs() >= 1.5)
        )
        .sort("ratings", descending=True)
    )


# --- injected anomalies --------------------------------------------------------------------------


def _events(rows: list[dict[str, Any]]) -> pa.Table:
    columns = {name: [r.get(name) for r in rows] for name in EVENT_SCHEMA.names}
    return pa.table(columns, schema=EVENT_SCHEMA)


def _row(
    i: str, user: str | None, session: str, item: str, kind: str, ts: int, qty: int, price: float
) -> dict[str, Any]:
    return {
        "event_id": f"synthetic-{i}",
        "user_id": user,
        "session_id": session,
        "item_id": item,
        "type": kind,
        "ts": ts,
        "quantity": qty,
        "price": price,
        "value": None,
        "device": None,
    }


def inject_bots(db: AnalyticalStore, *, n: int = 30, seed: int = 0) -> tuple[AnalyticalStore, set[str]]:
    """A copy of ``db`` with ``n`` bot users added: scrapers viewing an item every 1–3 s for
    150–400 pages, cart-stuffers adding 40–80 items every 2–5 s, and slow crawlers viewing 300–600
    pages every 4–8 s over several sessions. Returns the copy and the bots' ids."""
    rng = np.random.default_rng(seed)
    items = db.items_table.column("item_id").to_pylist()
    lo, hi = db.time_range() or (0, DAY_MS)
    rows: list[dict[str, Any]] = []
    bots: set[str] = set()
    for b in range(n):
        user = f"synthetic-bot-{seed}-{b}"
        bots.add(user)
        kind = ("scraper", "cart", "crawler")[b % 3]
        count, step, etype, sessions = {
            "scraper": (rng.integers(150, 400), (1, 3), "view", 1),
            "cart": (rng.integers(40, 80), (2, 5), "cart", int(rng.integers(1, 3))),
            "crawler": (rng.integers(300, 600), (4, 8), "view", int(rng.integers(2, 5))),
        }[kind]
        ts = int(rng.integers(lo, hi))
        for k in range(int(count)):
            ts += int(rng.integers(step[0], step[1] + 1)) * 1000
            session = f"{user}-s{k * sessions // int(count)}"
            item = items[int(rng.integers(0, len(items)))]
            rows.append(_row(f"{user}-{k}", user, session, item, etype, ts, 1, 0.0))
    return db.with_events(_events(rows)), bots


def inject_fraud(db: AnalyticalStore, *, n: int = 30, seed: int = 0) -> tuple[AnalyticalStore, set[str]]:
    """A copy of ``db`` with ``n`` fraud bursts: a customer (half existing, taken over; half new)
    placing 4–8 orders 2–10 minutes apart, each worth about the 95th–99.5th percentile of order
    values. Returns the copy and the injected order ids."""
    rng = np.random.default_rng(seed)
    orders = frame(db.orders())
    values = orders["value"].to_numpy() if orders.height else np.array([100.0])
    users = orders["user_id"].unique().sort().to_list() or ["nobody"]
    prices = frame(db.items_table.select(["item_id", "price"])).filter(pl.col("price") > 0)
    if prices.is_empty():
        prices = pl.DataFrame({"item_id": db.items_table.column("item_id").to_pylist()[:50], "price": 10.0})
    lo, hi = db.time_range() or (0, DAY_MS)
    rows: list[dict[str, Any]] = []
    injected: set[str] = set()
    for b in range(n):
        user = users[int(rng.integers(0, len(users)))] if b % 2 == 0 else f"synthetic-fraud-{seed}-{b}"
        ts = int(rng.integers(lo, hi))
        for o in range(int(rng.integers(4, 9))):
            ts += int(rng.integers(2, 11)) * 60_000
            order = f"synthetic-order-{seed}-{b}-{o}"
            injected.add(order)
            target = float(np.quantile(values, rng.uniform(0.95, 0.995)))
            lines = int(rng.integers(3, 10))
            for line in range(lines):
                pick = prices.row(int(rng.integers(0, prices.height)), named=True)
                qty = max(1, round(target / lines / pick["price"]))
                rows.append(
                    _row(f"{order}-{line}", user, order, pick["item_id"], "purchase", ts, qty, pick["price"])
                )
    return db.with_events(_events(rows)), injected


def inject_spikes(
    db: AnalyticalStore, *, n: int = 30, top: int = 300, seed: int = 0
) -> tuple[AnalyticalStore, set[tuple[str, str]]]:
    """A copy of ``db`` where ``n`` random (item, day) pairs of the ``top`` items get a guest order
    of ten times the item's mean daily units (at least 50). Returns the copy and the pairs."""
    rng = np.random.default_rng(seed)
    keys = db.top_keys(level="item", n=top)
    demand = frame(db.demand_series(level="item", freq="day", keys=keys))
    lo, hi = db.time_range() or (0, DAY_MS)
    first_day = lo // DAY_MS + 35  # leave the detector a month of history
    days = hi // DAY_MS - first_day
    means = demand.group_by("key").agg(mean=pl.col("units").sum() / max(days + 35, 1))
    mean_of = dict(zip(means["key"].to_list(), means["mean"].to_list(), strict=True))
    rows: list[dict[str, Any]] = []
    pairs: set[tuple[str, str]] = set()
    while len(pairs) < n and keys and days > 0:
        key = keys[int(rng.integers(0, len(keys)))]
        day = int(first_day + rng.integers(0, days))
        label = str(np.datetime64(day, "D"))
        if (key, label) in pairs:
            continue
        pairs.add((key, label))
        qty = max(50, round(10 * mean_of.get(key, 5.0)))
        ts = day * DAY_MS + 12 * 3_600_000
        rows.append(
            _row(
                f"spike-{seed}-{len(pairs)}",
                None,
                f"spike-{seed}-{len(pairs)}",
                key,
                "purchase",
                ts,
                qty,
                1.0,
            )
        )
    return db.with_events(_events(rows)), pairs


def inject_ratings(
    db: AnalyticalStore, *, n: int = 20, seed: int = 0, window_hours: int = 24
) -> tuple[AnalyticalStore, set[tuple[str, int]]]:
    """A copy of ``db`` with organic ratings (existing users rating items, 3–5 stars, spread over
    the data's time range; some popular items get a dozen in a day) and ``n`` shilling bursts:
    15–30 fresh accounts giving one item 5 stars within two hours. Returns the copy and the
    bursts' (item, window) keys."""
    rng = np.random.default_rng(seed)
    items = db.items_table.column("item_id").to_pylist()
    users = db.users_table.column("user_id").to_pylist() or ["nobody"]
    lo, hi = db.time_range() or (0, DAY_MS)
    rows: list[dict[str, Any]] = []
    for k in range(20 * n):  # organic background
        ts = int(rng.integers(lo, hi))
        user = users[int(rng.integers(0, len(users)))]
        row = _row(
            f"rate-{seed}-{k}",
            user,
            f"rate-{seed}-{k}",
            items[int(rng.integers(0, len(items)))],
            "rate",
            ts,
            1,
            0.0,
        )
        rows.append({**row, "price": None, "value": float(rng.integers(3, 6))})
    for k in range(n // 2):  # a popular item rated a dozen times in a day by real customers: not shilling
        item, ts = items[int(rng.integers(0, len(items)))], int(rng.integers(lo, hi))
        for j in range(12):
            user = users[int(rng.integers(0, len(users)))]
            row = _row(
                f"pop-{seed}-{k}-{j}", user, f"pop-{seed}-{k}-{j}", item, "rate", ts + j * 600_000, 1, 0.0
            )
            rows.append({**row, "price": None, "value": float(rng.integers(3, 6))})
    bursts: set[tuple[str, int]] = set()
    for b in range(n):
        item = items[int(rng.integers(0, len(items)))]
        start = int(rng.integers(lo, hi))
        start -= start % (window_hours * 3_600_000)  # inside one window, so the key is unambiguous
        start += int(rng.integers(0, (window_hours - 2) * 3_600_000))
        bursts.add((item, start // (window_hours * 3_600_000)))
        for j in range(int(rng.integers(15, 31))):
            user = f"shill-{seed}-{b}-{j}"
            ts = start + int(rng.integers(0, 7_200_000))
            row = _row(f"shill-{seed}-{b}-{j}", user, user, item, "rate", ts, 1, 0.0)
            rows.append({**row, "price": None, "value": 5.0})
    return db.with_events(_events(rows)), bursts


def _score(name: str, flagged: set[Any], injected: set[Any]) -> dict[str, Any]:
    tp = len(flagged & injected)
    return {
        "detector": name,
        "injected": len(injected),
        "flagged": len(flagged),
        "true_positives": tp,
        "precision": tp / len(flagged) if flagged else None,
        "recall": tp / len(injected) if injected else None,
    }


def evaluate_detectors(db: AnalyticalStore, *, n: int = 30, seed: int = 0) -> pl.DataFrame:
    """Inject ``n`` bots, ``n`` fraud bursts and ``n`` demand spikes into copies of ``db`` and
    score each detector. Precision counts every flag on the real data as a false positive: the
    real data has no labels, so this is a lower bound."""
    rows = []
    with_bots, bots = inject_bots(db, n=n, seed=seed)
    flagged = bot_users(with_bots).filter("flagged")["user_id"].to_list()
    rows.append(_score("bot users", set(flagged), bots))
    with_fraud, orders = inject_fraud(db, n=n, seed=seed)
    flagged = fraud_orders(with_fraud).filter("flagged")["order_id"].to_list()
    rows.append(_score("fraud bursts (orders)", set(flagged), orders))
    with_spikes, pairs = inject_spikes(db, n=n, seed=seed)
    spikes = demand_spikes(with_spikes).filter("flagged")
    flagged_pairs = set(
        zip(spikes["key"].to_list(), [str(d) for d in spikes["period"].to_list()], strict=True)
    )
    rows.append(_score("demand spikes (item-days)", flagged_pairs, pairs))
    with_ratings, bursts = inject_ratings(db, n=n, seed=seed)
    found = rating_bursts(with_ratings).filter("flagged")
    rows.append(_score("rating bursts (item-days)", set(found.select("key", "window").iter_rows()), bursts))
    return pl.DataFrame(rows)
