"""Every HTTP route. Ids in paths and bodies are the shop's own; user ids are pseudonymised with the
store's key on the way in, so the API and ingest agree on who is who."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import anyio.to_thread
from fastapi import APIRouter, Body, Depends, Header, HTTPException, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from pydantic_core import to_json

from shelfwise.api.app import Services, note_items
from shelfwise.api.auth import Admin, CallerDep, ShopperCaller, Write, check_shopper
from shelfwise.api.openapi import ValidationErrorOut, invalid
from shelfwise.api.privacy import checked_elsewhere, deletion_report, derived_dirs, erase_everywhere
from shelfwise.api.recommending import Answer
from shelfwise.api.recommending import Request as RecRequest
from shelfwise.api.schemas import (
    NOT_BLANK,
    ActivationOut,
    AutocompleteOut,
    CandidateIn,
    CartIn,
    DeletionIncompleteOut,
    DeletionOut,
    ErrorOut,
    EventBatchIn,
    EventIn,
    EventRejection,
    EventsAccepted,
    EventsBody,
    HealthOut,
    ItemDeleted,
    ItemIn,
    ItemOut,
    ModelsOut,
    RecommendationsOut,
    Scenario,
    SearchOut,
    VersionOut,
)
from shelfwise.core.access import Role
from shelfwise.core.clock import now_ms
from shelfwise.core.logging import get_logger
from shelfwise.data.quality import Rejection
from shelfwise.data.readers.base import Draft
from shelfwise.data.schemas import Event, EventType, Item, validate_item
from shelfwise.recommend.base import Filters
from shelfwise.registry.serving import Deployment
from shelfwise.registry.training import release
from shelfwise.registry.versions import Candidate
from shelfwise.store.base import QuarantineRow
from shelfwise.store.journal import store_unavailable

router = APIRouter()

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "no credential, or one that is not valid"},
    403: {"model": ErrorOut, "description": "the credential's role does not allow this"},
    413: {"model": ErrorOut, "description": "request body too large"},
    422: {"model": ValidationErrorOut, "description": "invalid request (each field is named)"},
    429: {"model": ErrorOut, "description": "rate limited"},
}
READ_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "a credential was sent and is not valid"},
    422: ERRORS[422],
    429: ERRORS[429],
    503: {"model": ErrorOut, "description": "no model active yet"},
}
PERSONAL_ERRORS: dict[int | str, dict[str, Any]] = {
    **READ_ERRORS,
    401: {"model": ErrorOut, "description": "a shopper's answers need a read key or their shopper token"},
    403: {"model": ErrorOut, "description": "the credential may not see this shopper's answers"},
}

UserId = Annotated[str, Path(min_length=1, max_length=256, description="the shop's user id")]
ItemId = Annotated[str, Path(min_length=1, max_length=256, description="the shop's item id")]
K = Annotated[int, Query(ge=1, le=100, description="how many items")]
Category = Annotated[str | None, Query(min_length=1, max_length=512, description="only this category")]
Brand = Annotated[str | None, Query(min_length=1, max_length=256, description="only this brand")]
Price = Annotated[float | None, Query(ge=0, le=1e9)]


async def services(request: Request) -> Services:
    # async on purpose: FastAPI runs a sync dependency in its thread pool, a hop per request
    svc: Services = request.app.state.services
    return svc


Svc = Annotated[Services, Depends(services)]


def same_shopper(svc: Services) -> Any:
    """Whether two shop ids name one shopper (cleaned as ingest cleans them)."""
    return lambda a, b: a == b or svc.pseudonymize(a) == svc.pseudonymize(b)


def _deployment(svc: Services) -> Deployment:
    dep = svc.live.current
    if dep is None:
        # why (svc.live.last_error) can name files and stores: /readyz shows it to an admin
        raise HTTPException(
            503,
            detail={
                "error": "no_model_active",
                "detail": "no model version is active",
                "hint": "run `shelfwise serve` (it trains one on first start) or activate a version; "
                "/readyz with an admin key says why",
            },
            headers={"Retry-After": "5"},
        )
    return dep


def _filters(
    category: str | None, brand: str | None, price_min: float | None, price_max: float | None
) -> Filters | None:
    # price_min > price_max is an empty range, not an error: nothing matches it
    if category is None and brand is None and price_min is None and price_max is None:
        return None
    return Filters(
        categories=[category] if category else None,
        brands=[brand] if brand else None,
        price_min=price_min,
        price_max=price_max,
    )


def _json(body: dict[str, Any]) -> Response:
    """The body of a ``RecommendationsOut``, serialised once by pydantic's Rust encoder. It is built
    from our own values (``_out``), so validating it again would only cost time (~0.2 ms a request
    under load); ``response_model`` still documents it, and the schema tests check answers against it."""
    return Response(to_json(body), media_type="application/json")


def _out(svc: Services, answer: Answer, *, cached: bool = False, **extra: Any) -> dict[str, Any]:
    """A ``RecommendationsOut`` as a dict: each item with its reason and catalogue facts."""
    items = []
    get = svc.search.get if svc.search is not None else None
    for item_id, score, reason in zip(answer.items, answer.scores, answer.reasons, strict=True):
        facts = get(item_id) if get is not None else None
        score = float(score)
        items.append(
            {
                "item_id": item_id,
                "score": score if score == score and abs(score) != float("inf") else 0.0,
                "reason": reason,
                "title": getattr(facts, "title", None),
                "category": getattr(facts, "category", None),
                "brand": getattr(facts, "brand", None),
                "price": getattr(facts, "price", None),
            }
        )
    return {
        "model_version": answer.model_version,
        "source": answer.source,
        "role": answer.role,
        "cached": cached,
        "user_id": extra.get("user_id"),
        "item_id": extra.get("item_id"),
        "scenario": extra.get("scenario"),
        "items": items,
        "skipped": [{"stage": str(s["stage"]), "cause": str(s["cause"])} for s in answer.skipped],
    }


# --- recommendations ------------------------------------------------------------------------------


class RecommendationsQuery(BaseModel):
    """The query of ``GET /v1/users/{user_id}/recommendations``, one model: FastAPI validates it in
    one call, where eight separate query parameters cost it ~0.1 ms of reflection per request."""

    k: int = Field(10, ge=1, le=100, description="how many items")
    scenario: Scenario = Field("home", description="the page asking")
    category: str | None = Field(None, min_length=1, max_length=512, description="only this category")
    brand: str | None = Field(None, min_length=1, max_length=256, description="only this brand")
    price_min: float | None = Field(None, ge=0, le=1e9)
    price_max: float | None = Field(None, ge=0, le=1e9)
    item_id: str | None = Field(
        None, min_length=1, max_length=256, description="product page: the item shown"
    )


@router.get(
    "/v1/users/{user_id}/recommendations",
    response_model=RecommendationsOut,
    responses=PERSONAL_ERRORS,
    tags=["recommendations"],
)
async def user_recommendations(
    svc: Svc, caller: ShopperCaller, user_id: UserId, query: Annotated[RecommendationsQuery, Query()]
) -> Response:
    """Top items for a shopper, folded with their live session; falls back to their session, then
    popular in category, then popular overall (``scenario=category`` without a ``category``: overall). Needs a
    ``read`` key, or this shopper's token (``POST /v1/tokens``): the reasons name their history.
    Anyone may ask ``GET /v1/recommendations`` (no shopper)."""
    check_shopper(caller, user_id, same_shopper(svc))
    # async: with in-process state a cached answer never leaves the event loop, and a miss makes
    # one hop to the model pool (a sync route would hop to AnyIO's pool first, then to the model's)
    k, scenario, category, item_id = query.k, query.scenario, query.category, query.item_id
    dep = _deployment(svc)
    pseudo = _shopper(svc, user_id)
    req = RecRequest(
        user_id=pseudo,
        k=k,
        scenario=scenario,
        filters=_filters(category, query.brand, query.price_min, query.price_max),
        context_items=[item_id] if item_id else [],
    )
    if svc.recommending.in_process:
        answer, cached = await svc.recommending.recommend_async(dep, req)
    else:  # Redis round trips block: keep them off the event loop
        answer, cached = await anyio.to_thread.run_sync(svc.recommending.recommend, dep, req)
    return _json(_out(svc, answer, cached=cached, user_id=user_id, scenario=scenario))


def _shopper(svc: Services, user_id: str) -> str | None:
    """The pseudonym of a shop's user id; None for an erased shopper (answered as anonymous, so
    nothing is kept under their pseudonym again)."""
    pseudo = svc.pseudonymize(user_id)
    return None if pseudo in svc.erased else pseudo


def _known_item(svc: Services, dep: Deployment, item_id: str) -> None:
    in_catalogue = svc.search is not None and svc.search.get(item_id) is not None
    if not in_catalogue and item_id not in dep.active.recommender.item_map.index:
        raise HTTPException(404, detail={"error": "unknown_item", "detail": f"no item {item_id!r}"})


def _item_answer(svc: Services, item_id: str, k: int, filters: Filters | None, *, bundles: bool) -> Response:
    """Similar items (or, with ``bundles``, items bought together) for a known item."""
    dep = _deployment(svc)
    _known_item(svc, dep, item_id)
    answer = svc.recommending.similar(dep, item_id, k, filters, bundles=bundles)
    return _json(_out(svc, answer, item_id=item_id))


@router.get(
    "/v1/items/{item_id}/similar",
    response_model=RecommendationsOut,
    responses={**READ_ERRORS, 404: {"model": ErrorOut}},
    tags=["recommendations"],
)
def similar_items(
    svc: Svc,
    item_id: ItemId,
    k: K = 10,
    category: Category = None,
    brand: Brand = None,
    price_min: Price = None,
    price_max: Price = None,
) -> Response:
    """Items like this one (product page)."""
    return _item_answer(svc, item_id, k, _filters(category, brand, price_min, price_max), bundles=False)


@router.get(
    "/v1/items/{item_id}/bought-together",
    response_model=RecommendationsOut,
    responses={**READ_ERRORS, 404: {"model": ErrorOut}},
    tags=["recommendations"],
)
def bought_together(
    svc: Svc,
    item_id: ItemId,
    k: K = 10,
    category: Category = None,
    brand: Brand = None,
    price_min: Price = None,
    price_max: Price = None,
) -> Response:
    """Items bought with this one (co-purchases and association rules)."""
    return _item_answer(svc, item_id, k, _filters(category, brand, price_min, price_max), bundles=True)


@router.post(
    "/v1/cart/recommendations",
    response_model=RecommendationsOut,
    responses=PERSONAL_ERRORS,
    tags=["recommendations"],
)
def cart_recommendations(svc: Svc, caller: CallerDep, body: CartIn) -> Response:
    """What goes with a whole cart (bundle suggestions). With ``user_id`` the answer is personal:
    it needs a ``read`` key or that shopper's token."""
    if body.user_id:
        check_shopper(caller, body.user_id, same_shopper(svc))
    dep = _deployment(svc)
    req = RecRequest(
        user_id=_shopper(svc, body.user_id) if body.user_id else None,
        k=body.k,
        scenario="cart",
        filters=_filters(body.category, body.brand, body.price_min, body.price_max),
        context_items=list(dict.fromkeys(body.items)),
    )
    answer, cached = svc.recommending.recommend(dep, req)
    return _json(_out(svc, answer, cached=cached, user_id=body.user_id, scenario="cart"))


