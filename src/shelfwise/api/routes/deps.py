"""What every route file shares: the services dependency, documented error answers, path and query
types, and the few steps every recommendation route takes first."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Path, Query, Request

from shelfwise.api.openapi import ValidationErrorOut
from shelfwise.api.schemas import ErrorOut
from shelfwise.recommend.base import Filters
from shelfwise.serving.container import Services
from shelfwise.serving.deployment import Deployment

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


def same_shopper(svc: Services) -> Callable[[str, str], bool]:
    """Whether two shop ids name one shopper (cleaned as ingest cleans them)."""
    return lambda a, b: a == b or svc.pseudonymize(a) == svc.pseudonymize(b)


def deployment(svc: Services) -> Deployment:
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


def filters_of(
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


def shopper(svc: Services, user_id: str) -> str | None:
    """The pseudonym of the shopper a shop's user id belongs to (a stitched alias — their other
    device, a guest id that signed in — answers as its shopper); None for an erased shopper
    (answered as anonymous, so nothing is kept under their pseudonym again)."""
    pseudo = svc.pseudonymize(user_id)
    if pseudo in svc.erased:
        return None
    main = svc.identities.shopper_of(pseudo) if svc.identities is not None else pseudo
    return None if main in svc.erased else main
