"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from shelfwise.api.auth import CallerDep, check_role
from shelfwise.api.routes.deps import (
    Svc,
)
from shelfwise.api.schemas import (
    HealthOut,
)
from shelfwise.core.access import Role
from shelfwise.core.logging import get_logger

router = APIRouter()

_log = get_logger(__name__)


@router.get("/healthz", response_model=HealthOut, tags=["health"])
async def healthz(svc: Svc) -> HealthOut:
    """The process is up (and which model version it serves, if any, since when: Unix time)."""
    dep = svc.live.current
    since = svc.live.serving_since
    return HealthOut(
        status="ok",
        model_version=dep.active.version if dep else None,
        detail={"serving_since": round(since, 3)} if dep is not None and since is not None else {},
    )


@router.get("/readyz", response_model=HealthOut, responses={503: {"model": HealthOut}}, tags=["health"])
def readyz(svc: Svc, caller: CallerDep, response: Response) -> HealthOut:
    """Ready to serve: a model is active and loaded and the store answers. Why not (the error
    text, which can name hosts and files) is shown to an admin key only, and always logged."""
    detail: dict[str, Any] = {"search_items": len(svc.search) if svc.search is not None else 0}
    admin = caller.role is Role.ADMIN
    ok = True
    try:
        svc.store.get_user("__readyz__")
        detail["store"] = "ok"
    except Exception as exc:
        _log.warning("readiness: the store does not answer", error=repr(exc))
        ok, detail["store"] = False, f"error: {exc}" if admin else "error: the store does not answer"
    dep = svc.live.current
    if dep is None:
        ok = False
        why = svc.live.last_error or "no active version"
        detail["model"] = why if admin else "no active version"
    if not ok:
        response.status_code = 503
    return HealthOut(
        status="ready" if ok else "not ready",
        model_version=dep.active.version if dep else None,
        detail=detail,
    )


@router.get(
    "/metrics", tags=["health"], response_class=Response, responses={200: {"content": {"text/plain": {}}}}
)
def metrics(svc: Svc, caller: CallerDep) -> Response:
    """Prometheus metrics: aggregate counters, no personal data. With ``metrics_key_required`` only
    an analyst (or admin) key reads them."""
    if svc.settings.metrics_key_required:
        check_role(caller, Role.ANALYST)
    dep = svc.live.current
    svc.metrics.set_active(dep.active.version if dep else None)
    return Response(generate_latest(svc.metrics.registry), media_type=CONTENT_TYPE_LATEST)
