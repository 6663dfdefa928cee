"""Recommendations: a shopper's own (``/v1/users/{user_id}/recommendations``, with a credential),
an anonymous visitor's (``/v1/recommendations``), items like or bought with an item, and what goes
with a cart. The answers come from ``serving.recommending``; this file only shapes them."""

from __future__ import annotations

from math import isfinite
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, HTTPException, Query, Response
from pydantic import BaseModel, Field
from pydantic_core import to_json

from shelfwise.api.auth import CallerDep, ShopperCaller, check_shopper
from shelfwise.api.fastpath import Bound, bind
from shelfwise.api.routes.deps import (
    PERSONAL_ERRORS,
    READ_ERRORS,
    Brand,
    Category,
    ItemId,
    K,
    Price,
    Svc,
    UserId,
    deployment,
    filters_of,
    same_shopper,
    shopper,
)
from shelfwise.api.schemas import (
    CartIn,
    ErrorOut,
    RecommendationsOut,
    Scenario,
)
from shelfwise.evaluation.experiment_service import Assignment
from shelfwise.recommend.base import Filters
from shelfwise.serving.attribution import session_of
from shelfwise.serving.container import Services
from shelfwise.serving.deployment import Deployment
from shelfwise.serving.exploring import Explored
from shelfwise.serving.merchandised import PLACEMENT_OF, interleaved, merchandise, pool_size
from shelfwise.serving.recommending import Answer
from shelfwise.serving.recommending import Request as RecRequest
from shelfwise.store.journal import store_unavailable

router = APIRouter(route_class=Bound)


def _json(body: dict[str, Any]) -> Response:
    """The body of a ``RecommendationsOut``, serialised once by pydantic's Rust encoder. It is built
    from our own values (``_out``), so validating it again would only cost time (~0.2 ms a request
    under load); ``response_model`` still documents it, and the schema tests check answers against it."""
    return Response(to_json(body), media_type="application/json")


# an item the serving index does not hold (a model's item missing from the catalogue)
_NO_FACTS = dict.fromkeys(("title", "category", "brand", "price", "currency", "available"))


def _out(svc: Services, answer: Answer, *, cached: bool = False, **extra: Any) -> dict[str, Any]:
    """A ``RecommendationsOut`` as a dict: each item with its reason and catalogue facts."""
    items = []
    get = svc.search.get if svc.search is not None else None
    for item_id, score, reason in zip(answer.items, answer.scores, answer.reasons, strict=True):
        facts = get(item_id) if get is not None else None
        score = float(score)
        row = {
            "item_id": item_id,
            "score": score if isfinite(score) else 0.0,
            "reason": reason,
        }
        if facts is None:
            row.update(_NO_FACTS)
        else:
            row["title"] = facts.title
            row["category"] = facts.category
            row["brand"] = facts.brand
            row["price"] = facts.price
            row["currency"] = facts.currency
            row["available"] = facts.available
        items.append(row)
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
        "placement": answer.placement,
        "fallback": answer.fallback,
        "notes": answer.notes,
    }


def _shaped(svc: Services, answer: Answer, placement: str, k: int) -> tuple[Answer, Explored | None]:
    """The answer after its placement's merchandising rules (pins, blocks, boosts…) and its
    exploration slot (when it has one), cut to ``k``; and what the slot did."""
    get = svc.search.get if svc.search is not None else None
    name = PLACEMENT_OF.get(placement, placement)
    wide = k + svc.explorer.extra(name)  # the slot's pool may reach below the list
    answer = merchandise(svc.merch, answer, placement=name, k=wide, get=get)
    return svc.explorer.explore(answer, placement=name, k=k)


def _shown(
    svc: Services, answer: Answer, other: Answer | None, arm: Assignment | None, placement: str, k: int
) -> tuple[Answer, Explored | None, dict[str, Any] | None]:
    """The answer as shown, what its exploration slot did, and its slot credits: with ``other`` (an
    interleaving experiment's arm B answered too) the team draft of both (``serving.merchandised.
    interleaved``), else the answer after the placement's rules and exploration slot (``_shaped``)."""
    if arm is not None and other is not None:
        get = svc.search.get if svc.search is not None else None
        shown, credits = interleaved(svc.merch, get, answer, other, placement, k, arm)
        return shown, None, credits
    shaped, explored = _shaped(svc, answer, placement, k)
    return shaped, explored, None


async def _recommend(svc: Services, dep: Deployment, req: RecRequest) -> tuple[Answer, bool]:
    if svc.recommending.in_process:
        return await svc.recommending.recommend_async(dep, req)
    # Redis round trips block: keep them off the event loop
    return await anyio.to_thread.run_sync(svc.recommending.recommend, dep, req)


