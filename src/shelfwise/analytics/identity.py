"""Cross-device identity stitching: one pseudonymous shopper across sessions and devices.

A session belongs to the user who logged in during it (a ``login`` event carries the user id),
else to the user its events name. A session with neither — a guest browsing on a phone — belongs
to the user who logged in on the same device (``device_id`` in the event's context) most often. Only
pseudonyms are linked: no raw identifier is read or produced.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from shelfwise.analytics.frames import frame
from shelfwise.store.analytical import EVENT_SCHEMA, AnalyticalStore


def stitch_identities(db: AnalyticalStore) -> pl.DataFrame:
    """One row per session: ``device``, the ``user_id`` its events carry (may be null), the
    ``resolved_user`` and ``via`` (login, events, device or null when nothing links it)."""
    events = frame(db.session_events())
    if events.is_empty():
        return pl.DataFrame(
            schema={
                "session_id": pl.String,
                "device": pl.String,
                "user_id": pl.String,
                "resolved_user": pl.String,
                "via": pl.String,
            }
        )
    sessions = events.group_by("session_id").agg(
        device=pl.col("device").drop_nulls().first(),
        user_id=pl.col("user_id").drop_nulls().first(),
        login_user=pl.col("user_id").filter(pl.col("type") == "login").drop_nulls().last(),
        first_ts=pl.col("ts").min(),
    )
    direct = sessions.with_columns(
        resolved_user=pl.coalesce("login_user", "user_id"),
        via=pl.when(pl.col("login_user").is_not_null())
        .then(pl.lit("login"))
        .when(pl.col("user_id").is_not_null())
        .then(pl.lit("events")),
    )
    device_owner = (
        direct.filter(pl.col("login_user").is_not_null() & pl.col("device").is_not_null())
        .group_by("device", "login_user")
        .agg(n=pl.len())
        .sort("n", "login_user", descending=[True, False])
        .group_by("device")
        .agg(device_user=pl.col("login_user").first())
    )
    return (
        direct.join(device_owner, on="device", how="left")
        .with_columns(
            via=pl.when(pl.col("resolved_user").is_null() & pl.col("device_user").is_not_null())
            .then(pl.lit("device"))
            .otherwise(pl.col("via")),
            resolved_user=pl.coalesce("resolved_user", "device_user"),
        )
        .select("session_id", "device", "user_id", "resolved_user", "via", "first_ts")
        .sort("first_ts")
    )


def identity_summary(stitched: pl.DataFrame) -> pl.DataFrame:
    """Per resolved user: sessions, devices, and sessions recovered by login or device."""
    return (
        stitched.filter(pl.col("resolved_user").is_not_null())
        .group_by("resolved_user")
        .agg(
            sessions=pl.len(),
            devices=pl.col("device").drop_nulls().n_unique(),
            via_login=(pl.col("via") == "login").sum(),
            via_device=(pl.col("via") == "device").sum(),
        )
        .sort("sessions", descending=True)
    )


def inject_logins(
    db: AnalyticalStore, *, n: int = 50, seed: int = 0
) -> tuple[AnalyticalStore, dict[str, str]]:
    """A copy of ``db`` with ``n`` synthetic shoppers on two devices each: on the phone a guest
    session that ends in a login, on the laptop a session with a login, then a later guest session
    on the phone with no login. Returns the copy and the true owner of every synthetic session."""
    rng = np.random.default_rng(seed)
    items = db.items_table.column("item_id").to_pylist()
    lo, hi = db.time_range() or (0, 86_400_000)
    rows: list[dict[str, Any]] = []
    truth: dict[str, str] = {}

    def add(i: str, user: str | None, session: str, kind: str, ts: int, device: str) -> None:
        rows.append(
            {
                "event_id": f"stitch-{i}",
                "user_id": user,
                "session_id": session,
                "item_id": None if kind == "login" else items[int(rng.integers(0, len(items)))],
                "type": kind,
                "ts": ts,
                "quantity": 1,
                "price": None,
                "value": None,
                "device": device,
            }
        )

    for u in range(n):
        user = f"stitch-user-{seed}-{u}"
        phone, laptop = f"phone-{seed}-{u}", f"laptop-{seed}-{u}"
        ts = int(rng.integers(lo, hi))
        plan = [
            (f"{user}-a", phone, [("view", None), ("view", None), ("login", user), ("cart", None)]),
            (f"{user}-b", laptop, [("login", user), ("view", user), ("purchase", user)]),
            (f"{user}-c", phone, [("view", None), ("view", None)]),
        ]
        for session, device, steps in plan:
            truth[session] = user
            for k, (kind, who) in enumerate(steps):
                ts += int(rng.integers(5, 120)) * 1000
                add(f"{session}-{k}", who, session, kind, ts, device)
            ts += int(rng.integers(1, 48)) * 3_600_000
    table = pa.table({c: [r.get(c) for r in rows] for c in EVENT_SCHEMA.names}, schema=EVENT_SCHEMA)
    return db.with_events(table), truth


def evaluate_stitching(db: AnalyticalStore, *, n: int = 50, seed: int = 0) -> dict[str, Any]:
    """Share of synthetic sessions (two-thirds start as guests) stitched to their true owner."""
    injected, truth = inject_logins(db, n=n, seed=seed)
    stitched = stitch_identities(injected).filter(pl.col("session_id").is_in(list(truth)))
    got = dict(zip(stitched["session_id"].to_list(), stitched["resolved_user"].to_list(), strict=True))
    correct = sum(1 for s, u in truth.items() if got.get(s) == u)
    wrong = sum(1 for s, u in truth.items() if got.get(s) not in (None, u))
    return {"sessions": len(truth), "correct": correct, "wrong": wrong, "accuracy": correct / len(truth)}


def identity_links(db: AnalyticalStore) -> pl.DataFrame:
    """What stitching decides, as links for the store's identity map (``kind``, ``alias_id``,
    ``user_id``, ``via``): a session with guest events (no user id) that resolves to a shopper —
    by its login, or by the device's usual login — is that shopper's (``kind="session"``); a user
    id seen in a session where another shopper logged in (a device-scoped id that signed in) is an
    alias of that shopper (``kind="user"``)."""
    stitched = stitch_identities(db)
    empty = pl.DataFrame(
        schema={"kind": pl.String, "alias_id": pl.String, "user_id": pl.String, "via": pl.String}
    )
    if stitched.is_empty():
        return empty
    events = frame(db.session_events())
    guests = events.filter(pl.col("user_id").is_null()).select("session_id").unique()
    sessions = (
        stitched.join(guests, on="session_id", how="semi")
        .filter(pl.col("resolved_user").is_not_null())
        .select(
            kind=pl.lit("session"),
            alias_id=pl.col("session_id"),
            user_id=pl.col("resolved_user"),
            via=pl.col("via"),
        )
    )
    logins = events.filter(pl.col("type") == "login", pl.col("user_id").is_not_null()).select(
        "session_id", login_user=pl.col("user_id")
    )
    others = (
        events.filter(pl.col("user_id").is_not_null(), pl.col("type") != "login")
        .select("session_id", "user_id")
        .unique()
        .join(logins.unique(), on="session_id")
        .filter(pl.col("user_id") != pl.col("login_user"))
        .group_by("user_id")
        .agg(target=pl.col("login_user").mode().sort().first())
        .select(
            kind=pl.lit("user"), alias_id=pl.col("user_id"), user_id=pl.col("target"), via=pl.lit("login")
        )
    )
    return pl.concat([sessions, others]).unique(["kind", "alias_id"], keep="first").sort("kind", "alias_id")
