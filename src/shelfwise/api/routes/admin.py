"""Model operations (versions, activation, rollback, canary and shadow) and API keys with roles
(``/v1/admin/keys``, as ``shelfwise keys`` does)."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path
from pydantic import BaseModel, ConfigDict, Field

from shelfwise.api.auth import Admin
from shelfwise.api.routes.deps import (
    ERRORS,
    Svc,
)
from shelfwise.api.schemas import (
    ActivationOut,
    CandidateIn,
    ErrorOut,
    ModelsOut,
    VersionOut,
)
from shelfwise.core.access import Role, UnknownKeyError
from shelfwise.registry import Candidate, release
from shelfwise.serving.container import Services

router = APIRouter()


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


# --- API keys ------------------------------------------------------------------------------------


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
