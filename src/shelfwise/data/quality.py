"""Quality control at ingest: every record is parsed, range-checked, normalised and made private,
or quarantined with the field and the reason. A bad record never takes a good neighbour with it.

``EventGate.check(draft)`` returns an ``Event`` or a ``Rejection``; ``ItemGate`` does the same for
catalogue records. ``UserActivity`` follows each user's pace to flag likely bots.
"""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from shelfwise.core.ids import time_ordered_id
from shelfwise.data.normalize import category_path, clean_id, clean_text, currency_code
from shelfwise.data.privacy import Pseudonymizer, scrub_pii
from shelfwise.data.readers.base import Draft, Problem, TimeSpec
from shelfwise.data.rules import Violation, clean_nested, require
from shelfwise.data.schemas import (
    ID_MAX,
    ITEM_EVENT_TYPES,
    MONEY_EVENT_TYPES,
    Event,
    EventType,
    Item,
    parse_event_type,
)

# Reasons, once. The quality report groups by these.
MISSING_FIELD = "missing_field"
BAD_TYPE = "bad_type"
NOT_FINITE = "not_finite"
OUT_OF_RANGE = "out_of_range"
NEGATIVE_PRICE = "negative_price"
ZERO_PRICE = "zero_price"
NEGATIVE_QUANTITY = "negative_quantity"
ZERO_QUANTITY = "zero_quantity"
BAD_TIMESTAMP = "bad_timestamp"
FUTURE_TIMESTAMP = "future_timestamp"
BEFORE_SHOP_START = "before_shop_start"
UNKNOWN_EVENT_TYPE = "unknown_event_type"
UNKNOWN_ITEM = "unknown_item"
UNKNOWN_CURRENCY = "unknown_currency"
FIELD_TOO_LARGE = "field_too_large"

MAX_QUANTITY = 1_000_000
MAX_PRICE = 1e9
_TRUE = frozenset({"1", "true", "t", "yes", "y", "in stock", "available", "instock"})
_FALSE = frozenset({"0", "false", "f", "no", "n", "out of stock", "unavailable", "outofstock", "sold out"})


class Rejection(NamedTuple):
    line_no: int
    raw: str
    field: str | None
    reason: str
    detail: str
    user_id: str | None = None  # the pseudonym the record names, when it could be read (erasure needs it)

    @classmethod
    def of(cls, problem: Problem) -> Rejection:
        """A reader's problem: the line could not be parsed; kept as text, contact details scrubbed."""
        return cls(problem.line_no, scrub_pii(problem.raw)[0], problem.field, problem.reason, problem.detail)


# Raised inside a check to reject the record; caught once per record. The reusable rules
# (``shelfwise.data.rules``) raise the same exception.
_Bad = Violation


@dataclass
class GateConfig:
    source: str
    time: TimeSpec = field(default_factory=TimeSpec)
    currency: str | None = None
    shop_start: date = date(1995, 1, 1)
    now_ms: int = 0
    future_tolerance_ms: int = 300_000
    max_text: int = 20_000
    unknown_items: str = "create"  # or "quarantine"
    required: tuple[str, ...] = ()  # fields the format always fills: blank is ``missing_field``


@dataclass
class GateStats:
    """What the gate saw beyond accept/reject: conversions, PII scrubbed, guests."""

    notes: Counter[str] = field(default_factory=Counter)
    pii_scrubbed: int = 0
    guests: int = 0


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool):
        raise _Bad(name, BAD_TYPE, f"{value!r} is not a number")
    if isinstance(value, int | float):
        number = float(value)
    else:
        text = str(value).strip().replace(",", "") if value is not None else ""
        if not text:
            raise _Bad(name, MISSING_FIELD, "empty")
        try:
            number = float(text)
        except ValueError:
            raise _Bad(name, BAD_TYPE, f"{text[:40]!r} is not a number") from None
    if not math.isfinite(number):
        raise _Bad(name, NOT_FINITE, f"{value!r}")
    return number


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


_MEMO_KEY = 64  # longer strings are rarely repeated; don't keep them
_MEMO_SIZE = 200_000
_TS_CACHE_SIZE = 100_000  # parsed time stamps kept (a shop's file repeats them: invoice lines)


