"""The FastAPI application factory: the routes (``shelfwise.api.routes``) over one container of
services (``shelfwise.serving.container``), the exception handlers and the lifespan.

    app = create_app(settings, "sqlite:///var/shelfwise.db")
    uvicorn.run(app, port=8000)

``shelfwise.web`` can add pages: if it defines ``mount(app, services)``, that is called with this
app and its ``Services``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from shelfwise.api.openapi import invalid as invalid_body
from shelfwise.api.security import ClientAddress, Guard, Identify, TokenBucket
from shelfwise.core.errors import (
    BadInputError,
    ConflictError,
    NotFoundError,
    ShelfwiseError,
    StoreError,
    UnavailableError,
)
from shelfwise.core.logging import get_logger
from shelfwise.core.settings import Settings
from shelfwise.registry import CorruptArtifactError, GateRefusedError
from shelfwise.serving.container import Services, build_services
from shelfwise.serving.state import ResultCache, SessionStore
from shelfwise.store.journal import store_unavailable

log = get_logger(__name__)


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors():
            loc = [str(p) for p in err.get("loc", ())]
            problems.append(
                {"field": ".".join(loc), "message": err.get("msg", ""), "type": err.get("type", "")}
            )
        return JSONResponse(status_code=422, content={"error": "invalid_request", "detail": problems})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.detail == "There was an error parsing the body":
            # a body that is not JSON at all (FastAPI's 400): a 422 naming the body, as documented
            return JSONResponse(
                status_code=422, content=invalid_body("body", "the body is not valid JSON", "json_invalid")
            )
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:  # every method of the path, not only those of the first route
            headers["Allow"] = ", ".join(_methods_of(request))
        content = (
            exc.detail if isinstance(exc.detail, dict) else {"error": "http_error", "detail": exc.detail}
        )
        return JSONResponse(status_code=exc.status_code, content=content, headers=headers or None)

    @app.exception_handler(SQLAlchemyError)
    async def store_error(_request: Request, exc: SQLAlchemyError) -> JSONResponse:
        if not store_unavailable(exc):
            raise exc  # a bug, not an outage: a 500 with the traceback in the log
        return store_unavailable_answer()

    @app.exception_handler(ShelfwiseError)
    async def shelfwise_error(_request: Request, exc: ShelfwiseError) -> JSONResponse:
        if isinstance(exc, StoreError):
            return store_unavailable_answer()
        headers = {"Retry-After": str(RETRY_AFTER_S)} if isinstance(exc, UnavailableError) else None
        return JSONResponse(
            status_code=status_of(exc),
            content={"error": type(exc).__name__, "detail": exc.message, "hint": exc.hint},
            headers=headers,
        )


# The HTTP status of each outcome (``shelfwise.core.errors``); an error takes the status of the
# first class of its MRO listed here, so ``UnknownVersionError(NotFoundError, RegistryError)`` is
# a 404 and every other ``RegistryError`` (a ``ConflictError``: the gate refused, a corrupt
# artifact, another store's version, no earlier version) a 409.
STATUS_OF: dict[type[ShelfwiseError], int] = {
    BadInputError: 400,
    NotFoundError: 404,
    ConflictError: 409,
    GateRefusedError: 409,
    CorruptArtifactError: 409,
    UnavailableError: 503,
    ShelfwiseError: 400,  # settings, files, formats: what the caller can fix
}


def status_of(exc: ShelfwiseError) -> int:
    """The HTTP status of an error, by ``STATUS_OF``."""
    return next(STATUS_OF[cls] for cls in type(exc).__mro__ if cls in STATUS_OF)


def _methods_of(request: Request) -> list[str]:
    """The methods the OpenAPI document lists for the request's path (HEAD, which Starlette adds to
    every GET, is not documented, so not listed)."""
    path = request.url.path
    methods: set[str] = set()
    todo = list(request.app.router.routes)
    while todo:
        route = todo.pop()
        inner = getattr(route, "original_router", None)  # a router included with include_router
        if inner is not None:
            todo.extend(inner.routes)
        elif getattr(route, "methods", None) and route.path_regex.match(path):
            methods.update(route.methods)
    return sorted(methods - {"HEAD"})


RETRY_AFTER_S = 5


def store_unavailable_answer() -> JSONResponse:
    """503 for a request that needs the store while it does not answer (down, hung, timed out)."""
    return JSONResponse(
        status_code=503,
        content={
            "error": "store_unavailable",
            "detail": "the store did not answer in time",
            "hint": f"retry in {RETRY_AFTER_S} seconds",
        },
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def create_app(
    settings: Settings,
    store_url: str | None = None,
    *,
    registry_root: Path | None = None,
    sessions: SessionStore | None = None,
    cache: ResultCache | None = None,
    watch_interval: float | None = 0.5,
    extensions: Sequence[Callable[[FastAPI, Services], None]] = (),
) -> FastAPI:
    """The service over the store at ``store_url`` and the registry under ``registry_root``."""
    from shelfwise.api import openapi
    from shelfwise.api.routes import (
        admin,
        events,
        explain,
        health,
        items,
        placements,
        recommendations,
        search,
        users,
    )

    services = build_services(
        settings,
        store_url,
        registry_root=registry_root,
        sessions=sessions,
        cache=cache,
        watch_interval=watch_interval,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> Iterator[None]:  # type: ignore[misc]
        yield
        for close in getattr(_app.state, "closers", []):  # the pages' dashboard builder, …
            close()
        services.close()

    app = FastAPI(
        title="shelfwise",
        version="1",
        summary="Search, recommendations and events for an online shop.",
        lifespan=lifespan,
    )
    app.state.services = services
    _error_handlers(app)
    openapi.install(app)
    for routes in (recommendations, search, events, items, placements, users, admin, explain, health):
        app.include_router(routes.router)
    from shelfwise import web

    mount = getattr(web, "mount", None)
    for extend in [*([mount] if mount else []), *extensions]:
        extend(app, services)
    app.add_middleware(
        Guard,
        limiter=TokenBucket(settings.rate_limit_per_second, settings.rate_limit_burst),
        max_bytes=settings.max_request_bytes,
        identify=Identify(services.keys, services.tokens),
        address=ClientAddress(settings.trusted_proxies),
        observe=services.metrics.observe_request,
    )
    return app


def app_from_env() -> FastAPI:
    """For ``uvicorn --factory shelfwise.api.app:app_from_env`` (several workers): settings from the
    environment (``SHELFWISE_DB_URL``, ``SHELFWISE_VAR_DIR``…)."""
    from shelfwise.core.settings import get_settings

    settings = get_settings()
    return create_app(settings, settings.store_url)
