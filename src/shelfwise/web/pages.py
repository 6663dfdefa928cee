"""The web pages, mounted on the API's FastAPI app by ``mount_pages``.

Pages are server-rendered HTML with a little JavaScript that calls the same JSON API a shop's own
front end would call, so what the pages show is what the API serves. This module may use the
engines below it (analytics); it never imports ``shelfwise.api``.

Who sees what: the storefront is open (it shows a shopper's own answers through a shopper token);
the analytics pages and their data (per-shopper rows, the pseudonymised marketing list) need the
``analyst`` role; the marketing list with the shop's own customer ids and the operations page need
``admin`` — an ``X-API-Key`` header or a session from ``/sign-in``
(``shelfwise.web.access``). Every answer carries the security headers (``shelfwise.web.headers``).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from shelfwise.core.access import Role
from shelfwise.core.errors import ShelfwiseError, StoreError
from shelfwise.store.analytical import shown_url
from shelfwise.web.access import (
    COOKIE,
    SIGN_IN_COOKIE,
    AccessDenied,
    Caller,
    PageAccess,
    check_csrf,
    form,
    safe_next,
    sign_in_url,
)
from shelfwise.web.dashboard import DIMENSIONS, AnalyticsDashboard
from shelfwise.web.headers import SecurityHeaders
from shelfwise.web.layout import render
from shelfwise.web.ops import Operations

STATIC = Path(__file__).with_name("static")


class _Need:
    """A dependency: the caller, if it holds ``role`` (``app.state.page_access`` decides)."""

    def __init__(self, role: Role, *, page: bool = False) -> None:
        self.role, self.page = role, page

    async def __call__(self, request: Request) -> Caller:
        access: PageAccess = request.app.state.page_access
        return await access.require(request, self.role, page=self.page)


Analyst = Annotated[Caller, Depends(_Need(Role.ANALYST))]
AnalystPage = Annotated[Caller, Depends(_Need(Role.ANALYST, page=True))]
Admin = Annotated[Caller, Depends(_Need(Role.ADMIN))]
AdminPage = Annotated[Caller, Depends(_Need(Role.ADMIN, page=True))]
VersionId = Annotated[str, PathParam(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]


def mount_pages(
    app: FastAPI,
    *,
    store_url: str,
    var_dir: Path,
    access: PageAccess,
    operations: Operations | None = None,
    build_report: bool = True,
    demo_users: Sequence[str] = (),
    security_headers: bool = True,
    pseudonymize: Callable[[str], str] | None = None,
    erased_among: Callable[[Iterable[str]], set[str]] | None = None,
) -> AnalyticsDashboard:
    """Add the web pages to ``app``; returns the dashboard (the caller closes it on shutdown).
    ``access`` decides who may open the analytics and operations pages; ``operations`` backs the
    operations page (none: the page says so). ``demo_users`` are shop user ids offered on the home
    page (the store keeps only pseudonyms).

    ``build_report`` starts building the analytics report in the background at once (it takes
    about half a minute on Online Retail) so the dashboard is ready when someone opens it.
    ``security_headers`` wraps the app in ``SecurityHeaders``; the API passes False, as its ``Guard``
    adds the same headers in its own pass.

    ``pseudonymize`` is the store's ``Pseudonymizer`` (the marketing list with the shop's own ids
    needs it: none, and that endpoint answers 503); ``erased_among`` the store's tombstone check
    (none: the store at ``store_url`` is opened for it)."""
    dashboard = AnalyticsDashboard(store_url, var_dir)
    if build_report and dashboard.state["status"] != "ready":
        dashboard.build()
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    if security_headers:
        app.add_middleware(SecurityHeaders)

    @app.exception_handler(AccessDenied)
    async def denied(request: Request, exc: AccessDenied) -> Response:
        if exc.page is not None and exc.status == 401:
            return RedirectResponse(sign_in_url(exc.page), status_code=303)
        if exc.page is not None:
            return _sign_in_page(request, exc.page, error=exc.detail, status=exc.status)
        return JSONResponse(exc.payload(), status_code=exc.status)

    app.state.page_access = access

    # --- the storefront (open) ---------------------------------------------------------------
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def home_page(user: str = "") -> str:
        return _shop("home.html", "For you", "/", user=user, demo_users=list(demo_users))

    @app.get("/search", response_class=HTMLResponse, include_in_schema=False)
    def search_page(q: str = "", user: str = "") -> str:
        return _shop("search.html", f"Search: {q}" if q else "Search", "/search", q=q, user=user)

    @app.get("/p/{item_id}", response_class=HTMLResponse, include_in_schema=False)
    def product_page(item_id: str) -> str:
        return _shop("product.html", f"Product {item_id}", "", item_id=item_id)

    @app.get("/cart", response_class=HTMLResponse, include_in_schema=False)
    def cart_page() -> str:
        return _shop("cart.html", "Cart", "/cart")

    # --- signing in --------------------------------------------------------------------------
    @app.get("/sign-in", response_class=HTMLResponse, include_in_schema=False)
    def sign_in_page(request: Request, next: str = "/analytics/") -> Response:
        return _sign_in_page(request, next)

    @app.post("/sign-in", include_in_schema=False)
    async def sign_in(request: Request) -> Response:
        fields = await form(request)
        target = safe_next(fields.get("next"))
        expected = request.cookies.get(SIGN_IN_COOKIE, "")
        if not expected or not secrets.compare_digest(fields.get("csrf_token", ""), expected):
            return _sign_in_page(request, target, error="The form expired; try again.", status=403)
        issued = access.sign_in(fields.get("key", "").strip())
        if issued is None:
            return _sign_in_page(request, target, error="That key is not accepted.", status=401)
        cookie, session = issued
        answer = RedirectResponse(target, status_code=303)
        answer.set_cookie(
            COOKIE,
            cookie,
            max_age=max(1, session.expires - int(time.time())),
            path="/",
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )
        answer.delete_cookie(SIGN_IN_COOKIE, path="/sign-in")
        return answer

    @app.post("/sign-out", include_in_schema=False)
    async def sign_out(request: Request) -> Response:
        session = access.session(request.cookies.get(COOKIE))
        if session is not None:
            await check_csrf(request, session.csrf)
            access.sign_out(session)
        answer = RedirectResponse("/", status_code=303)
        answer.delete_cookie(
            COOKIE, path="/", secure=request.url.scheme == "https", httponly=True, samesite="strict"
        )
        return answer

    # --- operations (admin) ------------------------------------------------------------------
    @app.get("/ops", response_class=HTMLResponse, include_in_schema=False)
    def ops_page(caller: AdminPage) -> str:
        return _shop("ops.html", "Operations", "/ops", session=caller.session)

    def _ops() -> Operations:
        if operations is None:
            raise HTTPException(503, "this server has no model registry to operate")
        return operations

    @app.get("/ops/api/models", include_in_schema=False)
    def ops_models(_: Admin) -> dict[str, Any]:
        return _ops().models()

    @app.post("/ops/api/models/{version}/activate", include_in_schema=False)
    def ops_activate(_: Admin, version: VersionId) -> Response:
        return _refused_as_409(lambda: _ops().activate(version))

    @app.post("/ops/api/rollback", include_in_schema=False)
    def ops_rollback(_: Admin) -> Response:
        return _refused_as_409(lambda: _ops().rollback())

    # --- analytics (analyst) -----------------------------------------------------------------
    @app.get("/analytics", include_in_schema=False)
    def analytics_redirect(_: AnalystPage) -> Response:
        return RedirectResponse("/analytics/")

    @app.get("/analytics/", response_class=HTMLResponse, include_in_schema=False)
    def analytics_page(caller: AnalystPage) -> str:
        return _analytics_html(dashboard, caller)

    @app.get("/analytics/api/headline", include_in_schema=False)
    def analytics_headline(_: Analyst) -> dict[str, Any]:
        return dict(_or_503(dashboard, dashboard.headline))

    @app.get("/analytics/forecast", response_class=HTMLResponse, include_in_schema=False)
    def forecast_page(caller: AnalystPage) -> str:
        if dashboard.forecast_state["status"] == "not built":
            dashboard.build_forecast()
        return render(
            "forecast.html",
            title="Demand forecast",
            here="/analytics/",
            scripts=("analytics.js",),
            page_name="forecast",
            session=caller.session,
            state=dashboard.forecast_state,
            forecast=dashboard.forecast(),
        )

    @app.get("/analytics/api/forecast", include_in_schema=False)
    def forecast_data(_: Analyst) -> dict[str, Any]:
        return {**dashboard.forecast_state, "forecast": dashboard.forecast()}

    @app.post("/analytics/api/forecast/rebuild", include_in_schema=False)
    def forecast_rebuild(_: Analyst) -> JSONResponse:
        return JSONResponse(dashboard.build_forecast(), status_code=202)

    @app.get("/analytics/chart/forecast-{level}.svg", include_in_schema=False)
    def forecast_chart(_: Analyst, level: str) -> Response:
        if level not in ("item", "category"):
            raise HTTPException(422, f"level: must be item or category, not {level!r}")
        svg = dashboard.forecast_svg(level)
        if svg is None:
            raise HTTPException(404, "no forecast yet: it is being built", headers={"Retry-After": "10"})
        return Response(svg, media_type="image/svg+xml")

    @app.get("/analytics/api/funnel", include_in_schema=False)
    def analytics_funnel(
        _: Analyst, by: str = "category", top: int = Query(20, ge=1, le=200)
    ) -> dict[str, Any]:
        return _or_503(dashboard, lambda: dashboard.funnel(_dimension(by), top=top))

    @app.get("/analytics/chart/funnel.svg", include_in_schema=False)
    def analytics_funnel_chart(
        _: Analyst, by: str = "category", top: int = Query(20, ge=1, le=200)
    ) -> Response:
        svg = _or_503(dashboard, lambda: dashboard.funnel_svg(_dimension(by), top=top))
        return Response(svg, media_type="image/svg+xml")

    @app.get("/analytics/api/report", include_in_schema=False)
    def analytics_report_state(_: Analyst) -> dict[str, Any]:
        return {**dashboard.state, "summary": dashboard.summary()}

    @app.post("/analytics/api/rebuild", include_in_schema=False)
    def analytics_rebuild(_: Analyst) -> JSONResponse:
        return JSONResponse(dashboard.build(), status_code=202)

    # --- differentially private aggregates (analyst): every release spends ε from the ledger --
    @app.get("/analytics/private", response_class=HTMLResponse, include_in_schema=False)
    def private_page(caller: AnalystPage) -> str:
        return _private_html(dashboard, caller)

    @app.post("/analytics/private", response_class=HTMLResponse, include_in_schema=False)
    async def private_page_release(request: Request, caller: Analyst) -> Response:
        fields = await form(request)
        try:
            wanted = _private_request(fields)
        except HTTPException as exc:
            return HTMLResponse(_private_html(dashboard, caller, error=str(exc.detail)), status_code=422)
        result, refused = await _private(dashboard, wanted)
        if refused is not None:
            return HTMLResponse(
                _private_html(dashboard, caller, refusal=refused, asked=wanted), status_code=409
            )
        return HTMLResponse(_private_html(dashboard, caller, result=result, asked=wanted))

    @app.get("/analytics/api/private", include_in_schema=False)
    def private_budget(_: Analyst) -> dict[str, Any]:
        return _or_503(dashboard, dashboard.privacy)

    @app.post("/analytics/api/private", include_in_schema=False)
    async def private_release(request: Request, _: Analyst) -> JSONResponse:
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise HTTPException(422, "send a JSON object: {query, epsilon, by?, top?}")
        result, refused = await _private(dashboard, _private_request(body))
        if refused is not None:
            return JSONResponse(refused, status_code=409)
        return JSONResponse(result)

    # --- the marketing list with the shop's own ids (admin) ---------------------------------
    @app.post("/analytics/api/marketing-list", include_in_schema=False)
    async def marketing_list_with_ids(request: Request, _: Admin) -> Response:
        import anyio.to_thread

        ids = await _shop_ids(request)
        if pseudonymize is None:
            raise HTTPException(503, "this server has no pseudonym key to match the shop's ids with")
        path = dashboard.file("marketing_lists.csv")
        if path is None:
            building = dashboard.state["status"] == "building"
            raise HTTPException(
                503,
                "the marketing list is not built yet: "
                + ("the report is being built" if building else "POST /analytics/api/rebuild to build it"),
                headers={"Retry-After": "30"},
            )
        result = await anyio.to_thread.run_sync(lambda: _marketing_with_ids(path, ids))
        counts = result.counts()
        return Response(
            result.table.write_csv(),
            media_type="text/csv; charset=utf-8",
            headers={
                "Content-Disposition": 'attachment; filename="marketing_lists_customer_ids.csv"',
                "Cache-Control": "no-store",
                **{f"X-Shelfwise-{k.replace('_', '-').title()}": str(v) for k, v in counts.items()},
            },
        )

    def _marketing_with_ids(path: Path, ids: list[str]) -> Any:
        import polars as pl

        from shelfwise.analytics.marketing import with_shop_ids

        assert pseudonymize is not None
        lists = pl.read_csv(path, schema_overrides={"user_id": pl.String, "category": pl.String})
        return with_shop_ids(lists, ids, pseudonymize, erased_among=erased_among or _erased_in_store)

    def _erased_in_store(pseudonyms: Iterable[str]) -> set[str]:
        from shelfwise.store import open_store

        with open_store(store_url) as store:
            return store.erased_among(pseudonyms)

    @app.get("/analytics/{name}", include_in_schema=False)
    def analytics_file(_: Analyst, name: str) -> Response:
        path = dashboard.file(name)
        if path is None:
            raise HTTPException(404, f"no report file {name!r}")
        # the marketing list is a download, never a page a browser renders
        return FileResponse(path, filename=name if name.endswith(".csv") else None)

    return dashboard


MAX_IDS_BODY = 64 * 1024 * 1024


async def _shop_ids(request: Request) -> list[str]:
    """The shop's customer ids a request sends: JSON ``{"customer_ids": [...]}``, or a CSV body
    (``text/csv``) with one id column. 422 naming the field for anything else."""
    from shelfwise.analytics.marketing import ShopIdsError, check_shop_ids, read_shop_ids

    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await request.body()
    if len(body) > MAX_IDS_BODY:
        raise HTTPException(413, f"body: over {MAX_IDS_BODY} bytes; send the ids in parts")
    try:
        if kind == "application/json":
            try:
                payload = json.loads(body)
            except ValueError:
                raise HTTPException(422, 'body: not valid JSON; send {"customer_ids": [...]}') from None
            if not isinstance(payload, dict) or "customer_ids" not in payload:
                raise HTTPException(422, 'customer_ids: missing; send {"customer_ids": [...]}')
            if not isinstance(payload["customer_ids"], list):
                raise HTTPException(422, "customer_ids: must be a list of the shop's customer ids")
            return check_shop_ids(payload["customer_ids"])
        if kind in ("text/csv", "text/plain", "application/csv"):
            try:
                text = body.decode("utf-8-sig")
            except UnicodeDecodeError:
                raise HTTPException(422, "file: not UTF-8 text") from None
            return read_shop_ids(text)
    except ShopIdsError as exc:
        raise HTTPException(422, str(exc)) from None
    raise HTTPException(
        422,
        f'content-type: send application/json ({{"customer_ids": [...]}}) or text/csv '
        f"(one customer id column), not {kind or 'nothing'!r}",
    )


def _sign_in_page(request: Request, target: str, *, error: str = "", status: int = 200) -> Response:
    """The sign-in form, with a fresh form token in a cookie only ``/sign-in`` receives (a login
    form posted from another site has no token, so nobody can sign a visitor in as themselves)."""
    token = secrets.token_urlsafe(24)
    html = render(
        "sign_in.html",
        title="Sign in",
        here="",
        page_name="sign-in",
        next=safe_next(target),
        error=error,
        form_token=token,
    )
    answer = HTMLResponse(html, status_code=status)
    answer.set_cookie(
        SIGN_IN_COOKIE,
        token,
        max_age=1800,
        path="/sign-in",
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
    return answer


def _or_503(dashboard: AnalyticsDashboard, action: Any) -> Any:
    """What ``action`` answers; a snapshot that cannot be made or read (the store down, the child
    failing) is a 503 with the reason (the store URL masked), never a 500."""
    try:
        return action()
    except (RuntimeError, StoreError) as exc:
        reason = dashboard.scrub(f"the analytics snapshot is not available: {exc}")
        raise HTTPException(503, reason, headers={"Retry-After": "5"}) from None


def _refused_as_409(action: Any) -> Response:
    """An operation's answer; the registry's refusal (the release gate, an unknown version) as 409
    with its message, never a 500."""
    try:
        return JSONResponse(action())
    except ShelfwiseError as exc:
        return JSONResponse(
            {"error": type(exc).__name__, "detail": exc.message, "hint": exc.hint}, status_code=409
        )


def _shop(template: str, title: str, here: str, **values: Any) -> str:
    name = template.removesuffix(".html")
    return render(template, title=title, here=here, scripts=("shop.js",), page_name=name, **values)


def _dimension(by: str) -> Any:
    if by not in DIMENSIONS:
        raise HTTPException(422, f"by: must be one of {', '.join(DIMENSIONS)}, not {by!r}")
    return by


PRIVATE_QUERIES = ("category-popularity", "funnel", "trending", "rfm-segments", "cohorts")


def _private_request(fields: dict[str, Any]) -> dict[str, Any]:
    """The query, ε, dimension and size of a private release, checked (422 with the field named)."""
    query = str(fields.get("query", ""))
    if query not in PRIVATE_QUERIES:
        raise HTTPException(422, f"query: must be one of {', '.join(PRIVATE_QUERIES)}, not {query!r}")
    try:
        epsilon = float(fields.get("epsilon", ""))
    except (TypeError, ValueError):
        raise HTTPException(422, "epsilon: must be a number, e.g. 0.5") from None
    if not 0 < epsilon <= 100:  # also refuses nan and inf
        raise HTTPException(422, f"epsilon: must be above 0 and at most 100, not {epsilon!r}")
    try:
        top = int(fields.get("top", 20))
    except (TypeError, ValueError):
        raise HTTPException(422, "top: must be a whole number from 1 to 200") from None
    if not 1 <= top <= 200:
        raise HTTPException(422, f"top: must be from 1 to 200, not {top}")
    return {
        "query": query,
        "epsilon": epsilon,
        "by": _dimension(str(fields.get("by", "category"))),
        "top": top,
    }


async def _private(dashboard: AnalyticsDashboard, wanted: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """A release's answer, or (second) the refusal of a release past the budget."""
    import anyio.to_thread

    from shelfwise.store.ledger import PrivacyBudgetExceeded

    def run() -> dict[str, Any]:
        return dashboard.private_release(
            wanted["query"], wanted["epsilon"], by=wanted["by"], top=wanted["top"]
        )

    try:
        return await anyio.to_thread.run_sync(lambda: _or_503(dashboard, run)), None
    except PrivacyBudgetExceeded as exc:
        budget = await anyio.to_thread.run_sync(lambda: _or_503(dashboard, dashboard.privacy))
        budget.pop("ledger", None)
        return {}, {
            "error": "privacy_budget_exhausted",
            "detail": exc.message,
            "hint": "ask with a smaller ε, or have an operator raise the budget "
            "(`shelfwise trust dp budget --set`)",
            "budget": budget,
        }


