"""Attribution: which served answer (placement, model version, experiment arm) a click, cart or
purchase came from.

An event cites an answer in its context: ``rec_id`` (a recommendation list) or ``search_id`` (a
search answer), with ``position`` (1-based, as shown). It is credited to that answer when

- the answer is in the impression log and of the cited kind (else ``unknown``),
- it was served to the same shopper: same user, or for a guest answer the same session (else
  ``foreign``: one shopper cannot move another's numbers by replaying their ids),
- the event came within the shop's window after it (else ``late``), and
- the position is in the list and holds the event's item; a missing position is looked up from
  the item (else ``bad_position``).

An event that fails any rule is stored as usual (it is a real event) but credited to nothing; its
status row counts it (``attribution_counts``). A cart or purchase that cites nothing is carried
over to the shopper's newest attributed click on the same item within the window (last touch).

    >>> report = attribute_events(store, events, config=AttributionConfig(window_hours=24))  # doctest: +SKIP
    >>> report.counts                                                                     # doctest: +SKIP
    {'attributed': 41, 'foreign': 1, 'unknown': 2}
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shelfwise.data.schemas import Event, EventType
from shelfwise.store.base import Store
from shelfwise.store.impressions import (
    Attribution,
    Impression,
    get_impressions,
    last_clicks,
    save_attributions,
)

CITES = {"rec_id": "rec", "search_id": "search"}
CARRIED = (EventType.CART, EventType.PURCHASE)
MAX_ID = 32
HOUR_MS = 3_600_000


class AttributionConfig(BaseModel):
    """What the shop sets: how long after an answer an event may still be credited to it."""

    model_config = ConfigDict(extra="forbid")

    window_hours: float = Field(
        24.0, gt=0, le=24 * 90, description="credit events up to this long after the answer"
    )
    clock_slack_ms: int = Field(
        60_000, ge=0, description="an event stamped this much before its answer still counts (client clocks)"
    )
    carry_over: bool = Field(
        True, description="credit uncited carts and purchases to the last attributed click"
    )

    @property
    def window_ms(self) -> int:
        return int(self.window_hours * HOUR_MS)


@dataclass
class AttributionReport:
    counts: Counter[str] = field(default_factory=Counter)
    stored: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"counts": dict(self.counts), "stored": self.stored}


def citation(event: Event) -> tuple[str, Any, Any] | None:
    """(kind, cited id, position) of an event that cites an answer, else None."""
    ctx = event.context or {}
    for key, kind in CITES.items():
        if key in ctx:
            return kind, ctx.get(key), ctx.get("position")
    return None


def _position(raw: Any) -> int | bool | None:
    """The cited position as an int, None when absent, False when malformed."""
    if raw is None:
        return None
    if isinstance(raw, bool):
        return False
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str) and raw.strip().isdigit():
        return int(raw.strip())
    return False


def _revenue(event: Event) -> float:
    if event.type is EventType.PURCHASE and event.price is not None:
        return float(event.price) * int(event.quantity)
    return 0.0


def judge(
    event: Event, cited: tuple[str, Any, Any], imp: Impression | None, config: AttributionConfig
) -> Attribution:
    """The attribution of one citing event (pure: no store)."""
    kind, _, raw_pos = cited
    row = Attribution(
        event_id=event.event_id,
        status="unknown",
        type=event.type.value,
        ts=event.ts,
        user_id=event.user_id,
        session_id=event.session_id,
        item_id=event.item_id,
        revenue=_revenue(event),
    )
    if imp is None or imp.kind != kind:
        return row
    if imp.user_id is not None:
        same = event.user_id == imp.user_id
    else:
        same = imp.session_id is not None and event.session_id == imp.session_id
    if not same:
        row.status = "foreign"
        return row
    if not (imp.ts - config.clock_slack_ms <= event.ts <= imp.ts + config.window_ms):
        row.status = "late"
        return row
    pos = _position(raw_pos)
    if pos is None and event.item_id is not None and event.item_id in imp.items:
        pos = list(imp.items).index(event.item_id) + 1
    if (
        pos is None
        or pos is False
        or not 1 <= int(pos) <= len(imp.items)
        or (event.item_id is not None and imp.items[int(pos) - 1] != event.item_id)
    ):
        row.status = "bad_position"
        return row
    row.status = "attributed"
    row.answer_id = imp.answer_id
    row.position = int(pos)
    row.item_id = imp.items[int(pos) - 1]
    row.session_id = imp.session_id  # the session the answer was served in (guests: the same one)
    row.placement, row.version = imp.placement, imp.version
    row.experiment, row.arm = imp.experiment, imp.arm
    return row


def _carried(event: Event, click: Attribution) -> Attribution:
    return Attribution(
        event_id=event.event_id,
        status="attributed",
        type=event.type.value,
        ts=event.ts,
        user_id=event.user_id,
        session_id=click.session_id,
        answer_id=click.answer_id,
        position=click.position,
        item_id=event.item_id,
        placement=click.placement,
        version=click.version,
        experiment=click.experiment,
        arm=click.arm,
        revenue=_revenue(event),
    )


def attribute_events(
    store: Store, events: Sequence[Event], *, config: AttributionConfig | None = None
) -> AttributionReport:
    """Credit stored ``events`` to the answers they cite (or, for uncited carts and purchases, to
    the shopper's last attributed click on the item) and store one attribution row per event that
    cited something; returns counts by status. Run it after the events are stored."""
    config = config or AttributionConfig()
    report = AttributionReport()
    citing = [(e, c) for e in events if (c := citation(e)) is not None]
    wanted = [c[1] for _, c in citing if isinstance(c[1], str) and 0 < len(c[1]) <= MAX_ID]
    found: Mapping[str, Impression] = get_impressions(store, wanted) if wanted else {}
    rows: list[Attribution] = []
    for event, cited in citing:
        answer = cited[1] if isinstance(cited[1], str) else None
        rows.append(judge(event, cited, found.get(answer) if answer else None, config))
    if config.carry_over:
        # clicks in this very batch count too: they are attributed before the carts after them
        uncited = [e for e in events if e.type in CARRIED and e.item_id and citation(e) is None]
        if uncited:
            earliest = min(e.ts for e in uncited) - config.window_ms
            keys = {(e.user_id, None if e.user_id else e.session_id, str(e.item_id)) for e in uncited}
            clicks = dict(last_clicks(store, keys, since=earliest))
            for r in rows:
                if r.status == "attributed" and r.type == EventType.CLICK.value and r.item_id:
                    key = (r.user_id, None if r.user_id else r.session_id, r.item_id)
                    if key not in clicks or clicks[key].ts <= r.ts:
                        clicks[key] = r
            for e in uncited:
                key = (e.user_id, None if e.user_id else e.session_id, str(e.item_id))
                click = clicks.get(key)
                if click is not None and click.ts <= e.ts <= click.ts + config.window_ms:
                    rows.append(_carried(e, click))
    report.counts.update(r.status for r in rows)
    report.stored = save_attributions(store, rows)
    return report
