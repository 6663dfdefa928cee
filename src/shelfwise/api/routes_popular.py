"""What anyone may ask for without naming a shopper: recommendations for an anonymous visitor
(popular overall or in a category, or around the item on the page). A shopper's own answers are
``GET /v1/users/{user_id}/recommendations`` and need a credential."""

from __future__ import annotations

from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Query, Response

from shelfwise.api.recommending import Request as RecRequest
from shelfwise.api.routes import READ_ERRORS, RecommendationsQuery, Svc, _deployment, _filters, _json, _out
from shelfwise.api.schemas import RecommendationsOut

router = APIRouter()


@router.get(
    "/v1/recommendations",
    response_model=RecommendationsOut,
    responses=READ_ERRORS,
    tags=["recommendations"],
)
async def anonymous_recommendations(svc: Svc, query: Annotated[RecommendationsQuery, Query()]) -> Response:
    """Top items for a visitor nobody knows: popular overall, popular in ``category``, or (with
    ``item_id``) around the item on the page. No credential needed; nothing personal in it."""
    dep = _deployment(svc)
    req = RecRequest(
        user_id=None,
        k=query.k,
        scenario=query.scenario,
        filters=_filters(query.category, query.brand, query.price_min, query.price_max),
        context_items=[query.item_id] if query.item_id else [],
    )
    if svc.recommending.in_process:
        answer, cached = await svc.recommending.recommend_async(dep, req)
    else:
        answer, cached = await anyio.to_thread.run_sync(svc.recommending.recommend, dep, req)
    return _json(_out(svc, answer, cached=cached, user_id=None, scenario=query.scenario))