def _remember(memo: dict[str, Any], key: str, value: Any) -> None:
    if len(key) <= _MEMO_KEY:
        if len(memo) >= _MEMO_SIZE:
            memo.clear()
        memo[key] = value


class _Common:
    def __init__(self, config: GateConfig, pseudonymize: Pseudonymizer) -> None:
        self.config = config
        self.pseudonymize = pseudonymize
        self.stats = GateStats()
        self._tz = ZoneInfo(config.time.tz)
        self._ts_cache: dict[str, int] = {}
        # Shops repeat themselves: the same country, item id or session on many lines.
        self._texts: dict[str, tuple[str, int]] = {}
        self._idents: dict[str, str] = {}
        self._contexts: dict[Any, tuple[dict[str, Any], int]] = {}
        self._min_ms = int(datetime.combine(config.shop_start, datetime.min.time(), UTC).timestamp() * 1000)
        self._default_currency = config.currency

    def safe_record(self, fields: Mapping[str, Any]) -> tuple[str, str | None]:
        """A rejected record as JSON, fit to keep (the user id pseudonymised, contact details
        scrubbed), and that pseudonym."""
        shown = dict(fields)
        user = shown.get("user_id")
        pseudonym = None
        if not _blank(user):
            pseudonym = shown["user_id"] = self.pseudonymize(clean_id(str(user))[:ID_MAX])
        text = json.dumps(shown, default=repr)[:65_536]  # ASCII-escaped: lone surrogates survive
        return scrub_pii(text)[0], pseudonym

    def reject(self, draft: Draft, bad: Violation) -> Rejection:
        record, pseudonym = self.safe_record(draft.fields)
        return Rejection(draft.line_no, record, bad.field, bad.reason, bad.detail, pseudonym)

    def text(self, value: Any, name: str) -> str | None:
        if _blank(value):
            return None
        raw = str(value)
        done = self._texts.get(raw)
        if done is None:
            text = clean_text(raw)
            if len(text) > self.config.max_text:
                raise _Bad(name, FIELD_TOO_LARGE, f"{len(text)} characters, limit {self.config.max_text}")
            done = scrub_pii(text)
            _remember(self._texts, raw, done)
        self.stats.pii_scrubbed += done[1]
        return done[0] or None

    def ident(self, value: Any, name: str, *, required: bool) -> str | None:
        if _blank(value):
            if required:
                raise _Bad(name, MISSING_FIELD, "empty")
            return None
        raw = str(value)
        text = self._idents.get(raw)
        if text is None:
            text = clean_id(raw)
            _remember(self._idents, raw, text)
        if len(text) > ID_MAX:
            raise _Bad(name, FIELD_TOO_LARGE, f"{len(text)} characters, limit {ID_MAX}")
        if not text and required:
            raise _Bad(name, MISSING_FIELD, "empty after cleaning")
        return text or None

    def timestamp(self, value: Any, name: str = "ts") -> int:
        if _blank(value):
            raise _Bad(name, MISSING_FIELD, "empty")
        key = str(value)
        ms = self._ts_cache.get(key)
        if ms is None:
            ms = self._parse_ts(value, name)
            if len(self._ts_cache) >= _TS_CACHE_SIZE:  # emptied, not frozen: memory stays flat
                self._ts_cache.clear()  # in the events read, and the stamps of the moment still repeat
            self._ts_cache[key] = ms
        if ms < self._min_ms:
            raise _Bad(name, BEFORE_SHOP_START, f"{value!r} is before {self.config.shop_start}")
        if ms > self.config.now_ms + self.config.future_tolerance_ms:
            raise _Bad(name, FUTURE_TIMESTAMP, f"{value!r} is in the future")
        return ms

    def _parse_ts(self, value: Any, name: str) -> int:
        unit = self.config.time.unit
        if unit == "iso" and not isinstance(value, int | float):
            text = str(value).strip().removesuffix(" UTC").replace("Z", "+00:00")
            try:
                moment = datetime.fromisoformat(text)
            except ValueError:
                raise _Bad(name, BAD_TIMESTAMP, f"{text[:40]!r} is not an ISO date-time") from None
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=self._tz)
            return int(moment.timestamp() * 1000)
        number = _number(value, name)
        scale = 1000 if unit == "s" else 1
        if abs(number) * scale > 4e15:
            raise _Bad(name, OUT_OF_RANGE, f"{value!r} is not a plausible time")
        return int(number * scale)

    def price(self, value: Any, name: str = "price") -> float | None:
        if _blank(value):
            return None
        number = _number(value, name)
        if number < 0:
            raise _Bad(name, NEGATIVE_PRICE, f"{number}")
        if number > MAX_PRICE:
            raise _Bad(name, OUT_OF_RANGE, f"{number} exceeds {MAX_PRICE:g}")
        return number

    def currency(self, value: Any) -> str | None:
        if _blank(value):
            return self._default_currency
        code = currency_code(str(value))
        if code is None:
            raise _Bad("currency", UNKNOWN_CURRENCY, f"{str(value)[:20]!r}")
        return code

    def context(self, value: Any, name: str = "context") -> dict[str, Any]:
        """A free-form object (an event's context, an item's attributes), checked at every depth
        (``rules.clean_nested``): nested texts are scrubbed and size-limited too."""
        done = self.context_done(value, name)
        self.stats.pii_scrubbed += done[1]
        return dict(done[0])  # a copy: each event owns its context

    def context_done(self, value: Any, name: str = "context") -> tuple[dict[str, Any], int]:
        """``context`` without its side effects: the cleaned object (shared: do not change it) and
        how many contact details were scrubbed from it."""
        if value is None or value == "":
            return {}, 0
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except (ValueError, RecursionError):
                raise _Bad(name, BAD_TYPE, "not a JSON object") from None
        if not isinstance(value, Mapping):
            raise _Bad(name, BAD_TYPE, "not an object")
        try:  # shops repeat flat contexts ({"country": …}); a nested one is unhashable: not memoised
            key: Any = (name, tuple(value.items()))
            done = self._contexts.get(key)
        except TypeError:
            key, done = None, None
        if done is None:
            done = clean_nested(value, field=name, max_text=self.config.max_text, clean=self._clean_text)
            if key is not None:
                if len(self._contexts) >= _MEMO_SIZE:
                    self._contexts.clear()
                self._contexts[key] = done
        return done

    def _clean_text(self, raw: str) -> tuple[str, int]:
        done = self._texts.get(raw)
        if done is None:
            done = scrub_pii(clean_text(raw))
            _remember(self._texts, raw, done)
        return done


