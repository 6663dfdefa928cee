"""Search and autocomplete over the serving process's index (``serving.search_service``)."""

from __future__ import annotations

import hashlib
from typing import Annotated, Any, Literal, NamedTuple

import anyio.to_thread
import numpy as np
from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field

from shelfwise.api.auth import CallerDep, check_shopper
from shelfwise.api.fastpath import Bound, bind
from shelfwise.api.openapi import invalid
from shelfwise.api.routes.deps import (
    PERSONAL_ERRORS,
    READ_ERRORS,
    Price,
    Svc,
    same_shopper,
    shopper,
)
from shelfwise.api.schemas import (
    NOT_BLANK,
    AutocompleteOut,
    SearchOut,
)
from shelfwise.core.logging import get_logger
from shelfwise.evaluation.experiment_service import INTERLEAVE_EXAM_SLOTS, Assignment
from shelfwise.evaluation.experiments import interleave
from shelfwise.merchandising.engine import Candidate
from shelfwise.search.facets import ATTRIBUTE_FACETS
from shelfwise.serving.attribution import logged_version, session_of
from shelfwise.serving.container import Services
from shelfwise.serving.merchandised import POOL, apply_placement, has_rules
from shelfwise.store.journal import store_unavailable

router = APIRouter(route_class=Bound)
log = get_logger(__name__)
# results a search interleaving experiment team-drafts (~5 ms of propensities): as deep as an
# experiment's examination curve reaches
INTERLEAVE_DEPTH = INTERLEAVE_EXAM_SLOTS
# name:value with a known facet name and a value that is not blank, as the route reads it (the
# name may have spaces or tabs around it; the value needs one character strip() keeps)
ATTRIBUTE_PAIR = rf"^[ \t]*(?:{'|'.join(ATTRIBUTE_FACETS)})[ \t]*:.*{NOT_BLANK}"


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
    attribute: Annotated[
        list[Annotated[str, Field(pattern=ATTRIBUTE_PAIR)]] | None,
        Query(max_length=20, description="annotated attribute facet to keep, as name:value (colour:red)"),
    ] = None,
    sort: Literal["relevance", "price_asc", "price_desc", "popularity"] = "relevance",
    session_id: Annotated[
        str | None,
        Query(min_length=1, max_length=256, description="the visit's session (a guest's answers cite it)"),
    ] = None,
) -> SearchOut:
    """Keyword search with query understanding, filters, facets and pages; ``user_id`` re-ranks
    matching results by the shopper's brands and price range (and needs a ``read`` key or that
    shopper's token: the reasons name their brands); without it, anyone may search."""
    from shelfwise.search.engine import Filters as SearchFilters

    if user_id is not None:
        check_shopper(caller, user_id, same_shopper(svc))

    if not q.strip():
        raise HTTPException(422, detail=invalid("query.q", "empty"))
    attributes: dict[str, list[str]] = {}
    for i, pair in enumerate(attribute or []):
        name, sep, value = pair.partition(":")
        if not sep or not name.strip() or not value.strip():
            raise HTTPException(
                422, detail=invalid(f"query.attribute.{i}", "expected name:value, e.g. colour:red")
            )
        if name.strip() not in ATTRIBUTE_FACETS:
            raise HTTPException(
                422,
                detail=invalid(
                    f"query.attribute.{i}",
                    f"no attribute facet {name.strip()!r}; facets: {', '.join(ATTRIBUTE_FACETS)}",
                ),
            )
        attributes.setdefault(name.strip(), []).append(value.strip())
    filters = SearchFilters(  # price_min > price_max: an empty range, so no hits
        price_min=price_min,
        price_max=price_max,
        brands=[b for b in (brand or []) if b],
        category=category,
        available=available,
        attributes=attributes,
    )
    user, notice = None, None
    pseudo = shopper(svc, user_id) if user_id else None
    if pseudo is not None:  # reads the shopper's events from the store: off the event loop
        try:
            with anyio.fail_after(svc.settings.store_request_timeout):
                user = await anyio.to_thread.run_sync(_affinity, svc, pseudo, abandon_on_cancel=True)
        except Exception as exc:
            if not (isinstance(exc, TimeoutError) or store_unavailable(exc)):
                raise
            # the anonymous answer beats none; the thread left behind ends with the statement timeout
            notice = "not personalised: the store did not answer in time (these are the results for anyone)"
            svc.metrics.fallbacks.labels("search_personal", "store_unavailable").inc()
    # the experiment list, the search settings and the placement's rules are re-read from the store
    # when their polls are due: the whole answer runs in one of AnyIO's threads (a hybrid query's
    # encoding was there already), so a store that hangs never freezes this worker's event loop
    return await anyio.to_thread.run_sync(
        _answer, svc, pseudo, user, notice, q, page, size, filters, sort, session_id
    )