# --- search ---------------------------------------------------------------------------------------


def _affinity(svc: Services, pseudo: str) -> Any:
    from shelfwise.search.personal import UserAffinity

    found = svc.affinities.get(pseudo)
    if found is None:
        events = svc.store.events_for_user(pseudo, limit=500)
        items = {e.item_id: svc.search.get(e.item_id) for e in events if e.item_id}
        found = UserAffinity.from_events(events, {k: v for k, v in items.items() if v is not None})
        svc.affinities.put(pseudo, found)
    return found


@router.get("/v1/search", response_model=SearchOut, responses=PERSONAL_ERRORS, tags=["search"])
async def search(
    svc: Svc,
    caller: CallerDep,
    q: Annotated[
        str, Query(min_length=1, max_length=500, pattern=NOT_BLANK, description="what the shopper typed")
    ],
    page: Annotated[int, Query(ge=1, le=100)] = 1,
    size: Annotated[int, Query(ge=1, le=100)] = 10,
    user_id: Annotated[str | None, Query(min_length=1, max_length=256, description="personalise for")] = None,
    category: Annotated[
        str | None, Query(min_length=1, max_length=512, description="category path prefix")
    ] = None,
    brand: Annotated[list[str] | None, Query(max_length=20)] = None,
    price_min: Price = None,
    price_max: Price = None,
    available: bool | None = None,
    sort: Literal["relevance", "price_asc", "price_desc", "popularity"] = "relevance",
) -> SearchOut:
    """Keyword search with query understanding, filters, facets and pages; ``user_id`` re-ranks
    matching results by the shopper's brands and price range (and needs a ``read`` key or that
    shopper's token: the reasons name their brands); without it, anyone may search."""
    from shelfwise.search.engine import Filters as SearchFilters

    if user_id is not None:
        check_shopper(caller, user_id, same_shopper(svc))

    if not q.strip():
        raise HTTPException(422, detail=invalid("query.q", "empty"))
    filters = SearchFilters(  # price_min > price_max: an empty range, so no hits
        price_min=price_min,
        price_max=price_max,
        brands=[b for b in (brand or []) if b],
        category=category,
        available=available,
    )
    user, notice = None, None
    pseudo = _shopper(svc, user_id) if user_id else None
    if pseudo is not None:  # reads the shopper's events from the store: off the event loop
        try:
            with anyio.fail_after(svc.settings.store_request_timeout_ms / 1000):
                user = await anyio.to_thread.run_sync(_affinity, svc, pseudo, abandon_on_cancel=True)
        except Exception as exc:
            if not (isinstance(exc, TimeoutError) or store_unavailable(exc)):
                raise
            # the anonymous answer beats none; the thread left behind ends with the statement timeout
            notice = "not personalised: the store did not answer in time (these are the results for anyone)"
            svc.metrics.fallbacks.labels("search_personal", "store_unavailable").inc()
    mode = svc.settings.search_mode

    def run() -> Any:
        with svc.search_lock:
            return svc.search.search(q, k=page * size, mode=mode, filters=filters, sort=sort, user=user)

    # a keyword search is well under a millisecond of CPU, so it runs inline (a hop to a thread, and
    # 16 threads queueing on the lock and the GIL, would cost more than the search); a hybrid one
    # encodes the query (milliseconds of torch): off the event loop
    result = run() if mode == "bm25" else await anyio.to_thread.run_sync(run)
    hits = []
    for hit in result.hits[(page - 1) * size : page * size]:
        if hit.sources.get("bm25", 0) > 0:
            reason = "matches your words"
        elif hit.sources.get("dense", 0) > 0:
            reason = "close in meaning to your words"
        else:
            reason = "matches the query"
        if user is not None and user.boost(hit.item) > 1.01:
            reason += "; " + (
                "a brand you like" if user.brand_affinity(hit.item) > 0 else "in your usual price range"
            )
        it = hit.item
        hits.append(
            {
                "item_id": hit.item_id,
                "score": hit.score,
                "reason": reason,
                "title": it.title,
                "category": it.category,
                "brand": it.brand,
                "price": it.price,
                "available": it.available,
            }
        )
    return SearchOut(
        model_version=svc.search_version,
        query=q,
        showing_results_for=result.corrected,
        total=result.total,
        page=page,
        size=size,
        hits=hits,  # type: ignore[arg-type]
        facets=result.facets,
        filters=result.applied_filters,
        personalised=user is not None,
        notice=notice,
        took_ms=round(result.took_ms, 3),
    )