class EventGate(_Common):
    """Checks event drafts from one source. ``known_items`` (optional) enforces a catalogue."""

    def __init__(
        self,
        config: GateConfig,
        pseudonymize: Pseudonymizer,
        *,
        known_items: Callable[[str], bool] | None = None,
    ) -> None:
        super().__init__(config, pseudonymize)
        self.known_items = known_items

    def check(self, draft: Draft | Problem) -> Event | Rejection:
        if isinstance(draft, Problem):
            return Rejection.of(draft)
        try:
            event = self._event(draft.fields)
        except Violation as bad:
            return self.reject(draft, bad)
        for note in draft.notes:
            self.stats.notes[note] += 1
        return event

    def _event(self, f: dict[str, Any]) -> Event:
        if self.config.required:
            require(f, self.config.required)
        event_type = self.event_type(f.get("type"))
        ts = self.timestamp(f.get("ts"))
        item_id = self.ident(f.get("item_id"), "item_id", required=event_type in ITEM_EVENT_TYPES)
        if item_id is not None and self.known_items is not None and not self.known_items(item_id):
            raise _Bad("item_id", UNKNOWN_ITEM, f"{item_id!r} is not in the catalogue")
        quantity = self.quantity(f.get("quantity"))
        price = self.price(f.get("price"))
        if price == 0 and event_type in MONEY_EVENT_TYPES:
            raise _Bad("price", ZERO_PRICE, f"a {event_type.value} at price 0")
        currency = self.currency(f.get("currency")) if price is not None else None
        value = self.value(f.get("value"))
        raw_user = self.ident(f.get("user_id"), "user_id", required=False)
        if raw_user is None:
            self.stats.guests += 1
        user_id = None if raw_user is None else self.pseudonymize(raw_user)
        session_id = self.ident(f.get("session_id"), "session_id", required=False)
        context = self.context(f.get("context"))
        given = self.ident(f.get("event_id"), "event_id", required=False)
        event_id = given or time_ordered_id(
            ts, user_id, session_id, item_id, event_type.value, quantity, price, value, context.get("query")
        )
        return Event(
            event_id=event_id,
            user_id=user_id,
            session_id=session_id,
            item_id=item_id,
            type=event_type,
            ts=ts,
            quantity=quantity,
            price=price,
            currency=currency,
            value=value,
            context=context,
            source=self.config.source,
        )

    @staticmethod
    def event_type(raw_type: Any) -> EventType:
        if _blank(raw_type):
            raise _Bad("type", MISSING_FIELD, "empty")
        event_type = parse_event_type(str(raw_type))
        if event_type is None:
            raise _Bad("type", UNKNOWN_EVENT_TYPE, f"{str(raw_type)[:40]!r}")
        return event_type

    @staticmethod
    def value(raw: Any) -> float | None:
        return None if _blank(raw) else _number(raw, "value")

    def quantity(self, value: Any) -> int:
        if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 7:  # fast path
            if value.strip("0"):
                return int(value)
            raise _Bad("quantity", ZERO_QUANTITY, "0")
        if _blank(value):
            return 1
        number = _number(value, "quantity")
        if number != int(number):
            raise _Bad("quantity", BAD_TYPE, f"{value!r} is not a whole number")
        if number < 0:
            raise _Bad("quantity", NEGATIVE_QUANTITY, f"{int(number)}")
        if number == 0:
            raise _Bad("quantity", ZERO_QUANTITY, "0")
        if number > MAX_QUANTITY:
            raise _Bad("quantity", OUT_OF_RANGE, f"{int(number)} exceeds {MAX_QUANTITY}")
        return int(number)


