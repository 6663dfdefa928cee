"""Impressions, attribution, online metrics and erasure of served answers, on SQLite and PostgreSQL."""

from __future__ import annotations

import numpy as np
import pytest

from shelfwise.core.ids import answer_id
from shelfwise.data.schemas import Event, EventType
from shelfwise.evaluation.attribution import AttributionConfig, attribute_events
from shelfwise.evaluation.online_metrics import OnlineMetricsCollector, metric_samples, online_metrics
from shelfwise.store import Store
from shelfwise.store.erasure import erase_user, user_footprint, user_rows
from shelfwise.store.impressions import (
    Impression,
    attribution_counts,
    expire_impressions,
    get_impressions,
    log_impressions,
)

T0 = 1_700_000_000_000
HOUR = 3_600_000
ITEMS = ["85123A", "71053", "84406B", "84029G", "84029E"]  # real Online Retail stock codes


def imp(
    user: str | None, *, ts: int = T0, session: str | None = "s-1", arm: str | None = None, **kw: object
) -> Impression:
    return Impression(
        answer_id=answer_id(ts),
        kind="rec",
        placement="home",
        items=ITEMS,
        ts=ts,
        user_id=user,
        session_id=session,
        version="v1",
        experiment="exp" if arm else None,
        arm=arm,
        **kw,  # type: ignore[arg-type]
    )


def ev(
    n: int, user: str | None, kind: EventType, item: str, *, ts: int, session: str = "s-1", **ctx: object
) -> Event:
    price = 2.5 if kind is EventType.PURCHASE else None
    return Event(
        event_id=f"e{n}",
        type=kind,
        ts=ts,
        user_id=user,
        session_id=session,
        item_id=item,
        price=price,
        quantity=2 if price else 1,
        context=dict(ctx),
    )


def test_answer_ids_are_compact_unique_and_time_ordered() -> None:
    ids = {answer_id() for _ in range(20_000)}
    assert len(ids) == 20_000 and all(len(i) == 22 for i in ids)
    assert answer_id(T0) < answer_id(T0 + 1) < answer_id(T0 + 10_000)


def test_events_citing_answers_are_attributed_or_counted_as_refused(store: Store) -> None:
    mine, theirs, guest = imp("u-alice"), imp("u-bob"), imp(None, session="guest-9")
    assert log_impressions(store, [mine, theirs, guest]) == 3
    assert log_impressions(store, [mine]) == 0  # idempotent
    events = [
        ev(1, "u-alice", EventType.CLICK, ITEMS[1], ts=T0 + 1000, rec_id=mine.answer_id, position=2),
        # carried over: the uncited cart and purchase of the clicked item
        ev(2, "u-alice", EventType.CART, ITEMS[1], ts=T0 + 2000),
        ev(3, "u-alice", EventType.PURCHASE, ITEMS[1], ts=T0 + 3000, session="s-2"),
        # alice replays bob's answer id: stored, credited to nothing, counted
        ev(4, "u-alice", EventType.CLICK, ITEMS[0], ts=T0 + 4000, rec_id=theirs.answer_id, position=1),
        ev(5, "u-alice", EventType.CLICK, ITEMS[0], ts=T0 + 5000, rec_id="never-served", position=1),
        ev(6, "u-alice", EventType.CLICK, ITEMS[0], ts=T0 + 30 * HOUR, rec_id=mine.answer_id, position=1),
        ev(7, "u-alice", EventType.CLICK, ITEMS[0], ts=T0 + 6000, rec_id=mine.answer_id, position=4),
        ev(8, "u-alice", EventType.CLICK, ITEMS[0], ts=T0 + 7000, rec_id=mine.answer_id, position="x"),
        ev(9, None, EventType.CLICK, ITEMS[2], ts=T0 + 8000, session="guest-9", rec_id=guest.answer_id),
        ev(10, None, EventType.CLICK, ITEMS[2], ts=T0 + 9000, session="other", rec_id=guest.answer_id),
        ev(11, "u-alice", EventType.CLICK, ITEMS[1], ts=T0 + 9500, search_id=mine.answer_id, position=2),
    ]
    assert store.append_events(events) == len(events)
    report = attribute_events(store, events, config=AttributionConfig(window_hours=24))
    assert report.counts == {"attributed": 4, "foreign": 2, "unknown": 2, "late": 1, "bad_position": 2}
    assert attribution_counts(store) == dict(report.counts)
    assert store.counts()["events"] == len(events)  # every event is kept, attributed or not
    # replaying the batch changes nothing
    attribute_events(store, events)
    assert attribution_counts(store) == dict(report.counts)
    (row,) = online_metrics(store, placement="home", by=("placement", "version"))
    assert row["totals"]["impressions"] == 3
    assert row["totals"]["clicks"] == 2 and row["totals"]["carts"] == 1 and row["totals"]["purchases"] == 1
    assert row["totals"]["revenue"] == pytest.approx(5.0)
    assert row["metrics"]["ctr"]["value"] == pytest.approx(2 / 3)
    assert row["metrics"]["conversion"]["value"] == pytest.approx(1 / 3)


