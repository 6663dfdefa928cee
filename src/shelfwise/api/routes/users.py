"""A shopper's rights and credentials: erasure everywhere and the report that proves it; shopper
tokens (``POST /v1/tokens``, a ``write`` key: the shop's back end, which knows who signed in), and
the demo storefront's sign-in (``POST /v1/demo/sign-in``, no key, only while
``SHELFWISE_DEMO_USERS`` is set and only for those shoppers)."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from shelfwise.api.auth import Admin, Write
from shelfwise.api.routes.deps import (
    ERRORS,
    Svc,
    UserId,
    same_shopper,
)
from shelfwise.api.schemas import (
    DeletionIncompleteOut,
    DeletionOut,
    ErrorOut,
)
from shelfwise.core.logging import get_logger
from shelfwise.serving.container import Services
from shelfwise.serving.erasure import checked_elsewhere, deletion_report, derived_dirs, erase_everywhere

router = APIRouter()

_log = get_logger(__name__)


def _report(svc: Services, pseudo: str) -> list[dict[str, Any]]:
    try:  # follow erasures made by other workers now, not at the watcher's next tick
        svc.live.sync()
    except Exception as exc:
        _log.warning("registry sync before a deletion report failed", error=str(exc))
    var_dir = svc.settings.var_dir
    places = deletion_report(
        pseudo,
        **_places(svc),
        skip=checked_elsewhere(var_dir, store_url=svc.store.url, models_root=svc.registry.root),
    )
    return [p.to_dict() for p in places]


def _places(svc: Services) -> dict[str, Any]:
    """Every place a shopper can be held, as erasure and its report both take them."""
    var_dir = svc.settings.var_dir
    return {
        "store": svc.store,
        "registry": svc.registry,
        "sessions": svc.sessions,
        "cache": svc.cache,
        "live": svc.live,
        "affinities": svc.affinities,
        "fold_in": svc.recommending.fresh,
        "journal": svc.journal,
        "derived_dirs": derived_dirs(var_dir),
        "export_dirs": [var_dir],
    }


def _stitched(svc: Services, pseudo: str) -> list[str]:
    """``pseudo`` first, then every other id stitched to the same shopper (their main id, other
    devices); ``pseudo`` alone when the store does not answer (its own erasure then fails, named)."""
    from shelfwise.store.identities import identity
    from shelfwise.store.journal import store_unavailable

    try:
        who = identity(svc.store, pseudo)
    except Exception as exc:
        if not store_unavailable(exc):
            raise
        return [pseudo]
    return [pseudo, *(u for u in who.user_ids if u != pseudo)]


def _main(svc: Services, pseudo: str) -> str:
    """The shopper a pseudonym belongs to (a stitched alias: its shopper)."""
    return svc.identities.shopper_of(pseudo) if svc.identities is not None else pseudo


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
    ids = _stitched(svc, pseudo)
    svc.erased.update(ids)  # refused at the door from now on, in this worker
    # the store's erasure reaches every stitched id at once; the places outside it (sessions,
    # caches, models in memory and on disk…) are keyed by id, so each stitched id is erased there too
    removed = erase_everywhere(pseudo, **_places(svc))
    failed = removed.pop("failed")
    for other in ids[1:]:
        more = erase_everywhere(other, **_places(svc))
        failed.update(more.pop("failed"))
        for key, n in more.items():
            if isinstance(n, int) and isinstance(removed.get(key, 0), int):
                removed[key] = removed.get(key, 0) + n
    removed["stitched_ids"] = len(ids) - 1
    places = _report(svc, pseudo)
    others_verified = all(_verified(_report(svc, other)) for other in ids[1:])
    seconds = time.perf_counter() - started
    svc.metrics.deletions.inc()
    svc.metrics.deletion_seconds.observe(seconds)
    body = {
        "user_id": user_id,
        "removed": removed,
        "seconds": round(seconds, 4),
        "verified": not failed and _verified(places) and others_verified,
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


# --- shopper tokens ------------------------------------------------------------------------------


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: str = Field(min_length=1, max_length=256, description="the shop's user id")


class TokenOut(BaseModel):
    token: str = Field(description="send as `Authorization: Bearer <token>`")
    token_type: str = "bearer"
    expires_at: int = Field(description="unix seconds")
    user_id: str


def _issue(svc: Services, user_id: str) -> TokenOut:
    token, expires = svc.tokens.issue(user_id)
    return TokenOut(token=token, expires_at=expires, user_id=user_id)


@router.post(
    "/v1/tokens", response_model=TokenOut, responses=ERRORS, dependencies=[Write], tags=["credentials"]
)
def issue_token(svc: Svc, body: TokenIn) -> TokenOut:
    """A token for one shopper (valid ``shopper_token_ttl_seconds``, default an hour): with it a
    browser may read that shopper's recommendations and personalised search, and nobody else's."""
    return _issue(svc, body.user_id)


@router.post(
    "/v1/demo/sign-in",
    response_model=TokenOut,
    responses={
        403: {"model": ErrorOut, "description": "not one of the demo shoppers"},
        404: {"model": ErrorOut, "description": "demo sign-in is off (SHELFWISE_DEMO_USERS is not set)"},
        422: ERRORS[422],
        429: ERRORS[429],
    },
    tags=["credentials"],
)
def demo_sign_in(svc: Svc, body: TokenIn) -> TokenOut:
    """The demo storefront signs in as one of its demo shoppers (``SHELFWISE_DEMO_USERS``) with no
    key and gets that shopper's token. Off unless demo shoppers are configured."""
    demo = svc.settings.demo_users
    if not demo:
        raise HTTPException(
            404,
            detail={"error": "demo_sign_in_off", "detail": "demo sign-in is off (no demo shoppers set)"},
        )
    same = same_shopper(svc)
    if not any(same(body.user_id, u) for u in demo):
        raise HTTPException(
            403,
            detail={
                "error": "not_a_demo_shopper",
                "detail": "only the demo shoppers may sign in here",
                "hint": "the home page lists them; a shop's own sign-in calls POST /v1/tokens "
                "with a write key",
            },
        )
    return _issue(svc, body.user_id)


class ConsentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    no_personalisation: StrictBool | None = Field(
        None, description="true: never use this shopper's history for them"
    )
    no_analytics: StrictBool | None = Field(None, description="true: leave this shopper out of analytics")


class ConsentOut(BaseModel):
    user_id: str
    no_personalisation: bool
    no_analytics: bool
    updated_at: int | None = Field(
        None, description="ms since the epoch of the last change (none: never set)"
    )


def _consent_out(user_id: str, flags: Any) -> ConsentOut:
    return ConsentOut(
        user_id=user_id,
        no_personalisation=bool(flags.no_personalisation),
        no_analytics=bool(flags.no_analytics),
        updated_at=flags.updated_at or None,
    )


@router.get(
    "/v1/users/{user_id}/consent",
    response_model=ConsentOut,
    responses=ERRORS,
    dependencies=[Admin],
    tags=["users"],
)
def get_user_consent(svc: Svc, user_id: UserId) -> ConsentOut:
    """The shopper's consent flags (both off until the shop sets them)."""
    return _consent_out(user_id, svc.consent.get(_main(svc, svc.pseudonymize(user_id))))


@router.put(
    "/v1/users/{user_id}/consent",
    response_model=ConsentOut,
    responses=ERRORS,
    dependencies=[Admin],
    tags=["users"],
)
def put_user_consent(svc: Svc, user_id: UserId, body: ConsentIn) -> ConsentOut:
    """Change the shopper's consent flags (a flag left out keeps its value). Every worker follows
    within a second: through Redis when the servers share one, else through the store."""
    flags = svc.consent.set(
        _main(svc, svc.pseudonymize(user_id)),
        no_personalisation=body.no_personalisation,
        no_analytics=body.no_analytics,
    )
    return _consent_out(user_id, flags)


@router.get(
    "/v1/users/{user_id}/export",
    responses={**ERRORS, 200: {"description": "everything held about the shopper, as JSON"}},
    dependencies=[Admin],
    tags=["users"],
)
async def export_user_data(svc: Svc, user_id: UserId) -> JSONResponse:
    """Everything the shop holds about a shopper (events, quarantined records, profile, segment,
    consent, experiment arms, impressions, linked ids), as JSON; nothing of any other shopper."""
    from fastapi.concurrency import run_in_threadpool

    from shelfwise.trust.rights import export_shopper

    pseudo = svc.pseudonymize(user_id)
    out = await run_in_threadpool(
        export_shopper, svc.store, svc.registry.root, pseudo, cache_dir=svc.settings.var_dir / "cache"
    )
    return JSONResponse({"requested_as": user_id, **out})
