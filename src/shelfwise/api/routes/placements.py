"""Merchandising through the API: placements (where a list is shown, what fills it, which rules
shape it) and the shop's search management (synonyms, redirects, stop words, query rules).

Reading needs a ``read`` key, saving an ``admin`` one. Every save is a new version (the old ones
are kept, ``…/history``, ``…/rollback``), and holds on every worker's next request within
``merch_refresh_seconds``. A placement that does not exist is a 404; a bad rule a 422 naming the
field (``body.rules.0.position``), a rule for an unknown item, or two promotions that overlap."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, HTTPException, Path, Query
from pydantic import BaseModel, Field

from shelfwise.api.auth import Admin, CallerDep, Read
from shelfwise.api.openapi import documented_body, invalid
from shelfwise.api.routes.deps import ERRORS, Svc
from shelfwise.api.schemas import ErrorOut
from shelfwise.api.security import Caller
from shelfwise.merchandising.placements import NAME_PATTERN, Placement, PlacementNotFound
from shelfwise.merchandising.rules import RuleError, RuleSet
from shelfwise.merchandising.search_rules import SearchSettings

router = APIRouter()

Name = Annotated[
    str, Path(min_length=1, max_length=64, pattern=NAME_PATTERN, description="placement name: home, search…")
]
WITH_404: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    404: {"model": ErrorOut, "description": "no placement of that name (or no such version)"},
}
SearchPart = Literal["synonyms", "redirects", "stop_words", "query_rules"]
SEARCH_PARTS: tuple[SearchPart, ...] = ("synonyms", "redirects", "stop_words", "query_rules")
# The bodies below are read as plain JSON and validated by the merchandising models themselves (a 422
# names ``rules[0].position``); the document states those models' schemas (``documented_body``).
# What the models refuse that JSON Schema cannot state (fields compared with each other or with the
# catalogue): said in each body's description, and answered with the documented 422.
_RULES_PROSE = (
    "two pins at one position, a promotion whose end is not after its start, two promotions live at "
    "the same time on the same items, attribute value or slot, a boost or bury attribute or value of "
    "spaces only, a rule naming an item the catalogue lacks"
)
PLACEMENT_BODY = documented_body(
    Placement,
    drop=("name",),
    description="source, model, k, candidates, filters, rules… (the name is the path's; a `name` sent "
    "here must equal it). Also refused with a 422: candidates below k, an exploration slot beyond k, "
    f"price_min above price_max, and in the rules: {_RULES_PROSE}.",
)
RULES_BODY = documented_body(
    RuleSet, description=f'{{"rules": [{{"kind": "pin", …}}, …]}}. Also refused with a 422: {_RULES_PROSE}.'
)
_PARTS_PROSE = {
    "synonyms": "a synonym whose terms are all the same once lower-cased and spaced alike, a term of "
    "spaces only",
    "redirects": "two redirects for the same query (lower-cased and spaced alike), a query of spaces only",
    "stop_words": "a stop word of spaces only",
    "query_rules": f"a query of spaces only; in a query rule's rules: {_RULES_PROSE}",
}
SETTINGS_BODY = documented_body(
    SearchSettings,
    description="the whole document (parts left out become empty). Also refused with a 422: "
    + "; ".join(p for p in _PARTS_PROSE.values() if p)
    + ".",
)


class PlacementOut(BaseModel):
    name: str
    version: int = Field(description="0: the standard default, never saved")
    saved_at: int | None = None
    author: str | None = None
    description: str = ""
    source: str
    model: str
    retriever: str | None = None
    k: int
    candidates: int
    filters: dict[str, Any]
    rules: dict[str, Any]
    exploration: dict[str, Any] | None = None


class PlacementsOut(BaseModel):
    placements: list[PlacementOut]


class HistoryOut(BaseModel):
    name: str
    versions: list[PlacementOut]


class RollbackIn(BaseModel):
    version: int = Field(ge=1, le=2**31 - 1, description="the version to make current again")


class SearchSettingsOut(BaseModel):
    version: int = Field(description="0: nothing saved yet")
    synonyms: list[dict[str, Any]]
    redirects: list[dict[str, Any]]
    stop_words: list[str]
    query_rules: list[dict[str, Any]]


def _unprocessable(exc: RuleError, prefix: str = "body") -> HTTPException:
    field = f"{prefix}.{exc.field}" if exc.field else prefix
    return HTTPException(422, detail=invalid(field, exc.message, "rule_invalid"))


def _not_found(exc: PlacementNotFound) -> HTTPException:
    return HTTPException(
        404,
        detail={
            "error": "unknown_placement",
            "detail": exc.message,
            "hint": "GET /v1/placements lists them; PUT /v1/placements/{name} adds one",
        },
    )


def _author(caller: Caller) -> str | None:
    """Who saved it: the key's id (never the key itself)."""
    return f"key:{caller.key_id}" if caller.key_id else (str(caller.role) if caller.role else None)


