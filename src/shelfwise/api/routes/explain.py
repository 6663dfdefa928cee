"""Why a shopper was served what they were served: ``GET /v1/admin/explain`` (admin only).

The route asks for the answer exactly as ``GET /v1/users/{user_id}/recommendations`` would serve it
(same placement rules, consent, live session; a cached answer is the one served), then explains it
with ``shelfwise.trust.explaining.explain_served``: per item its position, score and reason, its
neighbours in the list, and the full attribution — TreeSHAP for the hybrid ranker, each history
item's share of the score for item-based models (exact for item-KNN and EASE). Nothing is logged as
an impression: an admin looking is not the shopper being shown.
"""

from __future__ import annotations

from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field

from shelfwise.api.auth import Admin
from shelfwise.api.routes.deps import ERRORS, Svc, deployment, shopper
from shelfwise.api.routes.recommendations import _pool, _shaped
from shelfwise.api.schemas import ErrorOut, Scenario
from shelfwise.recommend.base import Recommendation
from shelfwise.serving.container import Services
from shelfwise.serving.recommending import Request as RecRequest
from shelfwise.store.journal import store_unavailable
from shelfwise.trust.explaining import explain_served

router = APIRouter()


class ExplainOut(BaseModel):
    user_id: str = Field(description="the shop's user id asked about")
    model_version: str
    role: str = Field(description="active or canary: the version that answered")
    scenario: str
    source: str = Field(description="personalised, session, popular_category, popular …")
    personalised: bool
    method: str = Field(description="treeshap (hybrid), history (item-based shares) or none")
    history_items: int = Field(description="items the model folded in for the shopper")
    served: list[dict[str, Any]] = Field(description="the served list: item, score, reason")
    items: list[dict[str, Any]] = Field(description="per explained item: position and attribution")
    notes: list[str] = []


def _explain(svc: Services, user_id: str, item_id: str | None, k: int, scenario: str) -> dict[str, Any]:
    dep = deployment(svc)
    model = dep.active.recommender
    pseudo = shopper(svc, user_id)
    if pseudo is None:
        raise HTTPException(404, detail={"error": "unknown_user", "detail": f"user {user_id!r} was erased"})
    known = pseudo in model.state.user_map.index
    session = svc.sessions.recent(pseudo)
    if not known and not session:
        raise HTTPException(
            404,
            detail={
                "error": "unknown_user",
                "detail": f"the active model has no history and no live session for user {user_id!r}",
            },
        )
    if item_id is not None:
        in_catalogue = svc.search is not None and svc.search.get(item_id) is not None
        if not in_catalogue and item_id not in model.item_map.index:
            raise HTTPException(404, detail={"error": "unknown_item", "detail": f"no item {item_id!r}"})
    notes: list[str] = []
    try:
        personal = svc.consent.personalise(pseudo)
    except Exception as exc:
        if not store_unavailable(exc):
            raise
        personal = False
        notes.append("not personalised: the store did not answer (consent unknown)")
    if not personal and not notes:
        notes.append("not personalised: the shopper turned personalisation off (nothing of theirs is read)")
    dep, _arm = svc.feedback.route(dep, placement=scenario, unit=pseudo)
    req = RecRequest(user_id=pseudo if personal else None, k=_pool(svc, scenario, k), scenario=scenario)
    answer, cached = svc.recommending.recommend(dep, req)
    answer, _explored = _shaped(svc, answer, scenario, k)  # what the slot did is not explained here
    loaded, _role = dep.route(pseudo)
    history: list[str] = []
    if personal and answer.source in ("personalised", "session"):
        st = loaded.recommender.state
        row = st.user_map.index.get(pseudo)
        if row is not None and answer.source == "personalised":
            history = list(st.item_map.to_external(st.history[row].indices))
        history += [i for i in svc.sessions.recent(pseudo) if i not in set(history)]
    scores = [float(s) for s in answer.scores]
    served = Recommendation(pseudo, list(answer.items), scores, list(answer.reasons))
    out = explain_served(loaded.recommender, served, source=answer.source, history=history, item=item_id)
    if item_id is not None and item_id not in answer.items:
        notes.append(f"item {item_id!r} is not in the served top {k}: its model rank says how far it fell")
    if answer.placement and (answer.notes or answer.fallback):
        notes += list(answer.notes)
    if cached:
        notes.append("the served answer came from the result cache")
    return {
        "user_id": user_id,
        "model_version": answer.model_version,
        "role": answer.role,
        "scenario": scenario,
        "source": answer.source,
        "personalised": bool(personal and answer.source in ("personalised", "session")),
        "method": out["method"],
        "history_items": out["history_items"],
        "served": [
            {"item_id": i, "score": float(s), "reason": r}
            for i, s, r in zip(answer.items, answer.scores, answer.reasons, strict=True)
        ],
        "items": out["items"],
        "notes": notes,
    }


@router.get(
    "/v1/admin/explain",
    response_model=ExplainOut,
    responses={
        **ERRORS,
        404: {"model": ErrorOut, "description": "unknown user or item"},
        503: {"model": ErrorOut, "description": "no model active yet"},
    },
    dependencies=[Admin],
    tags=["admin"],
)
async def explain(
    svc: Svc,
    user_id: Annotated[str, Query(min_length=1, max_length=256, description="the shop's user id")],
    item_id: Annotated[
        str | None, Query(min_length=1, max_length=256, description="explain this item (default: all served)")
    ] = None,
    k: Annotated[int, Query(ge=1, le=100, description="the served list's length")] = 10,
    scenario: Annotated[Scenario, Query(description="the placement asking")] = "home",
) -> dict[str, Any]:
    """Why this shopper's answer holds each item where it does: the served list (after the
    placement's rules), and per item its position, neighbours, reason and full attribution."""
    return await anyio.to_thread.run_sync(_explain, svc, user_id, item_id, k, scenario)