@router.get("/v1/autocomplete", response_model=AutocompleteOut, responses=READ_ERRORS, tags=["search"])
def autocomplete(
    svc: Svc,
    q: Annotated[str, Query(min_length=1, max_length=200)],
    k: Annotated[int, Query(ge=1, le=20)] = 8,
) -> AutocompleteOut:
    """Completions of what the shopper is typing."""
    with svc.search_lock:
        suggestions = svc.search.autocomplete(q, k)
    return AutocompleteOut(model_version=svc.search_version, query=q, suggestions=list(suggestions))


# --- events ---------------------------------------------------------------------------------------

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
        fields = ev.model_dump(exclude_none=True)
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
    be 0."""
    raw, batch = (body.events, True) if isinstance(body, EventBatchIn) else ([body], False)
    events, refused = _check_events(svc, raw, idempotency_key, batch=batch)
    kept_back = [r for r in refused if r.rejection.reason != ERASED_USER]
    if kept_back:
        _quarantine_events(svc, kept_back)
    try:
        # committed before returning, in one transaction with the events of concurrent requests
        # a hung store is not waited for: after the timeout the events go to the journal
        timeout = svc.settings.store_request_timeout_ms / 1000
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
    for user in touched:
        svc.cache.invalidate(user)
        svc.affinities.pop(user, None)
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


# --- items ----------------------------------------------------------------------------------------


def _item_out(item: Item) -> ItemOut:
    return ItemOut(
        item_id=item.item_id,
        title=item.title,
        description=item.description,
        category=item.category,
        brand=item.brand,
        price=item.price,
        currency=item.currency,
        attributes=item.attributes,
        available=item.available,
    )


@router.put(
    "/v1/items/{item_id}", response_model=ItemOut, responses=ERRORS, dependencies=[Write], tags=["items"]
)
def put_item(svc: Svc, item_id: ItemId, body: ItemIn) -> ItemOut:
    """Create or replace an item; searchable and (un)available to recommendations at once."""
    try:
        item = validate_item(
            {**body.model_dump(), "item_id": item_id, "updated_ts": now_ms(), "source": "api"}
        )
    except ValueError as exc:
        raise HTTPException(422, detail=invalid("body", str(exc))) from None
    svc.store.upsert_items([item], replace=True)
    warning = note_items(svc, [item])  # here at once, in the other workers at their next watch
    out = _item_out(item)
    out.warnings = [warning] if warning else []
    return out


@router.get(
    "/v1/items/{item_id}", response_model=ItemOut, responses={404: {"model": ErrorOut}}, tags=["items"]
)
def get_item(svc: Svc, item_id: ItemId) -> ItemOut:
    found = svc.store.get_items([item_id]).get(item_id)
    if found is None:
        raise HTTPException(404, detail={"error": "unknown_item", "detail": f"no item {item_id!r}"})
    return _item_out(found)


@router.delete(
    "/v1/items/{item_id}",
    response_model=ItemDeleted,
    responses={**ERRORS, 404: {"model": ErrorOut}},
    dependencies=[Write],
    tags=["items"],
)
def delete_item(svc: Svc, item_id: ItemId) -> ItemDeleted:
    """Take an item out of search and recommendations. The store keeps it, marked unavailable,
    because past events refer to it."""
    found = svc.store.get_items([item_id]).get(item_id)
    if found is None:
        raise HTTPException(404, detail={"error": "unknown_item", "detail": f"no item {item_id!r}"})
    found.available = False
    svc.store.upsert_items([found], replace=True)
    with svc.search_lock:
        removed = svc.search.get(item_id) is not None
    warning = note_items(svc, [found], removed=[item_id])
    return ItemDeleted(
        item_id=item_id,
        removed_from_search=removed,
        marked_unavailable=True,
        warnings=[warning] if warning else [],
    )


# --- users ----------------------------------------------------------------------------------------


def _report(svc: Services, pseudo: str) -> list[dict[str, Any]]:
    try:  # follow erasures made by other workers now, not at the watcher's next tick
        svc.live.sync()
    except Exception as exc:
        _log.warning("registry sync before a deletion report failed", error=str(exc))
    var_dir = svc.settings.var_dir
    places = deletion_report(
        pseudo,
        store=svc.store,
        registry=svc.registry,
        sessions=svc.sessions,
        cache=svc.cache,
        live=svc.live,
        affinities=svc.affinities,
        journal=svc.journal,
        derived_dirs=derived_dirs(var_dir),
        export_dirs=[var_dir],
        skip=checked_elsewhere(var_dir, store_url=svc.store.url, models_root=svc.registry.root),
    )
    return [p.to_dict() for p in places]


def _verified(places: list[dict[str, Any]]) -> bool:
    return all(p["checked"] and not p["found"] for p in places)


@router.delete(
    "/v1/users/{user_id}",
    response_model=DeletionOut,
    responses={
        **ERRORS,
        503: {"model": DeletionIncompleteOut, "description": "some places failed (named); retry"},
    },
    dependencies=[Admin],
    tags=["users"],
)
def delete_user(svc: Svc, user_id: UserId) -> Any:
    """Erase a shopper everywhere (a tombstone, then events, profile, quarantined records, journal,
    session, cached results, search signals, models in memory and on disk, reports and backups
    under the var directory) and check every place again. The id is cleaned as ingest cleans it, so
    any spelling ingest treats as this shopper erases them. A place that fails is named in
    ``failed`` (503, ``Retry-After``); the others are cleaned, and retrying is safe."""
    started = time.perf_counter()
    pseudo = svc.pseudonymize(user_id)
    svc.erased.add(pseudo)  # refused at the door from now on, in this worker
    var_dir = svc.settings.var_dir
    removed = erase_everywhere(
        pseudo,
        store=svc.store,
        registry=svc.registry,
        sessions=svc.sessions,
        cache=svc.cache,
        live=svc.live,
        affinities=svc.affinities,
        journal=svc.journal,
        derived_dirs=derived_dirs(var_dir),
        export_dirs=[var_dir],
    )
    failed = removed.pop("failed")
    places = _report(svc, pseudo)
    seconds = time.perf_counter() - started
    svc.metrics.deletions.inc()
    svc.metrics.deletion_seconds.observe(seconds)
    body = {
        "user_id": user_id,
        "removed": removed,
        "seconds": round(seconds, 4),
        "verified": not failed and _verified(places),
        "places": places,
        "failed": failed,
    }
    if failed:
        _log.error("deletion incomplete", failed=sorted(failed))
        incomplete = DeletionIncompleteOut(
            **body, hint="the places in `failed` were not cleaned; the rest were: send the request again"
        )
        return JSONResponse(incomplete.model_dump(), status_code=503, headers={"Retry-After": "5"})
    return DeletionOut(**body)


@router.get(
    "/v1/admin/users/{user_id}/deletion-report",
    response_model=DeletionOut,
    responses=ERRORS,
    dependencies=[Admin],
    tags=["admin"],
)
def deletion_check(svc: Svc, user_id: UserId, pseudonym: bool = False) -> DeletionOut:
    """Where this shopper's data is now (every place checked; nothing is changed)."""
    started = time.perf_counter()
    pseudo = user_id if pseudonym else svc.pseudonymize(user_id)
    places = _report(svc, pseudo)
    return DeletionOut(
        user_id=user_id,
        removed={},
        seconds=round(time.perf_counter() - started, 4),
        verified=_verified(places),
        places=places,  # type: ignore[arg-type]
    )