def _answer(
    svc: Services,
    pseudo: str | None,
    user: Any,
    notice: str | None,
    q: str,
    page: int,
    size: int,
    filters: Any,
    sort: Any,
    session_id: str | None,
) -> SearchOut:
    """The search answer (blocking: may read the store)."""
    unit = pseudo or session_of(session_id)
    side, other, arm = _arm_of(svc, unit)
    # the shop's search management (synonyms, stop words, redirects, query rules), re-read from the
    # store when it changes: a save holds without a restart
    managed, _ = svc.merch.search_settings()
    decision = managed.for_query(q)
    if decision.redirect is not None:
        return SearchOut(
            model_version=side.version,
            mode=side.mode,
            query=q,
            total=0,
            page=page,
            size=size,
            hits=[],
            facets={},
            filters={},
            redirect=decision.redirect,
            notice=f"this query is redirected ({'; '.join(decision.matched)})",
            took_ms=0.0,
        )
    rewritten = managed.rewrite(q)
    text = rewritten.text if rewritten.dropped and rewritten.text else q
    depth = page * size
    if has_rules(svc.merch, "search", decision.rules):
        depth = max(depth, POOL)

    def run(s: _Side) -> Any:
        with s.lock:
            return s.engine.search(
                text,
                k=depth,
                mode=s.mode,
                filters=filters,
                sort=sort,
                user=user,
                expansions=rewritten.expansions,
            )

    result = run(side)
    hits, placed_notes, fallback = _placed(svc, result, user, page * size, decision.rules)
    notes = list(placed_notes or [])
    credits = None
    if other is not None and arm is not None:  # an interleaving experiment: B answers too
        hits_b, notes_b, fallback_b = _placed(svc, run(other), user, page * size, decision.rules)
        hits, credits = _interleaved(hits, hits_b, page * size, arm, unit, q, side, other)
        notes += [n for n in notes_b or [] if n not in notes]
        notes.append(
            f"interleaving experiment {arm.experiment}: a team draft of index version {side.version} "
            f"({side.mode}, A) and {other.version} ({other.mode}, B)"
        )
        fallback = fallback or fallback_b
        first = (page - 1) * size
        credits = {
            "team": credits["team"][first : first + size],
            "ips": credits["ips"][first : first + size],
            "versions": credits["versions"],
        }
    if decision.matched and placed_notes is not None:
        notes.append("query rules: " + ", ".join(decision.matched))
    building = svc.search_build
    if building is not None and building.running and side.version == svc.search_version:
        notes.append(building.status())
    out = SearchOut(
        model_version=side.version,
        mode=side.mode,
        query=q,
        showing_results_for=result.corrected,
        total=result.total,
        page=page,
        size=size,
        hits=hits[(page - 1) * size : page * size],  # type: ignore[arg-type]
        facets=result.facets,
        filters=result.applied_filters,
        personalised=user is not None,
        notice=notice,
        notes=notes,
        fallback=fallback,
        synonyms=rewritten.expansions,
        took_ms=round(result.took_ms, 3),
    )
    out.search_id = svc.feedback.served(
        "search",
        placement="search",
        items=[h.item_id for h in out.hits],
        version=logged_version(side.version, credits),
        user_id=pseudo,
        session_id=session_id,
        query=q,
        total=result.total or len(out.hits),  # a query rule's pins are results too
        arm=arm,
        interleaving=credits,
    )
    out.experiment, out.arm = (arm.experiment, arm.arm) if arm else (None, None)
    return out


def _placed(
    svc: Services, result: Any, user: Any, k: int, rules: Any
) -> tuple[list[dict[str, Any]], list[str] | None, bool]:
    """One engine's hits as the answer shows them, after the search placement's merchandising
    rules and the query's rules (pins, boosts, buries); the rules' notes (None: no rule applies
    here); whether they fell back."""
    hits = [_hit(hit.item, hit.score, _reason(hit, user)) for hit in result.hits]
    placed = apply_placement(
        svc.merch,
        "search",
        [Candidate(h["item_id"], h["score"], [h["reason"]]) for h in hits],
        k=k,
        get=svc.search.get,
        extra=rules,
    )
    if placed is None:
        return hits, None, False
    by_id = {h["item_id"]: h for h in hits}
    shaped = []
    for p in placed.items:
        row = by_id.get(p.item_id)
        if row is None:  # a pinned item the query did not match
            item = svc.search.get(p.item_id)
            if item is None:
                continue
            row = _hit(item, p.score, "")
        shaped.append({**row, "reason": "; ".join(r for r in p.reasons if r)})
    return shaped, list(placed.notes), bool(placed.fallback)