def _pool(svc: Services, placement: str, k: int) -> int:
    name = PLACEMENT_OF.get(placement, placement)
    return pool_size(svc.merch, name, k + svc.explorer.extra(name))


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
    session_id: str | None = Field(
        None, min_length=1, max_length=256, description="the visit's session (a guest's answers cite it)"
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
    # async: with in-process state a cached answer never touches the model pool. Every step that may
    # read the store (the shopper's links, the experiment list, consent, merchandising rules: each
    # re-read when its poll is due) runs in AnyIO's threads, never on the event loop: a store that
    # hangs must not freeze /healthz and every cached answer of this worker with it
    k, scenario, category, item_id = query.k, query.scenario, query.category, query.item_id

    def prepare() -> tuple[Deployment, Any, str | None, bool, str, RecRequest]:
        dep = deployment(svc)
        pseudo = shopper(svc, user_id)
        dep, arm = svc.feedback.route(dep, placement=scenario, unit=pseudo)
        # a shopper who turned personalisation off gets what anyone gets (their history is not read)
        consent_note = "not personalised: the shopper turned personalisation off"
        try:
            personal = svc.consent.personalise(pseudo)
        except Exception as exc:
            if not store_unavailable(exc):
                raise
            # consent unknown while the store is down: the anonymous answer, never a personal one
            personal, consent_note = (
                False,
                "not personalised: the store did not answer (these are the results for anyone)",
            )
        req = RecRequest(
            user_id=pseudo if personal else None,
            k=_pool(svc, scenario, k),
            scenario=scenario,
            filters=filters_of(category, query.brand, query.price_min, query.price_max),
            context_items=[item_id] if item_id else [],
        )
        return dep, arm, pseudo, personal, consent_note, req

    dep, arm, pseudo, personal, consent_note, req = await anyio.to_thread.run_sync(prepare)
    answer, cached = await _recommend(svc, dep, req)
    partner = svc.feedback.partner(dep, arm)
    other = (await _recommend(svc, partner, req))[0] if partner is not None else None

    def finish() -> Response:
        shaped, explored, credits = _shown(svc, answer, other, arm, scenario, k)
        body = _out(svc, shaped, cached=cached, user_id=user_id, scenario=scenario)
        if not personal:
            body["notes"] = [*body.get("notes", []), consent_note]
        return _json(
            svc.feedback.tag(
                body,
                placement=scenario,
                user_id=pseudo,
                session_id=query.session_id,
                arm=arm,
                explored=explored,
                interleaving=credits,
            )
        )

    return await anyio.to_thread.run_sync(finish)


def _known_item(svc: Services, dep: Deployment, item_id: str) -> None:
    in_catalogue = svc.search is not None and svc.search.get(item_id) is not None
    if not in_catalogue and item_id not in dep.active.recommender.item_map.index:
        raise HTTPException(404, detail={"error": "unknown_item", "detail": f"no item {item_id!r}"})


def _item_answer(svc: Services, item_id: str, k: int, filters: Filters | None, *, bundles: bool) -> Response:
    """Similar items (or, with ``bundles``, items bought together) for a known item."""
    dep = deployment(svc)
    _known_item(svc, dep, item_id)
    placement = "bought_together" if bundles else "similar"
    answer = svc.recommending.similar(dep, item_id, _pool(svc, placement, k), filters, bundles=bundles)
    answer, explored = _shaped(svc, answer, placement, k)
    # logged under the placement whose rules shaped it (similar items: product; bundles: cart)
    out = _out(svc, answer, item_id=item_id)
    return _json(svc.feedback.tag(out, placement=PLACEMENT_OF[placement], explored=explored))


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
    return _item_answer(svc, item_id, k, filters_of(category, brand, price_min, price_max), bundles=False)


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
    return _item_answer(svc, item_id, k, filters_of(category, brand, price_min, price_max), bundles=True)


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
    pseudo = shopper(svc, body.user_id) if body.user_id else None
    dep, arm = svc.feedback.route(deployment(svc), placement="cart", unit=pseudo)
    req = RecRequest(
        user_id=pseudo,
        k=_pool(svc, "cart", body.k),
        scenario="cart",
        filters=filters_of(body.category, body.brand, body.price_min, body.price_max),
        context_items=list(dict.fromkeys(body.items)),
    )
    answer, cached = svc.recommending.recommend(dep, req)
    partner = svc.feedback.partner(dep, arm)
    other = svc.recommending.recommend(partner, req)[0] if partner is not None else None
    answer, explored, credits = _shown(svc, answer, other, arm, "cart", body.k)
    out = _out(svc, answer, cached=cached, user_id=body.user_id, scenario="cart")
    return _json(
        svc.feedback.tag(
            out, placement="cart", user_id=pseudo, arm=arm, explored=explored, interleaving=credits
        )
    )


@router.get(
    "/v1/recommendations",
    response_model=RecommendationsOut,
    responses=READ_ERRORS,
    tags=["recommendations"],
)
async def anonymous_recommendations(svc: Svc, query: Annotated[RecommendationsQuery, Query()]) -> Response:
    """Top items for a visitor nobody knows: popular overall, popular in ``category``, or (with
    ``item_id``) around the item on the page. No credential needed; nothing personal in it."""
    guest = session_of(query.session_id)

    def prepare() -> tuple[Deployment, Any, RecRequest]:  # the experiment list and rules: store reads
        dep, arm = svc.feedback.route(deployment(svc), placement=query.scenario, unit=guest)
        req = RecRequest(
            user_id=None,
            k=_pool(svc, query.scenario, query.k),
            scenario=query.scenario,
            filters=filters_of(query.category, query.brand, query.price_min, query.price_max),
            context_items=[query.item_id] if query.item_id else [],
        )
        return dep, arm, req

    dep, arm, req = await anyio.to_thread.run_sync(prepare)
    answer, cached = await _recommend(svc, dep, req)
    partner = svc.feedback.partner(dep, arm)
    other = (await _recommend(svc, partner, req))[0] if partner is not None else None

    def finish() -> Response:
        shaped, explored, credits = _shown(svc, answer, other, arm, query.scenario, query.k)
        body = _out(svc, shaped, cached=cached, user_id=None, scenario=query.scenario)
        return _json(
            svc.feedback.tag(
                body,
                placement=query.scenario,
                session_id=guest,
                arm=arm,
                explored=explored,
                interleaving=credits,
            )
        )

    return await anyio.to_thread.run_sync(finish)


# the same validation without FastAPI's per-request reflection (``api.fastpath``)
bind(user_recommendations, RecommendationsQuery, model_arg="query", path={"user_id": (1, 256)})
bind(anonymous_recommendations, RecommendationsQuery, model_arg="query")