# --- admin ----------------------------------------------------------------------------------------


def _models(svc: Services) -> ModelsOut:
    pointer = svc.registry.pointer()
    loaded = set(svc.live.loaded_versions)
    versions = [
        VersionOut(
            version=i.version,
            model=i.model,
            created_at=i.created_at,
            active=i.version == pointer.active,
            loaded=i.version in loaded,
            metrics=i.metrics,
            data_window=i.data_window,
            evaluation=i.evaluation,
            config=i.config,
            parent=i.parent,
            erasures=i.erasures,
        )
        for i in reversed(svc.registry.list())
    ]
    return ModelsOut(
        active=pointer.active,
        history=list(pointer.history),
        candidate=pointer.candidate.to_dict() if pointer.candidate else None,
        versions=versions,
    )


@router.get(
    "/v1/admin/models", response_model=ModelsOut, responses=ERRORS, dependencies=[Admin], tags=["admin"]
)
def list_models(svc: Svc) -> ModelsOut:
    """Every registered version with its metrics, data window and config; which is active."""
    return _models(svc)


VersionId = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
ADMIN_ERRORS = {**ERRORS, 404: {"model": ErrorOut}, 409: {"model": ErrorOut, "description": "refused"}}


@router.post(
    "/v1/admin/models/{version}/activate",
    response_model=ActivationOut,
    responses=ADMIN_ERRORS,
    dependencies=[Admin],
    tags=["admin"],
)
def activate(svc: Svc, version: VersionId, force: bool = False) -> ActivationOut:
    """Make a version active (checksums verified, loaded, then one reference swap). A version the
    release gate refused needs ``force=true``."""
    started = time.perf_counter()
    previous = svc.registry.active
    svc.live.preload(version)
    release(svc.registry, version, force=force)
    dep = svc.live.sync(force=True)
    svc.metrics.set_active(dep.active.version if dep else None)
    return ActivationOut(
        active=dep.active.version if dep else None,
        previous=previous,
        seconds=round(time.perf_counter() - started, 4),
    )