def _private_html(
    dashboard: AnalyticsDashboard,
    caller: Caller,
    *,
    result: dict[str, Any] | None = None,
    refusal: dict[str, Any] | None = None,
    asked: dict[str, Any] | None = None,
    error: str = "",
) -> str:
    return render(
        "analytics_private.html",
        title="Private aggregates",
        here="/analytics/",
        page_name="analytics-private",
        session=caller.session,
        privacy=_or_503(dashboard, dashboard.privacy),
        queries=PRIVATE_QUERIES,
        dimensions=DIMENSIONS,
        result=result,
        refusal=refusal,
        asked=asked or {"query": "category-popularity", "epsilon": 0.5, "by": "category", "top": 20},
        error=error,
    )


def _analytics_html(dashboard: AnalyticsDashboard, caller: Caller) -> str:
    state = dashboard.state
    headline = dashboard.headline_now()  # never waits for a snapshot: the page polls until it is there
    return render(
        "analytics.html",
        title="Analytics",
        here="/analytics/",
        scripts=("analytics.js",),
        session=caller.session,
        store=shown_url(dashboard.store_url),
        status=state["status"],
        error=state.get("error", ""),
        sections=dashboard.sections() if state["status"] != "building" else None,
        dimensions=DIMENSIONS,
        headline=headline,
        headline_error=dashboard.headline_error,
    )
