"""The quality gate: each rule, on records shaped like the real datasets."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from shelfwise.core.clock import datetime_to_ms
from shelfwise.data import quality as q
from shelfwise.data.privacy import Pseudonymizer
from shelfwise.data.readers.base import Draft, Problem, TimeSpec
from shelfwise.data.schemas import Event, EventType

NOW = datetime_to_ms(__import__("datetime").datetime(2024, 1, 1))
PSEUDO = Pseudonymizer(b"k" * 32)


def gate(**kw: Any) -> q.EventGate:
    config = q.GateConfig(
        source="test",
        time=TimeSpec("iso", "Europe/London"),
        currency="GBP",
        shop_start=date(2005, 1, 1),
        now_ms=NOW,
        **kw,
    )
    return q.EventGate(config, PSEUDO)


def draft(**fields: Any) -> Draft:
    base = {
        "user_id": "17850",
        "session_id": "536365",
        "item_id": "85123A",
        "type": "purchase",
        "ts": "2010-12-01 08:26:00",
        "quantity": "6",
        "price": "2.55",
        "context": {"country": "United Kingdom"},
    }
    base.update(fields)
    return Draft(7, "raw", base)


def test_a_good_record_becomes_a_private_event() -> None:
    event = gate().check(draft())
    assert isinstance(event, Event)
    assert event.type is EventType.PURCHASE and event.quantity == 6 and event.price == 2.55
    assert event.currency == "GBP"
    assert event.user_id == PSEUDO("17850") and event.user_id != "17850"
    # London is on GMT in December: 08:26 local is 08:26 UTC
    assert event.ts == datetime_to_ms(__import__("datetime").datetime(2010, 12, 1, 8, 26))


@pytest.mark.parametrize(
    ("fields", "field", "reason"),
    [
        ({"type": "teleport"}, "type", q.UNKNOWN_EVENT_TYPE),
        ({"type": ""}, "type", q.MISSING_FIELD),
        ({"ts": "yesterday"}, "ts", q.BAD_TIMESTAMP),
        ({"ts": "2031-01-01 00:00:00"}, "ts", q.FUTURE_TIMESTAMP),
        ({"ts": "1999-01-01 00:00:00"}, "ts", q.BEFORE_SHOP_START),
        ({"price": "-1.5"}, "price", q.NEGATIVE_PRICE),
        ({"price": "0"}, "price", q.ZERO_PRICE),
        ({"price": "NaN"}, "price", q.NOT_FINITE),
        ({"price": "inf"}, "price", q.NOT_FINITE),
        ({"price": "two pounds"}, "price", q.BAD_TYPE),
        ({"quantity": "-3"}, "quantity", q.NEGATIVE_QUANTITY),
        ({"quantity": "0"}, "quantity", q.ZERO_QUANTITY),
        ({"quantity": "1.5"}, "quantity", q.BAD_TYPE),
        ({"quantity": "1e12"}, "quantity", q.OUT_OF_RANGE),
        ({"item_id": ""}, "item_id", q.MISSING_FIELD),
        ({"item_id": "x" * 300}, "item_id", q.FIELD_TOO_LARGE),
        ({"currency": "doubloons"}, "currency", q.UNKNOWN_CURRENCY),
        ({"context": {"note": "y" * 30_000}}, "context.note", q.FIELD_TOO_LARGE),
        ({"context": "[1, 2]"}, "context", q.BAD_TYPE),
    ],
)
def test_each_rule_names_field_and_reason(fields: dict[str, Any], field: str, reason: str) -> None:
    result = gate().check(draft(**fields))
    assert isinstance(result, q.Rejection)
    assert (result.field, result.reason, result.line_no) == (field, reason, 7)


def test_rejected_records_are_kept_without_raw_user_id_or_contact_details() -> None:
    result = gate().check(draft(price="-1", context={"note": "call me on +44 20 7946 0958"}))
    assert isinstance(result, q.Rejection)
    assert "17850" not in result.raw and PSEUDO("17850") in result.raw
    assert "7946" not in result.raw


def test_reader_problems_pass_through_with_contact_details_scrubbed() -> None:
    result = gate().check(Problem(3, "a,b,jane@example.com", None, "malformed_record", "2 fields"))
    assert isinstance(result, q.Rejection)
    assert result.reason == "malformed_record" and "jane@example.com" not in result.raw


def test_guests_search_and_aliases() -> None:
    g = gate()
    guest = g.check(draft(user_id=""))
    assert isinstance(guest, Event) and guest.user_id is None and g.stats.guests == 1
    search = g.check(draft(type="search", item_id="", price="", quantity="", context={"query": "red mug"}))
    assert isinstance(search, Event) and search.item_id is None and search.context["query"] == "red mug"
    assert g.check(draft(type="pv")).type is EventType.VIEW  # type: ignore[union-attr]
    assert g.check(draft(type="orders")).type is EventType.PURCHASE  # type: ignore[union-attr]


def test_event_ids_are_idempotency_keys() -> None:
    a, b = gate().check(draft()), gate().check(draft())
    c = gate().check(draft(quantity="7"))
    assert isinstance(a, Event) and isinstance(b, Event) and isinstance(c, Event)
    assert a.event_id == b.event_id != c.event_id
    given = gate().check(draft(event_id="order-17-line-2"))
    assert isinstance(given, Event) and given.event_id == "order-17-line-2"


def test_unix_time_formats() -> None:
    config = q.GateConfig(source="t", time=TimeSpec("s"), now_ms=NOW)
    event = q.EventGate(config, PSEUDO).check(draft(ts="1511544070"))
    assert isinstance(event, Event) and event.ts == 1511544070000
    config = q.GateConfig(source="t", time=TimeSpec("ms"), now_ms=NOW)
    event = q.EventGate(config, PSEUDO).check(draft(ts="1659304800025"))
    assert isinstance(event, Event) and event.ts == 1659304800025


def test_catalogue_can_be_enforced() -> None:
    config = q.GateConfig(source="t", now_ms=NOW)
    strict = q.EventGate(config, PSEUDO, known_items={"85123A"}.__contains__)
    assert isinstance(strict.check(draft()), Event)
    unknown = strict.check(draft(item_id="99999"))
    assert isinstance(unknown, q.Rejection) and unknown.reason == q.UNKNOWN_ITEM


def test_items_are_normalised() -> None:
    g = q.ItemGate(q.GateConfig(source="t", currency="INR", now_ms=NOW), PSEUDO)
    item = g.check(
        Draft(
            1,
            "",
            {
                "item_id": " SRTEH2FF9KEDEFGF ",
                "title": "Alisha  Solid Shorts ",
                "category": "['clothing', 'women''s clothing']",
                "price": "379",
                "available": "out of stock",
                "description": "mail me: a@b.com",
            },
        )
    )
    assert isinstance(item, q.Item)
    assert item.item_id == "SRTEH2FF9KEDEFGF" and item.title == "Alisha Solid Shorts"
    assert item.currency == "INR" and item.available is False and item.description == "mail me: [email]"
    bad = g.check(Draft(2, "", {"item_id": "x", "price": "-5"}))
    assert isinstance(bad, q.Rejection) and bad.reason == q.NEGATIVE_PRICE


def test_user_pace_flags_crawlers_not_big_checkouts() -> None:
    activity = q.UserActivity(actions_per_minute=30)
    for _ in range(600):  # one wholesale checkout: 600 lines at one instant
        activity.observe("buyer", 1_000_000)
    for second in range(60):  # a page a second for a minute
        activity.observe("crawler", 2_000_000 + second * 1000)
    for second in range(0, 60, 5):
        activity.observe("person", 3_000_000 + second * 1000)
    flagged = activity.flagged()
    assert set(flagged) == {"crawler"} and "60 actions" in flagged["crawler"]
    assert activity.users["buyer"].n == 600


def test_derived_ids_sort_by_time() -> None:
    early = gate().check(draft(ts="2010-12-01 08:26:00"))
    late = gate().check(draft(ts="2010-12-01 08:27:00"))
    assert isinstance(early, Event) and isinstance(late, Event)
    assert early.event_id < late.event_id and len(early.event_id) == 32


def test_made_up_times_say_nothing_of_pace() -> None:
    activity = q.UserActivity(actions_per_minute=30)
    for position in range(200):  # a long review sequence, one synthetic second apart
        activity.observe("reviewer", 1_388_534_400_000 + position * 1000, paced=False)
    assert activity.flagged() == {} and activity.users["reviewer"].n == 200


def test_pace_window_slides_past_a_minute() -> None:
    """A crawler at one page every 2 s for 5 minutes has 30 distinct seconds in any minute, never
    more: the window drops what is 60 s old (at the limit of 30 it is not flagged; at 29 it is)."""
    for limit, flagged in ((30, False), (29, True)):
        activity = q.UserActivity(actions_per_minute=limit)
        for second in range(0, 300, 2):
            activity.observe("crawler", 5_000_000 + second * 1000)
        assert activity.users["crawler"].peak == 30
        assert ("crawler" in activity.flagged()) is flagged


def test_pace_costs_little_memory_per_shopper() -> None:
    """Ingest keeps one pace per shopper for the whole file: 500,000 shoppers must not cost
    hundreds of MB (an empty deque per shopper did: ~760 bytes each)."""
    import tracemalloc

    ids = [f"shopper-{i:07d}" for i in range(20_000)]
    activity = q.UserActivity(actions_per_minute=30)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i, user in enumerate(ids):
        activity.observe(user, 1_700_000_000_000 + i * 10)
    per_user = (tracemalloc.get_traced_memory()[0] - before) / len(ids)
    tracemalloc.stop()
    assert per_user < 400, f"{per_user:.0f} bytes per shopper"


def test_timestamp_cache_stays_bounded() -> None:
    """Millisecond stamps hardly repeat: the parsed-stamp cache is emptied when full, not kept
    growing (nor frozen), and every stamp is still parsed right."""
    g = gate()
    first = g.timestamp("2011-01-01T00:00:00.000Z")
    largest = 0
    for i in range(1, q._TS_CACHE_SIZE + 500):
        h, m, sec, ms = i // 3_600_000, i // 60_000 % 60, i // 1000 % 60, i % 1000
        assert g.timestamp(f"2011-01-01T{h:02d}:{m:02d}:{sec:02d}.{ms:03d}Z") == first + i
        largest = max(largest, len(g._ts_cache))
    assert largest == q._TS_CACHE_SIZE and len(g._ts_cache) < 1000


def test_observe_many_is_observe_one_by_one() -> None:
    """``observe_many`` counts a run of equal (user, time, paced) events at once: the same state as
    ``observe`` on each event, out-of-order times, guests and made-up times included."""
    import random

    rng = random.Random(7)
    events = []
    for _ in range(3_000):
        user = rng.choice(["a", "b", "c", None])
        ts = 1_000_000 + rng.choice([0, 0, 1, 2, 5, 61, 120]) * 1000 * rng.randint(0, 3)
        for _ in range(rng.choice([1, 1, 2, 7])):  # invoice lines: the same event repeated
            events.append((user, ts, rng.random() > 0.1))
    one = q.UserActivity(actions_per_minute=3)
    for user, ts, paced in events:
        if user is not None:
            one.observe(user, ts, paced=paced)
    many = q.UserActivity(actions_per_minute=3)
    for start in range(0, len(events), 1_000):  # in batches, as ingest hands them over
        part = events[start : start + 1_000]
        many.observe_many([e[0] for e in part], [e[1] for e in part], [e[2] for e in part])
    assert many.users == one.users and many.flagged() == one.flagged()


def test_pace_window_in_bits_counts_as_the_list_of_seconds_did() -> None:
    """The pace window is a bit mask now: on random streams (bursts, gaps of about a minute, repeats
    and events out of order) each user's peak equals the one a list of distinct seconds gives."""
    import bisect
    import random

    def reference(times: list[int]) -> int:
        window: list[int] = []
        peak = 0
        for ts in times:
            second = ts // 1000
            if window and second <= window[-1]:
                continue
            window.append(second)
            if second - window[0] >= 60:
                del window[: bisect.bisect_right(window, second - 60)]
            peak = max(peak, len(window))
        return peak

    rng = random.Random(19)
    for trial in range(300):
        t, times = 1_700_000_000_000, []
        for _ in range(rng.randrange(1, 120)):
            t += rng.choice([0, 1, 999, 1000, 1500, 30_000, 59_000, 60_000, 61_000, 200_000, -5_000])
            times.append(t)
        activity = q.UserActivity(actions_per_minute=20)
        for ts in times:
            activity.observe("u", ts)
        assert activity.users["u"].peak == reference(times), (trial, times)