@router.post(
    "/v1/admin/rollback",
    response_model=ActivationOut,
    responses=ADMIN_ERRORS,
    dependencies=[Admin],
    tags=["admin"],
)
def rollback(svc: Svc) -> ActivationOut:
    """Go back to the previously active version (kept loaded, so this takes milliseconds)."""
    started = time.perf_counter()
    previous = svc.registry.active
    dep = svc.live.rollback()
    svc.metrics.set_active(dep.active.version if dep else None)
    return ActivationOut(
        active=dep.active.version if dep else None,
        previous=previous,
        seconds=round(time.perf_counter() - started, 4),
    )


@router.post(
    "/v1/admin/models/{version}/candidate",
    response_model=ActivationOut,
    responses=ADMIN_ERRORS,
    dependencies=[Admin],
    tags=["admin"],
)
def set_candidate(svc: Svc, version: VersionId, body: CandidateIn) -> ActivationOut:
    """Send live traffic to a version beside the active one: ``shadow`` (scored and compared, never
    shown; see ``shelfwise_shadow_top10_overlap``) or ``canary`` (``percent`` of users answered by it)."""
    started = time.perf_counter()
    dep = svc.live.set_candidate(Candidate(version=version, mode=body.mode, percent=body.percent))
    pointer = svc.registry.pointer()
    return ActivationOut(
        active=dep.active.version if dep else None,
        previous=None,
        seconds=round(time.perf_counter() - started, 4),
        candidate=pointer.candidate.to_dict() if pointer.candidate else None,
    )