@router.get(
    "/v1/placements", response_model=PlacementsOut, responses=ERRORS, dependencies=[Read], tags=["placements"]
)
def list_placements(svc: Svc) -> dict[str, Any]:
    """Every placement: the eight standard ones (saved or default) and any the shop added."""
    return {"placements": [p.to_dict() for p in svc.merch.placements()]}


@router.get(
    "/v1/placements/{name}",
    response_model=PlacementOut,
    responses=WITH_404,
    dependencies=[Read],
    tags=["placements"],
)
def get_placement(
    svc: Svc,
    name: Name,
    version: Annotated[int | None, Query(ge=0, le=2**31 - 1, description="an older version")] = None,
) -> dict[str, Any]:
    try:
        return svc.merch.placement(name, version=version).to_dict()
    except PlacementNotFound as exc:
        raise _not_found(exc) from None


@router.get(
    "/v1/placements/{name}/history",
    response_model=HistoryOut,
    responses=WITH_404,
    dependencies=[Read],
    tags=["placements"],
)
def placement_history(svc: Svc, name: Name) -> dict[str, Any]:
    try:
        return {"name": name, "versions": [p.to_dict() for p in svc.merch.history(name)]}
    except PlacementNotFound as exc:
        raise _not_found(exc) from None


@router.put(
    "/v1/placements/{name}",
    response_model=PlacementOut,
    responses=WITH_404,
    dependencies=[Admin],
    tags=["placements"],
    openapi_extra=PLACEMENT_BODY,
)
def put_placement(
    svc: Svc,
    caller: CallerDep,
    name: Name,
    body: Annotated[dict[str, Any], Body()],
) -> dict[str, Any]:
    """Save a placement (a new one under a new name, or the next version of an existing one)."""
    if "name" in body and body["name"] != name:
        raise HTTPException(422, detail=invalid("body.name", f"is {body['name']!r}, the path says {name!r}"))
    try:
        return svc.merch.save_placement(name, body, author=_author(caller)).to_dict()
    except RuleError as exc:
        raise _unprocessable(exc) from None


@router.get(
    "/v1/placements/{name}/rules",
    responses=WITH_404,
    dependencies=[Read],
    tags=["placements"],
)
def get_rules(svc: Svc, name: Name) -> dict[str, Any]:
    try:
        stored = svc.merch.placement(name)
    except PlacementNotFound as exc:
        raise _not_found(exc) from None
    return {"name": name, "version": stored.version, **stored.placement.rules.model_dump(mode="json")}


@router.put(
    "/v1/placements/{name}/rules",
    response_model=PlacementOut,
    responses=WITH_404,
    dependencies=[Admin],
    tags=["placements"],
    openapi_extra=RULES_BODY,
)
def put_rules(
    svc: Svc,
    caller: CallerDep,
    name: Name,
    body: Annotated[dict[str, Any], Body()],
) -> dict[str, Any]:
    """Replace the placement's rules (pin, boost, bury, block, promotion, cap, diversity)."""
    try:
        return svc.merch.save_rules(name, body, author=_author(caller)).to_dict()
    except PlacementNotFound as exc:
        raise _not_found(exc) from None
    except RuleError as exc:
        raise _unprocessable(exc) from None