class ItemGate(_Common):
    """Checks catalogue records, whether from an item file or carried inline by events."""

    def check(self, draft: Draft | Problem) -> Item | Rejection:
        if isinstance(draft, Problem):
            return Rejection.of(draft)
        try:
            if self.config.required:  # the file's format; not applied to facts an event carries inline
                require(draft.fields, self.config.required)
            return self.item(draft.fields)
        except Violation as bad:
            return self.reject(draft, bad)

    def item(self, f: Mapping[str, Any]) -> Item:
        item_id = self.ident(f.get("item_id"), "item_id", required=True)
        assert item_id is not None  # required=True
        price = self.price(f.get("price"))
        category = f.get("category")
        attributes = f.get("attributes") or {}
        if not isinstance(attributes, Mapping):
            raise _Bad("attributes", BAD_TYPE, "not an object")
        return Item(
            item_id=item_id,
            title=self.text(f.get("title"), "title"),
            description=self.text(f.get("description"), "description"),
            category=None if _blank(category) else category_path(str(category)),
            brand=self.text(f.get("brand"), "brand"),
            price=price,
            currency=self.currency(f.get("currency")) if price is not None else None,
            attributes=self.context(dict(attributes), "attributes"),
            available=self._available(f.get("available")),
            updated_ts=None
            if _blank(f.get("updated_ts"))
            else self.timestamp(f.get("updated_ts"), "updated_ts"),
            source=self.config.source,
        )

    def inline(self, fields: Mapping[str, Any]) -> Item | None:
        """Catalogue facts carried by an event; bad ones are dropped (the event itself was fine)."""
        try:
            return self.item(fields)
        except Violation:
            return None

    @staticmethod
    def _available(value: Any) -> bool:
        if _blank(value):
            return True
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise _Bad("available", BAD_TYPE, f"{text[:20]!r} is not yes/no")


@dataclass(slots=True)
class _Pace:
    first: int
    last: int
    n: int = 0
    # the distinct seconds with an action in the last 60 s, as a bit mask: bit k set = an action at
    # ``second - k`` (k < 60). Two ints per shopper, where a list of the seconds took ~90 bytes
    # empty and ~36 more per second held (500,000 shoppers: ~100 MB less than the list)
    second: int = -1  # the latest second counted; -1: none yet
    mask: int = 0
    peak: int = 0


_WINDOW_BITS = (1 << 60) - 1  # 60 seconds