@router.delete(
    "/v1/admin/candidate",
    response_model=ActivationOut,
    responses=ADMIN_ERRORS,
    dependencies=[Admin],
    tags=["admin"],
)
def clear_candidate(svc: Svc) -> ActivationOut:
    """Stop shadow or canary traffic."""
    started = time.perf_counter()
    dep = svc.live.set_candidate(None)
    return ActivationOut(
        active=dep.active.version if dep else None,
        previous=None,
        seconds=round(time.perf_counter() - started, 4),
    )


# --- health and metrics ---------------------------------------------------------------------------


@router.get("/healthz", response_model=HealthOut, tags=["health"])
async def healthz(svc: Svc) -> HealthOut:
    """The process is up (and which model version it serves, if any)."""
    dep = svc.live.current
    return HealthOut(status="ok", model_version=dep.active.version if dep else None)


@router.get("/readyz", response_model=HealthOut, responses={503: {"model": HealthOut}}, tags=["health"])
def readyz(svc: Svc, caller: CallerDep, response: Response) -> HealthOut:
    """Ready to serve: a model is active and loaded and the store answers. Why not (the error
    text, which can name hosts and files) is shown to an admin key only, and always logged."""
    detail: dict[str, Any] = {"search_items": len(svc.search) if svc.search is not None else 0}
    admin = caller.role is Role.ADMIN
    ok = True
    try:
        svc.store.get_user("__readyz__")
        detail["store"] = "ok"
    except Exception as exc:
        _log.warning("readiness: the store does not answer", error=repr(exc))
        ok, detail["store"] = False, f"error: {exc}" if admin else "error: the store does not answer"
    dep = svc.live.current
    if dep is None:
        ok = False
        why = svc.live.last_error or "no active version"
        detail["model"] = why if admin else "no active version"
    if not ok:
        response.status_code = 503
    return HealthOut(
        status="ready" if ok else "not ready",
        model_version=dep.active.version if dep else None,
        detail=detail,
    )


@router.get(
    "/metrics", tags=["health"], response_class=Response, responses={200: {"content": {"text/plain": {}}}}
)
def metrics(svc: Svc) -> Response:
    """Prometheus metrics."""
    dep = svc.live.current
    svc.metrics.set_active(dep.active.version if dep else None)
    return Response(generate_latest(svc.metrics.registry), media_type=CONTENT_TYPE_LATEST)
