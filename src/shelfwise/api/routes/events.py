"""Events in: checked by the quality gate, stored by group commit (or journaled while the store is
down), and folded into the shopper's live session at once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Body, Header, Response

from shelfwise.api.auth import Write
from shelfwise.api.routes.deps import (
    ERRORS,
    Svc,
)
from shelfwise.api.schemas import (
    EventBatchIn,
    EventIn,
    EventRejection,
    EventsAccepted,
    EventsBody,
)
from shelfwise.core.clock import now_ms
from shelfwise.core.logging import get_logger
from shelfwise.data.quality import Rejection
from shelfwise.data.readers.base import Draft
from shelfwise.data.schemas import Event, EventType
from shelfwise.serving.attribution import citing_in_context
from shelfwise.serving.container import Services
from shelfwise.store.base import QuarantineRow
from shelfwise.store.journal import store_unavailable

router = APIRouter()

_log = get_logger(__name__)

ERASED_USER = "erased_user"

_SESSION_TYPES = {
    EventType.VIEW: None,
    EventType.CLICK: None,
    EventType.WISHLIST: None,
    EventType.CART: True,
    EventType.PURCHASE: False,
}


@dataclass(frozen=True)
class _Refused:
    """One event the gate refused: what the client is told, and the row kept in quarantine."""

    index: int
    where: str
    rejection: Rejection

    @property
    def message(self) -> str:
        return f"{self.rejection.reason}: {self.rejection.detail}"


def _check_events(
    svc: Services, raw: list[EventIn], idempotency_key: str | None, *, batch: bool
) -> tuple[list[Event], list[_Refused]]:
    gate = svc.event_gate
    gate.config.now_ms = now_ms()
    events: list[Event] = []
    refused: list[_Refused] = []
    for n, ev in enumerate(raw):
        fields = citing_in_context(ev.model_dump(exclude_none=True))
        fields.setdefault("ts", gate.config.now_ms)
        if idempotency_key and len(raw) == 1 and "event_id" not in fields:
            fields["event_id"] = idempotency_key
        if "currency" in fields:
            fields["currency"] = fields["currency"].upper()
        result = gate.check(Draft(line_no=n, raw="", fields=fields))
        if isinstance(result, Event) and result.user_id in svc.erased:
            # told, not quarantined (a quarantined record would keep their pseudonym)
            result = Rejection(
                n, "", "user_id", ERASED_USER, "this shopper was erased; their events are not kept"
            )
        if isinstance(result, Rejection):
            where = ".".join(p for p in ("body", f"events.{n}" if batch else "", result.field or "") if p)
            refused.append(_Refused(n, where, result))
        else:
            events.append(result)
    return events, refused


def _quarantine_events(svc: Services, refused: list[_Refused]) -> None:
    """Keep refused events in the store's quarantine, as ingest does (the gate already
    pseudonymised the user id and scrubbed contact details in ``Rejection.raw``)."""
    # the gate's line number is the event's index in the batch (``Draft(line_no=n)``)
    rows = [QuarantineRow.of(r.rejection, source=svc.event_gate.config.source, kind="event") for r in refused]
    svc.metrics.events.labels("rejected").inc(len(rows))
    try:
        svc.store.add_quarantine(rows)
    except Exception as exc:
        if not store_unavailable(exc):
            raise
        # the client still gets every rejection in the answer; the good events go to the journal
        _log.warning(
            "refused events not quarantined: store unavailable",
            events=len(rows),
            reasons=sorted({r.reason for r in rows}),
            error=str(exc),
        )


@router.post(
    "/v1/events",
    status_code=202,
    response_model=EventsAccepted,
    responses=ERRORS,
    dependencies=[Write],
    tags=["events"],
)
def post_events(
    svc: Svc,
    body: Annotated[EventsBody, Body(description="one event, or {'events': [...]} (up to 1,000)")],
    response: Response,
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=256)] = None,
) -> EventsAccepted:
    """Store events; answers 202 only after the store committed them, or, while the store is down,
    after they were fsync'd to the local journal (``X-Shelfwise-Journaled: true``; replayed when the
    store returns). Retrying with the same ``event_id`` (or ``Idempotency-Key``) stores nothing
    twice. The shopper's next recommendations reflect views and carts at once.

    A body the documented schema refuses is a 422 naming each event and field. A body that fits
    the schema is always received (202): an event the quality gate then refuses (a time ahead of
    the clock, before the shop opened, a value too large) is quarantined with its reason and listed
    in ``rejections`` (index, field, reason), and the rest of the batch is stored; ``accepted`` may
    be 0.

    An event about an item of an answer cites it: ``rec_id`` (recommendations) or ``search_id``
    (search) with ``position`` (1-based). It is credited to that answer's placement, model version
    and experiment arm when the answer was served to the same shopper (or guest session) within the
    attribution window; otherwise it is stored all the same and credited to nothing
    (``shelfwise_attributions_total{status}`` counts each verdict: attributed, unknown, foreign,
    late, bad_position). The same keys inside ``context`` work too."""
    raw, batch = (body.events, True) if isinstance(body, EventBatchIn) else ([body], False)
    events, refused = _check_events(svc, raw, idempotency_key, batch=batch)
    kept_back = [r for r in refused if r.rejection.reason != ERASED_USER]
    if kept_back:
        _quarantine_events(svc, kept_back)
    try:
        # committed before returning, in one transaction with the events of concurrent requests
        # a hung store is not waited for: after the timeout the events go to the journal
        timeout = svc.settings.store_request_timeout
        inserted = svc.event_writer.append(events, timeout=timeout) if events else 0
    except Exception as exc:
        if svc.journal is None or not store_unavailable(exc):
            raise
        svc.journal.append(events)  # durable (fsync) before the 202
        svc.metrics.events.labels("journaled").inc(len(events))
        response.headers["X-Shelfwise-Journaled"] = "true"
        inserted = len(events)
    else:
        svc.metrics.events.labels("stored").inc(inserted)
    svc.metrics.events.labels("duplicate").inc(len(events) - inserted)
    touched = set()
    for e in events:
        if e.user_id is None or e.user_id in svc.erased:  # erased while this request ran
            continue
        touched.add(e.user_id)
        if e.item_id is not None and e.type in _SESSION_TYPES:
            svc.sessions.push(e.user_id, e.item_id, cart=_SESSION_TYPES[e.type])
        elif e.item_id is not None and e.type == EventType.REMOVE_FROM_CART:
            svc.sessions.push(e.user_id, e.item_id, cart=False)
    fresh = svc.recommending.fresh
    for user in touched:
        svc.cache.invalidate(user)
        svc.affinities.pop(user, None)
        if fresh is not None:  # the next answer here folds this event in
            fresh.invalidate(user)
    return EventsAccepted(
        accepted=inserted,
        duplicates=len(events) - inserted,
        event_ids=[e.event_id for e in events],
        rejected=len(refused),
        rejections=[
            EventRejection(index=r.index, field=r.where, reason=r.rejection.reason, message=r.message)
            for r in refused
        ],
    )