class UserActivity:
    """First/last seen, event counts and peak pace per user, to flag likely bots.

    Pace counts *distinct seconds with an action* in any sliding 60-second window, so a checkout
    that writes 600 invoice lines at one instant counts once, while a crawler viewing a page every
    second does not hide, wherever its minute starts. Events that arrive out of time order for a
    user still count towards first/last seen and totals, not towards pace. Users above
    ``actions_per_minute`` are flagged, not removed: their events stay, and analytics and
    training can leave flagged users out.

    ``capacity`` (default: unbounded) bounds the shoppers followed at once, so a long ingest holds
    the same memory at 10M events as at 1M: the shoppers least recently seen are let go in halves
    (two generations, ~230 bytes each), their ids queued in ``retired`` for the caller to take, and
    a flagged one's peak is kept (bots are few). A shopper let go who comes back starts a fresh
    window: the same pace unless ``capacity / 2`` other shoppers were seen between two of its
    actions less than a minute apart (first/last seen and totals then count from its return; the
    store recomputes those from the stored events anyway).
    """

    def __init__(self, actions_per_minute: int, *, capacity: int | None = None) -> None:
        if capacity is not None and capacity < 2:
            raise ValueError("capacity must be at least 2 shoppers (or None: unbounded)")
        self.limit = actions_per_minute
        self.capacity = capacity
        self._half = capacity // 2 if capacity else 0
        self._recent: dict[str, _Pace] = {}
        self._older: dict[str, _Pace] = {}  # the previous generation, let go when the recent one fills
        self._bots: dict[str, int] = {}  # the peak of each flagged shopper let go
        self.retired: list[str] = []  # ids let go since the caller last emptied the list
        self.evicted = 0  # shoppers let go in all

    @property
    def users(self) -> dict[str, _Pace]:
        """The shoppers followed now (all of them when unbounded)."""
        return {**self._older, **self._recent} if self._older else self._recent

    def held(self) -> int:
        return len(self._recent) + len(self._older)

    def _age(self) -> None:
        limit, bots = self.limit, self._bots
        for user, pace in self._older.items():
            if pace.peak > limit and pace.peak > bots.get(user, 0):
                bots[user] = pace.peak
        self.retired.extend(self._older)
        self.evicted += len(self._older)
        self._older, self._recent = self._recent, {}

    def observe(self, user_id: str, ts: int, *, paced: bool = True) -> _Pace:
        """Count an event; ``paced=False`` for made-up times (sequence files), which say nothing of pace."""
        pace = self._recent.get(user_id)
        if pace is None:
            pace = self._older.pop(user_id, None) if self._older else None
            if pace is None:
                pace = _Pace(ts, ts)
            self._recent[user_id] = pace
            if self._half and len(self._recent) >= self._half:
                self._age()
        if ts < pace.first:
            pace.first = ts
        elif ts > pace.last:
            pace.last = ts
        pace.n += 1
        if not paced:
            return pace
        second = ts // 1000
        if pace.mask and second <= pace.second:
            return pace  # the same second again, or out of order
        shift = second - pace.second
        # the seconds more than 59 s before this one leave the window (the list's bisect, in bits)
        pace.mask = ((pace.mask << shift) | 1) & _WINDOW_BITS if pace.mask and shift < 60 else 1
        pace.second = second
        held = pace.mask.bit_count()
        if held > pace.peak:
            pace.peak = held
        return pace

    def observe_many(self, user_ids: Iterable[str | None], ts: Iterable[int], paced: Iterable[bool]) -> None:
        """``observe`` for each event with a user, in order (guests are skipped).

        A run of consecutive events with the same user, time and pacing (the lines of one invoice)
        is observed once and counted whole: after the first, ``observe`` would only count them
        (first and last seen stay, the second is already the window's latest or not paced)."""
        observe = self.observe
        for (user_id, t, p), run in itertools.groupby(zip(user_ids, ts, paced, strict=True)):
            if user_id is None:
                continue
            pace = observe(user_id, t, paced=p)
            extra = len(list(run)) - 1
            if extra:
                pace.n += extra

    def take_retired(self) -> list[str]:
        """The ids let go since the last call (each once per time it was let go)."""
        out, self.retired = self.retired, []
        return out

    def flagged(self) -> dict[str, str]:
        peaks = dict(self._bots)
        for part in (self._older, self._recent):
            for user, pace in part.items():
                if pace.peak > self.limit and pace.peak > peaks.get(user, 0):
                    peaks[user] = pace.peak
        return {user: f"{peak} actions in one minute (limit {self.limit})" for user, peak in peaks.items()}