def _interleaved(
    a: list[dict[str, Any]],
    b: list[dict[str, Any]],
    k: int,
    arm: Assignment,
    unit: str | None,
    q: str,
    side: _Side,
    other: _Side,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A team draft of two arms' hits (each after the rules) and each slot's credits
    (``evaluation.experiments.interleave``). The coins are drawn from the experiment, the shopper and
    the query: the same shopper asking again (or turning the page) sees the same list, and over
    shoppers the coins are fair, which is all the credits' propensities assume. Past the first
    ``INTERLEAVE_DEPTH`` results (the propensities' cost grows with the depth) A's remaining hits
    follow in A's order, credited to neither arm."""
    seed = int.from_bytes(
        hashlib.blake2b(f"{arm.experiment}\x00{unit}\x00{q}".encode(), digest_size=8).digest(), "big"
    )
    ids_a = [h["item_id"] for h in a[:k]]
    depth = min(k, INTERLEAVE_DEPTH)
    mixed = interleave(
        ids_a[:depth],
        [h["item_id"] for h in b[:depth]],
        depth,
        np.random.default_rng(seed),
        arm.examination,
    )
    shown = list(mixed.items)
    seen = set(shown)
    rest = [i for i in ids_a if i not in seen][: max(0, k - len(shown))]  # past the draft: A's order
    rows = {h["item_id"]: h for h in b}
    rows.update({h["item_id"]: h for h in a})
    credits = {
        "team": [*mixed.team, *[0] * len(rest)],
        "ips": [*mixed.ips, *[0.0] * len(rest)],
        "versions": [f"{s.version}:{s.mode}" for s in (side, other)],
    }
    return [rows[i] for i in shown + rest], credits


class _Side(NamedTuple):
    """What answers one side of a search: an engine, its lock, its index version and mode."""

    engine: Any
    lock: Any
    version: str
    mode: str


def _arm_of(svc: Services, unit: str | None) -> tuple[_Side, _Side | None, Assignment | None]:
    """What answers ``unit``, and its experiment arm on the search placement: an arm's index version
    (loaded in the background on first use: meanwhile the usual answer, no arm) and mode (one its
    index cannot serve: the usual answer); for an interleaving experiment arm B's side too (both
    must be servable, else the usual answer)."""
    usual = _Side(svc.search, svc.search_lock, svc.search_version, svc.search_mode)
    try:
        arm = svc.feedback.experiments.assignment("search", unit)
    except Exception as exc:  # the store is down: serve as if no experiment ran
        log.warning("search experiment assignment failed; serving without", error=repr(exc))
        return usual, None, None
    if arm is None:
        return usual, None, None
    side = _side_of(svc, arm.index_version, arm.search_mode, arm.arm)
    if side is None:
        return usual, None, None
    if arm.kind != "interleaving":
        return side, None, arm
    other = _side_of(svc, arm.partner_index_version, arm.partner_search_mode, arm.arm)
    if other is None:
        return usual, None, None
    return side, other, arm


def _side_of(svc: Services, index_version: str | None, search_mode: str | None, label: str) -> _Side | None:
    """The side serving an index version (None: the active one) in a mode (None: the version's own);
    None while the version loads or when its index cannot serve the mode."""
    engine, lock, version, mode = svc.search, svc.search_lock, svc.search_version, svc.search_mode
    if index_version is not None and index_version != svc.search_version:
        loaded = svc.search_arms.engine(index_version)
        if loaded is None:
            return None
        engine, info, lock = loaded
        version, mode = index_version, info.mode
    if search_mode is not None:
        dense = getattr(getattr(engine, "config", None), "dense", False)
        if (search_mode in ("dense", "hybrid", "rrf") and not dense) or (
            search_mode == "ltr" and getattr(engine, "ranker", None) is None
        ):
            log.warning("search arm's mode not served by its index", arm=label, mode=search_mode)
            return None
        mode = search_mode
    return _Side(engine, lock, version, mode)


def _reason(hit: Any, user: Any) -> str:
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
    return reason


def _hit(it: Any, score: float, reason: str) -> dict[str, Any]:
    return {
        "item_id": it.item_id,
        "score": score,
        "reason": reason,
        "title": it.title,
        "category": it.category,
        "brand": it.brand,
        "price": it.price,
        "currency": it.currency,
        "available": it.available,
        "attributes": {k: v for k, v in it.attributes.items() if isinstance(v, str | int | float)},
    }


class SearchParams(BaseModel):
    """The query of ``GET /v1/search`` with the constraints of its signature, for its binder
    (``api.fastpath``): a request this model accepts is one FastAPI accepts, with the same values."""

    q: str = Field(min_length=1, max_length=500, pattern=NOT_BLANK)
    page: int = Field(1, ge=1, le=100)
    size: int = Field(10, ge=1, le=100)
    user_id: str | None = Field(None, min_length=1, max_length=256)
    category: str | None = Field(None, min_length=1, max_length=512)
    brand: list[str] | None = Field(None, max_length=20)
    price_min: float | None = Field(None, ge=0, le=1e9)
    price_max: float | None = Field(None, ge=0, le=1e9)
    available: bool | None = None
    attribute: list[Annotated[str, Field(pattern=ATTRIBUTE_PAIR)]] | None = Field(None, max_length=20)
    sort: Literal["relevance", "price_asc", "price_desc", "popularity"] = "relevance"
    session_id: str | None = Field(None, min_length=1, max_length=256)


bind(search, SearchParams, lists=("brand", "attribute"))


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
