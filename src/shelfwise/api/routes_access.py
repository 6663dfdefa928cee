"""Credentials: shopper tokens, the demo storefront's sign-in, API keys with roles.

- ``POST /v1/tokens`` (a ``write`` key: the shop's back end, which knows who signed in) issues a
  short-lived token for one shopper; the shopper's browser sends it as ``Authorization: Bearer``
  and sees that shopper's personal answers and nobody else's.
- ``POST /v1/demo/sign-in`` does the same for the demo storefront, with no key: only while
  ``SHELFWISE_DEMO_USERS`` is set (``make demo`` sets it) and only for those shoppers.
- ``/v1/admin/keys`` (``admin``) lists, creates and revokes API keys, as ``shelfwise keys`` does.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path
from pydantic import BaseModel, ConfigDict, Field

from shelfwise.api.auth import Admin, Write
from shelfwise.api.routes import ERRORS, Svc, same_shopper
from shelfwise.api.schemas import ErrorOut
from shelfwise.core.access import Role, UnknownKeyError

router = APIRouter()


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: str = Field(min_length=1, max_length=256, description="the shop's user id")


class TokenOut(BaseModel):
    token: str = Field(description="send as `Authorization: Bearer <token>`")
    token_type: str = "bearer"
    expires_at: int = Field(description="unix seconds")
    user_id: str


def _issue(svc: Any, user_id: str) -> TokenOut:
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


# --- API keys ---------------------------------------------------------------------------------


class KeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Role
    name: str = Field("", max_length=200, description="who holds it (shown in lists)")


class KeyOut(BaseModel):
    id: str
    role: Role
    name: str
    created_ms: int
    revoked_ms: int | None = None


class KeyCreated(KeyOut):
    key: str = Field(description="shown once; only its sha256 is kept")


class KeysOut(BaseModel):
    keys: list[KeyOut]
    fixed_admin_keys: int = Field(description="admin keys configured outside the key file")


KeyId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[0-9a-f]+$")]


@router.get("/v1/admin/keys", response_model=KeysOut, responses=ERRORS, dependencies=[Admin], tags=["admin"])
def list_keys(svc: Svc) -> KeysOut:
    """Every API key in the key file (never the key or its hash), revoked ones included."""
    return KeysOut(
        keys=[KeyOut(**r.public()) for r in svc.keys.records()],  # type: ignore[arg-type]
        fixed_admin_keys=len(svc.keys.fixed),
    )


@router.post(
    "/v1/admin/keys",
    status_code=201,
    response_model=KeyCreated,
    responses=ERRORS,
    dependencies=[Admin],
    tags=["admin"],
)
def create_key(svc: Svc, body: KeyIn) -> KeyCreated:
    """A new key with a role; the answer is the only time the key is shown."""
    key, record = svc.keys.create(body.role, body.name)
    return KeyCreated(key=key, **record.public())  # type: ignore[arg-type]


@router.delete(
    "/v1/admin/keys/{key_id}",
    response_model=KeyOut,
    responses={**ERRORS, 404: {"model": ErrorOut}},
    dependencies=[Admin],
    tags=["admin"],
)
def revoke_key(svc: Svc, key_id: KeyId) -> KeyOut:
    """Revoke a key: every server reading the key file refuses it at its next request."""
    try:
        record = svc.keys.revoke(key_id)
    except UnknownKeyError:
        raise HTTPException(404, detail={"error": "unknown_key", "detail": f"no key {key_id!r}"}) from None
    return KeyOut(**record.public())  # type: ignore[arg-type]