@router.post(
    "/v1/placements/{name}/rollback",
    response_model=PlacementOut,
    responses=WITH_404,
    dependencies=[Admin],
    tags=["placements"],
)
def rollback_placement(svc: Svc, caller: CallerDep, name: Name, body: RollbackIn) -> dict[str, Any]:
    """Make an older version current again (saved as the newest; the versions between are kept)."""
    try:
        return svc.merch.rollback(name, body.version, author=_author(caller)).to_dict()
    except PlacementNotFound as exc:
        raise _not_found(exc) from None
    except RuleError as exc:  # an old version naming an item since removed
        raise _unprocessable(exc) from None


def _settings_out(svc: Svc) -> dict[str, Any]:
    settings, version = svc.merch.search_settings()
    return {"version": version, **settings.model_dump(mode="json")}


@router.get(
    "/v1/search/settings",
    response_model=SearchSettingsOut,
    responses=ERRORS,
    dependencies=[Read],
    tags=["placements"],
)
def get_search_settings(svc: Svc) -> dict[str, Any]:
    """The shop's synonyms, redirects, stop words and query rules."""
    return _settings_out(svc)


@router.put(
    "/v1/search/settings",
    response_model=SearchSettingsOut,
    responses=ERRORS,
    dependencies=[Admin],
    tags=["placements"],
    openapi_extra=SETTINGS_BODY,
)
def put_search_settings(
    svc: Svc, caller: CallerDep, body: Annotated[dict[str, Any], Body()]
) -> dict[str, Any]:
    """Replace the whole search management document (parts left out become empty)."""
    try:
        svc.merch.save_search_settings(body, author=_author(caller))
    except RuleError as exc:
        raise _unprocessable(exc) from None
    return _settings_out(svc)


PartBody = Annotated[list[Any], Body(description="the new list for that part")]


def _put_search_part(svc: Svc, caller: Caller, part: SearchPart, body: list[Any]) -> dict[str, Any]:
    current, _ = svc.merch.search_settings()
    try:
        svc.merch.save_search_settings(
            {**current.model_dump(mode="json"), part: body}, author=_author(caller)
        )
    except RuleError as exc:
        raise _unprocessable(exc) from None
    return _settings_out(svc)


def _search_part_route(part: SearchPart) -> None:
    """``PUT /v1/search/settings/<part>``: one operation per part, so the document states each part's
    own list (a redirect sent as a synonym is not a schema-valid request)."""

    def put_part(svc: Svc, caller: CallerDep, body: PartBody) -> dict[str, Any]:
        return _put_search_part(svc, caller, part, body)

    put_part.__name__ = f"put_search_{part}"
    put_part.__doc__ = f"Replace the {part.replace('_', ' ')}, keeping the other parts."
    router.put(
        f"/v1/search/settings/{part}",
        response_model=SearchSettingsOut,
        responses=ERRORS,
        dependencies=[Admin],
        tags=["placements"],
        openapi_extra=documented_body(
            SearchSettings,
            part=part,
            description=f"the new {part}"
            + (f". Also refused with a 422: {_PARTS_PROSE[part]}." if _PARTS_PROSE[part] else ""),
        ),
    )(put_part)


for _part in SEARCH_PARTS:
    _search_part_route(_part)


@router.put(
    "/v1/search/settings/{part}",
    response_model=SearchSettingsOut,
    responses=ERRORS,
    dependencies=[Admin],
    tags=["placements"],
    include_in_schema=False,  # each part is documented as its own operation above
)
def put_search_part(
    svc: Svc,
    caller: CallerDep,
    part: SearchPart,
    body: PartBody,
) -> dict[str, Any]:
    """Replace one part (synonyms, redirects, stop_words or query_rules), keeping the others."""
    return _put_search_part(svc, caller, part, body)
