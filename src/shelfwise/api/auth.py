"""Who may call what: one FastAPI dependency per role, read off each route's signature.

``Guard`` (``api.security``) has already found the caller and answered 401 for a credential that
is not valid; here a route that needs a role answers 401 when no credential was sent and 403 when
the caller's role does not cover it. A shopper's personal answers (recommendations, personalised
search, anything whose reasons name their history) need the ``read`` role, or a shopper token for
that same shopper.

    @router.get("/v1/admin/models", dependencies=[Admin])
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import APIKeyHeader, HTTPBearer

from shelfwise.api.security import ANONYMOUS, Caller
from shelfwise.core.access import Role, role_allows

# documented in the OpenAPI document (the lock in /docs); the check itself reads request.state
_key_scheme = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="an API key with a role (`shelfwise keys create`)"
)
_token_scheme = HTTPBearer(
    auto_error=False, description="a shopper token (`POST /v1/tokens`): one shopper's personal answers"
)

WHAT = {
    Role.READ: "read personal answers",
    Role.WRITE: "write events and items",
    Role.ANALYST: "open the analytics",
    Role.ADMIN: "manage models, deletion and keys",
}


def caller_of(request: Request) -> Caller:
    """The caller ``Guard`` found (anonymous when the app runs without it)."""
    found = getattr(request.state, "caller", None)
    return found if isinstance(found, Caller) else ANONYMOUS


def unauthenticated(role: Role, *, token_too: bool = False) -> HTTPException:
    how = "send X-API-Key with a key of role " + str(role) + " (or admin)"
    if token_too:
        how += ", or Authorization: Bearer <shopper token> for this shopper"
    return HTTPException(
        401,
        detail={"error": "credential_required", "detail": f"to {WHAT[role]}: {how}"},
        headers={"WWW-Authenticate": 'Bearer realm="shelfwise"'},
    )


def forbidden(detail: str, role: Role) -> HTTPException:
    return HTTPException(403, detail={"error": "forbidden", "detail": detail, "needs": str(role)})


def check_role(caller: Caller, role: Role) -> None:
    if role_allows(caller.role, role):
        return
    if caller.anonymous:
        raise unauthenticated(role)
    held = f"this key's role is {caller.role}" if caller.role else "a shopper token"
    raise forbidden(f"{held}; to {WHAT[role]} the role {role} (or admin) is needed", role)


def _needs(role: Role) -> Any:
    async def dependency(
        request: Request,
        _key: Annotated[str | None, Depends(_key_scheme)],
    ) -> Caller:
        found = caller_of(request)
        check_role(found, role)
        return found

    dependency.__name__ = f"needs_{role}"
    return Depends(dependency)


Read = _needs(Role.READ)
Write = _needs(Role.WRITE)
Admin = _needs(Role.ADMIN)


async def _shopper_caller(
    request: Request,
    _key: Annotated[str | None, Depends(_key_scheme)],
    _token: Annotated[Any, Depends(_token_scheme)],
) -> Caller:
    return caller_of(request)


async def _optional_caller(request: Request) -> Caller:
    return caller_of(request)


ShopperCaller = Annotated[Caller, Depends(_shopper_caller)]
"""The caller of a route that always needs a credential: a read key or that shopper's token."""
CallerDep = Annotated[Caller, Depends(_optional_caller)]
"""The caller of a route anyone may call that answers more to some (search with ``user_id``):
no security scheme is documented, as none is required."""


def check_shopper(caller: Caller, user_id: str, same: Any) -> None:
    """May ``caller`` see the personal answers of shopper ``user_id``? A ``read`` key sees anyone's;
    a shopper token only its own shopper's (``same(a, b)``: the two ids name one shopper, as ingest
    cleans ids)."""
    if role_allows(caller.role, Role.READ):
        return
    if caller.shopper is not None:
        if same(caller.shopper, user_id):
            return
        raise forbidden("this shopper token is for another shopper", Role.READ)
    if caller.anonymous:
        raise unauthenticated(Role.READ, token_too=True)
    raise forbidden(
        f"this key's role is {caller.role}; a shopper's personal answers need the role read (or admin)",
        Role.READ,
    )