def test_pace_state_stays_bounded_on_a_long_generated_stream() -> None:
    """Issue 19: ingest follows the pace of at most ``capacity`` shoppers, however long the stream
    (a generated shop of 300,000 events and 60,000 shoppers, fed 5,000 events at a time as ingest
    does), and flags the same shoppers as following every one: two crawlers hidden in the stream,
    one of them let go between its two bursts, are flagged with the same peak."""
    from shelfwise.data.synthetic import ShopConfig, generate_events

    capacity, step = 2_000, 5_000
    bounded = q.UserActivity(actions_per_minute=30, capacity=capacity)
    every = q.UserActivity(actions_per_minute=30)
    held, seen, n = [], [], 0
    bursts = {5: ("crawler-1", 40), 20: ("crawler-2", 35), 50: ("crawler-1", 45)}
    for cols in generate_events(ShopConfig(events=300_000, items=2_000, users=60_000, seed=3)):
        for lo in range(0, len(cols["ts"]), step):
            users = [f"s{u}" for u in cols["user"][lo : lo + step].tolist()]
            ts = cols["ts"][lo : lo + step].tolist()
            if n in bursts:  # a page a second, in the middle of the batch
                bot, pages = bursts[n]
                at = len(ts) // 2
                users[at:at] = [bot] * pages
                ts[at:at] = [ts[at] + k * 1000 for k in range(pages)]
            for part in (bounded, every):
                part.observe_many(users, ts, [True] * len(users))
            seen += bounded.take_retired()
            held.append(bounded.held())
            n += 1
    assert n > 50 and max(held) <= capacity
    assert len(every.users) > 10 * capacity  # unbounded, it holds every shopper seen (21,045)
    assert bounded.evicted > 10 * capacity and "crawler-1" in seen  # let go between its bursts
    assert set(seen) | set(bounded.users) == set(every.users)  # none is lost to the store's refresh
    flagged = every.flagged()
    assert set(flagged) == {"crawler-1", "crawler-2"} and bounded.flagged() == flagged
    assert "45 actions" in flagged["crawler-1"]


def test_pace_capacity_lets_go_the_least_recently_seen() -> None:
    """A shopper seen again stays followed; one not seen while ``capacity / 2`` others came is let
    go, queued once for the caller, and starts afresh when back."""
    activity = q.UserActivity(actions_per_minute=30, capacity=4)
    activity.observe("a", 1_000)
    activity.observe("b", 2_000)  # the recent half is full: a, b become the older half
    activity.observe("a", 3_000)  # a is seen again: back in the recent half
    activity.observe("c", 4_000)  # full again: b is let go; a, c are the older half
    assert activity.take_retired() == ["b"] and activity.take_retired() == []
    assert set(activity.users) == {"a", "c"} and activity.users["a"].n == 2
    activity.observe("b", 5_000)
    assert activity.users["b"].n == 1 and activity.evicted == 1 and activity.held() == 3