def test_online_metrics_have_delta_method_intervals_and_prometheus_samples(store: Store) -> None:
    rows, events = [], []
    n = 0
    rng = np.random.default_rng(0)
    for u in range(60):
        for arm in ("control", "treatment"):
            user = f"u-{arm}-{u}"
            for visit in range(3):
                i = imp(user, ts=T0 + u * 10_000 + visit, session=f"{user}-{visit}", arm=arm)
                rows.append(i)
                if rng.random() < (0.2 if arm == "control" else 0.6):
                    n += 1
                    events.append(
                        ev(
                            n,
                            user,
                            EventType.CLICK,
                            ITEMS[0],
                            ts=i.ts + 500,
                            session=f"{user}-{visit}",
                            rec_id=i.answer_id,
                            position=1,
                        )
                    )
    log_impressions(store, rows)
    store.append_events(events)
    attribute_events(store, events)
    got = {r["arm"]: r for r in online_metrics(store, experiment="exp", by=("arm",))}
    for arm, r in got.items():
        ctr = r["metrics"]["ctr"]
        assert ctr["value"] == pytest.approx(r["totals"]["clicks"] / r["totals"]["impressions"])
        assert ctr["low"] < ctr["value"] < ctr["high"] and r["units"] == 60, arm
    assert got["treatment"]["metrics"]["ctr"]["value"] > got["control"]["metrics"]["ctr"]["value"]
    samples = metric_samples(got.values())
    names = {name for name, _, _ in samples}
    assert {"shelfwise_online_ctr", "shelfwise_online_impressions", "shelfwise_online_conversion"} <= names
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    registry.register(OnlineMetricsCollector(lambda: online_metrics(store, by=("placement", "arm"))))
    text = generate_latest(registry).decode()
    assert 'shelfwise_online_ctr{arm="treatment",bound="value",placement="home"}' in text


def test_erasure_removes_served_answers_and_attributions(store: Store) -> None:
    alice, bob = imp("u-alice"), imp("u-bob", session="s-b")
    log_impressions(store, [alice, bob])
    events = [
        ev(1, "u-alice", EventType.CLICK, ITEMS[0], ts=T0 + 1, rec_id=alice.answer_id, position=1),
        ev(2, "u-bob", EventType.CLICK, ITEMS[0], ts=T0 + 1, session="s-b", rec_id=bob.answer_id, position=1),
    ]
    store.append_events(events)
    attribute_events(store, events)
    before_bob = user_footprint(store, "u-bob")
    assert user_footprint(store, "u-alice")["impressions"] == 1
    assert len(user_rows(store, "u-alice")["attributions"]) == 1
    removed = erase_user(store, "u-alice")
    assert removed["impressions"] == 1 and removed["attributions"] == 1
    assert all(v == 0 for v in user_footprint(store, "u-alice").values())
    assert user_footprint(store, "u-bob") == before_bob
    # a late write for an erased shopper is refused
    assert log_impressions(store, [imp("u-alice")]) == 0
    assert get_impressions(store, [alice.answer_id]) == {}


def test_the_impression_log_is_bounded_by_age_and_count(store: Store) -> None:
    rows = [imp(f"u{i}", ts=T0 + i * HOUR) for i in range(10)]
    log_impressions(store, rows)
    now = T0 + 10 * HOUR
    assert expire_impressions(store, older_than_days=6 / 24, now=now) == {"by_age": 4, "by_count": 0}
    assert expire_impressions(store, max_rows=3, now=now) == {"by_age": 0, "by_count": 3}
    left = get_impressions(store, [r.answer_id for r in rows])
    assert sorted(left) == sorted(r.answer_id for r in rows[-3:])
