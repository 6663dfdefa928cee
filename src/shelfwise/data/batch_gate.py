"""The quality gate over a batch of event drafts in columns: the row-by-row ``EventGate``'s rules,
each run once per distinct value of its column, the first violation of each row found with NumPy.

``BatchEventGate(gate).check(batch)`` gives the same events (as store rows), the same rejections
(field, reason, detail, the record as kept) and the same gate statistics as ``gate.check`` on each
draft in turn: every per-value rule *is* the reference gate's method, and a row's rules are taken
in the reference's order, so the first one it breaks is the one reported. The row-by-row gate stays
the reference (``--engine rows``); ``tests/integration/test_ingest_engines.py`` holds them equal.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shelfwise.core.ids import time_ordered_ids, time_prefix
from shelfwise.data.columnar import encode, flags, take
from shelfwise.data.quality import UNKNOWN_ITEM, ZERO_PRICE, EventGate, Rejection
from shelfwise.data.readers.base import SYNTHETIC_TS, DraftBatch
from shelfwise.data.rules import Violation, require
from shelfwise.data.schemas import ITEM_EVENT_TYPES, MONEY_EVENT_TYPES, EventType

_NONE = np.int8(127)  # "no violation yet"


@dataclass
class BatchResult:
    """Accepted events as store rows (``EVENT_COLUMNS`` order, context as JSON text) with the
    columns ingest needs beside them, and the batch's rejections (its reader's problems first)."""

    rows: list[tuple[Any, ...]] = field(default_factory=list)
    user_ids: list[str | None] = field(default_factory=list)
    ts: list[int] = field(default_factory=list)
    item_ids: list[str | None] = field(default_factory=list)
    paced: list[bool] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)  # each accepted row's index in the batch
    # each accepted row: a purchase with a price above 0 (a sale that can price its item)
    sales: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    given_ids: bool = False  # some accepted row kept an event id its record gave
    rejections: list[Rejection] = field(default_factory=list)


_MEMO_SIZE = 50_000  # results kept per rule (emptied when full: memory stays flat)
# columns whose values hardly repeat from one chunk to the next (event ids; millisecond stamps, whose
# repeats, the lines of one invoice, fall in one chunk and are checked once there anyway): a memo
# of them only fills up (~200 bytes an entry), so they get none
_UNIQUE = frozenset({"event_id", "ts"})


def _apply(
    fn: Callable[[Any], Any], distinct: Sequence[Any], memo: dict[str, Any] | None = None
) -> tuple[list[Any], list[BaseException | None]]:
    """``fn`` on each distinct value: its result, or what it raised. A violation rejects the rows
    that reach this rule; any other error is raised only if a row reaches it (as the reference would).

    ``memo`` keeps (result, error) per text value across batches: a chunk of a file names mostly
    the stock codes, invoices and dates the chunks before it named, and every rule here is a pure
    function of its value (the gate's settings are fixed for a run). Only ``str`` values are kept,
    so ``1``, ``1.0`` and ``True`` from a JSON reader never share a result."""
    out: list[Any] = []
    bad: list[BaseException | None] = []
    for value in distinct:
        keep = memo is not None and value.__class__ is str
        if keep:
            hit = memo.get(value)  # type: ignore[union-attr]
            if hit is not None:
                out.append(hit[0])
                bad.append(hit[1])
                continue
        try:
            result, error = fn(value), None
        except Exception as exc:
            result, error = None, exc
        out.append(result)
        bad.append(error)
        if keep:
            if len(memo) >= _MEMO_SIZE:  # type: ignore[arg-type]
                memo.clear()  # type: ignore[union-attr]
            memo[value] = (result, error)  # type: ignore[index]
    return out, bad


class _Rows:
    """Per-row first violation, filled rule by rule in the reference's order."""

    def __init__(self, n: int) -> None:
        self.stage = np.full(n, _NONE, dtype=np.int8)
        self.bad = np.empty(n, dtype=object)
        self.next = 0

    def fail(self, mask: np.ndarray, bad: np.ndarray | BaseException) -> None:
        stage = self.next
        self.next += 1
        hit = mask & (self.stage == _NONE)
        if hit.any():
            self.stage[hit] = stage
            self.bad[hit] = bad if isinstance(bad, BaseException) else bad[hit]

    def reached(self) -> np.ndarray:
        """Rows that got past every rule so far."""
        return self.stage == _NONE

    def rule(
        self, column: Sequence[Any], fn: Callable[[Any], Any], memo: dict[str, Any] | None = None
    ) -> np.ndarray:
        """Apply ``fn`` per distinct value of ``column``; rows whose value breaks it fail here.
        Returns the results as an object array over rows (None where it failed)."""
        out, codes = self.rule_distinct(column, fn, memo)
        return take(out, codes)

    def rule_distinct(
        self, column: Sequence[Any], fn: Callable[[Any], Any], memo: dict[str, Any] | None = None
    ) -> tuple[list[Any], np.ndarray]:
        """``rule``, its results left per distinct value: (results, each row's code)."""
        distinct, codes = encode(column)
        out, bad = _apply(fn, distinct, memo)
        self.fail(_failed(bad, codes), take(bad, codes))
        return out, codes


def _require(name: str, value: Any) -> None:
    require({name: value}, (name,))


def _at(column: tuple[Sequence[Any], np.ndarray], rows: np.ndarray) -> list[Any]:
    """The values of a (distinct values, codes) column at ``rows``, as a list."""
    distinct, codes = column
    return take(distinct, codes[rows]).tolist()


def _failed(bad: Sequence[BaseException | None], codes: np.ndarray) -> np.ndarray:
    return flags([b is not None for b in bad], codes)


class BatchEventGate:
    """Checks ``DraftBatch`` columns with an ``EventGate``'s rules; its ``stats`` are the gate's."""

    def __init__(self, gate: EventGate, *, context_json: Callable[[dict[str, Any]], str]) -> None:
        self.gate = gate
        self.context_json = context_json  # the store's spelling of a context, once per distinct one
        self._memos: dict[str, dict[str, Any]] = {}  # per rule: text value -> (result, error)

    def _memo(self, rule: str) -> dict[str, Any] | None:
        if rule.removeprefix("required:") in _UNIQUE:  # a required ts is as unique as the ts itself
            return None
        return self._memos.setdefault(rule, {})

    def check(self, batch: DraftBatch) -> BatchResult:
        g = self.gate
        n = len(batch)
        result = BatchResult(rejections=[Rejection.of(p) for p in batch.problems])
        if n == 0:
            return result

        def column(name: str) -> Sequence[Any]:
            return batch.fields.get(name) or [None] * n

        rows = _Rows(n)
        for name in g.config.required:  # ``require``, one field at a time, in the format's order
            rows.rule(column(name), functools.partial(_require, name), self._memo(f"required:{name}"))
        types = rows.rule_distinct(column("type"), g.event_type, self._memo("type"))
        ts = rows.rule_distinct(column("ts"), g.timestamp, self._memo("ts"))

        # item_id: required for product events; the known-items check sits right behind it
        distinct, codes = encode(column("item_id"))
        _, bad_must = _apply(lambda v: g.ident(v, "item_id", required=True), distinct, self._memo("item!"))
        may, bad_may = _apply(lambda v: g.ident(v, "item_id", required=False), distinct, self._memo("item"))
        needs_item = flags([t in ITEM_EVENT_TYPES for t in types[0]], types[1])
        bad_item = np.where(needs_item, take(bad_must, codes), take(bad_may, codes))
        rows.fail(np.where(needs_item, _failed(bad_must, codes), _failed(bad_may, codes)), bad_item)
        item_ids = (may, codes)
        if g.known_items is not None:
            known = g.known_items
            unknown = [
                Violation("item_id", UNKNOWN_ITEM, f"{v!r} is not in the catalogue")
                if v is not None and not known(v)
                else None
                for v in may
            ]
            rows.fail(_failed(unknown, codes), take(unknown, codes))
        else:
            rows.next += 1

        quantity = rows.rule_distinct(column("quantity"), g.quantity, self._memo("quantity"))
        price = rows.rule_distinct(column("price"), g.price, self._memo("price"))
        zero = flags([p is not None and p == 0 for p in price[0]], price[1])
        money = flags([t in MONEY_EVENT_TYPES for t in types[0]], types[1])
        zero_bad = [
            None if t is None else Violation("price", ZERO_PRICE, f"a {t.value} at price 0") for t in types[0]
        ]
        rows.fail(zero & money, take(zero_bad, types[1]))
        has_price = flags([p is not None for p in price[0]], price[1])

        distinct, codes = encode(column("currency"))
        cur_d, bad = _apply(g.currency, distinct, self._memo("currency"))
        rows.fail(_failed(bad, codes) & has_price, take(bad, codes))
        currency = ([*cur_d, None], np.where(has_price, codes, len(cur_d)))  # no price, no currency

        value = rows.rule_distinct(column("value"), g.value, self._memo("value"))
        distinct, codes = encode(column("user_id"))
        raw_users, bad = _apply(lambda v: g.ident(v, "user_id", required=False), distinct, self._memo("user"))
        rows.fail(_failed(bad, codes), take(bad, codes))
        guest = flags([u is None for u in raw_users], codes)
        g.stats.guests += int(np.count_nonzero(guest & rows.reached()))
        users = ([None if u is None else g.pseudonymize(u) for u in raw_users], codes)

        session = rows.rule_distinct(
            column("session_id"), lambda v: g.ident(v, "session_id", required=False), self._memo("session")
        )
        context = rows.rule_distinct(column("context"), g.context_done, self._memo("context"))
        scrubbed = np.fromiter(
            (0 if d is None else d[1] for d in context[0]), dtype=np.int64, count=len(context[0])
        )
        g.stats.pii_scrubbed += int(scrubbed[context[1]][rows.reached()].sum())
        given = rows.rule_distinct(
            column("event_id"), lambda v: g.ident(v, "event_id", required=False), self._memo("event_id")
        )

        self._reject(batch, rows, result)
        ok = np.flatnonzero(rows.reached())
        if len(ok) == 0:
            return result
        # notes are counted for every draft the gate accepts, as ``EventGate.check`` does
        note_d, note_codes = encode(batch.notes)
        note_counts = np.bincount(note_codes[ok], minlength=len(note_d))
        for notes, count in zip(note_d, note_counts.tolist(), strict=True):
            for note in notes:
                g.stats.notes[note] += count
        result.paced = flags([SYNTHETIC_TS not in notes for notes in note_d], note_codes)[ok].tolist()

        ctx = [None if d is None else d[0] for d in context[0]]
        json_col = ([None if c is None else self.context_json(c) for c in ctx], context[1])
        query = ([None if c is None else c.get("query") for c in ctx], context[1])
        type_values = ([None if t is None else t.value for t in types[0]], types[1])
        parts = (ts, users, session, item_ids, type_values, quantity, price, value, query)
        # ``time_ordered_id`` of each row, each part's repr taken once per distinct value
        event_ids = time_ordered_ids(
            _at(([None if t is None else time_prefix(t) for t in ts[0]], ts[1]), ok),
            [_at(([repr(v) for v in col[0]], col[1]), ok) for col in parts],
        )
        given_ids = _at(given, ok)
        if any(given_ids):
            event_ids = [e or made for e, made in zip(given_ids, event_ids, strict=True)]
            result.given_ids = True
        purchase = flags([t is EventType.PURCHASE for t in types[0]], types[1])
        priced = flags([x is not None and x > 0 for x in price[0]], price[1])
        result.sales = (purchase & priced)[ok]
        u, s, i, t = (_at(col, ok) for col in (users, session, item_ids, ts))
        q, p, c, v = (_at(col, ok) for col in (quantity, price, currency, value))
        source = [g.config.source] * len(ok)
        result.rows = list(
            zip(
                event_ids,
                u,
                s,
                i,
                _at(type_values, ok),
                t,
                q,
                p,
                c,
                v,
                _at(json_col, ok),
                source,
                strict=True,
            )
        )
        result.user_ids, result.ts, result.item_ids = u, t, i
        result.positions = ok.tolist()
        return result

    def _reject(self, batch: DraftBatch, rows: _Rows, result: BatchResult) -> None:
        for i in np.flatnonzero(~rows.reached()).tolist():
            bad = rows.bad[i]
            if not isinstance(bad, Violation):
                raise bad  # what the reference would have raised on this record
            result.rejections.append(self.gate.reject(batch.draft(i), bad))
