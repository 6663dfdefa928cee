"""The merchant page (``/merchant``, admin): the shop's placements with their rules, and the search
settings; rules are edited as JSON and saved through the same ``Merchandising`` service the API
and the CLI use, so a save holds on the storefront's next request. A synonym or a redirect is added
with a form (``?query=`` fills it in: the query report links here), and ``/merchant/queries`` is the
zero-result and low-click query report.

The pages are signed in by a session cookie, like ``/ops``; their saves carry the session's CSRF
token. Queries are what shoppers typed (they may hold personal data): admin only, shown as text.
"""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from fastapi import FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from shelfwise.merchandising.placements import PlacementNotFound
from shelfwise.merchandising.rules import RuleError
from shelfwise.merchandising.service import Merchandising
from shelfwise.web.access import Caller, form
from shelfwise.web.layout import render
from shelfwise.web.pages import Admin, AdminPage

Days = Query(30.0, gt=0, le=3650, description="searches of the last N days")
MinSearches = Query(3, ge=1, le=100_000)
MaxCtr = Query(0.1, ge=0, le=1)
Limit = Query(50, ge=1, le=1000)


def _merchant_html(caller: Caller, *, query: str = "", saved: str = "", error: str = "") -> str:
    return render(
        "merchant.html",
        title="Merchandising",
        here="/merchant",
        scripts=("merchant.js",),
        page_name="merchant",
        session=caller.session,
        query=query,
        saved=saved,
        error=error,
    )


def mount_merchant(app: FastAPI, merch: Merchandising) -> None:
    """Add ``/merchant``, ``/merchant/queries`` and their JSON endpoints to ``app``."""

    @app.get("/merchant", response_class=HTMLResponse, include_in_schema=False)
    def merchant_page(
        caller: AdminPage,
        query: str = Query("", max_length=500),
        saved: str = Query("", max_length=40),
    ) -> str:
        return _merchant_html(caller, query=query, saved=saved)

    @app.get("/merchant/queries", response_class=HTMLResponse, include_in_schema=False)
    def queries_page(
        caller: AdminPage,
        days: float = Days,
        min_searches: int = MinSearches,
        max_ctr: float = MaxCtr,
        limit: int = Limit,
    ) -> str:
        report = merch.query_report(days=days, min_searches=min_searches, max_ctr=max_ctr, limit=limit)
        return render(
            "queries.html",
            title="Search queries",
            here="/merchant",
            scripts=("merchant.js",),
            page_name="queries",
            session=caller.session,
            report=report,
        )

    @app.get("/merchant/api/queries", include_in_schema=False)
    def queries(
        _: Admin,
        days: float = Days,
        min_searches: int = MinSearches,
        max_ctr: float = MaxCtr,
        limit: int = Limit,
    ) -> dict[str, Any]:
        return merch.query_report(days=days, min_searches=min_searches, max_ctr=max_ctr, limit=limit)

    @app.post("/merchant/api/search/synonyms", include_in_schema=False)
    async def add_synonym(request: Request, caller: Admin) -> Response:
        """Add a synonym: JSON ``{"terms": [...], "direction": "two-way"}``, or the page's form
        (``terms`` separated by commas)."""
        fields, is_form = await _body(request)
        if fields is None:
            return _problem(422, "body", "the body is not valid JSON")
        terms = fields.get("terms")
        if isinstance(terms, str):
            terms = [t.strip() for t in terms.split(",") if t.strip()]
        if not isinstance(terms, list) or not all(isinstance(t, str) for t in terms):
            return _refused(
                caller, is_form, "body.terms", "terms: a list of words (on the form: separated by commas)"
            )
        direction = fields.get("direction") or "two-way"
        try:
            _, version = await anyio.to_thread.run_sync(
                lambda: merch.add_synonym(terms, direction=str(direction), author="merchant page")
            )
        except RuleError as exc:
            return _refused(
                caller, is_form, _where("synonyms", exc), exc.message, query=str(fields.get("query", ""))
            )
        if is_form:
            return RedirectResponse(f"/merchant?saved=synonym-v{version}#search-controls", status_code=303)
        return JSONResponse({"saved": "synonym", "version": version})

    @app.post("/merchant/api/search/redirects", include_in_schema=False)
    async def add_redirect(request: Request, caller: Admin) -> Response:
        """Add or replace a redirect: JSON ``{"query": ..., "url": "/page"}``, or the page's form."""
        fields, is_form = await _body(request)
        if fields is None:
            return _problem(422, "body", "the body is not valid JSON")
        query, url = fields.get("query"), fields.get("url")
        if not isinstance(query, str) or not query.strip():
            return _refused(caller, is_form, "body.query", "query: the query to redirect")
        if not isinstance(url, str) or not url.strip():
            return _refused(
                caller, is_form, "body.url", "url: where to send it (/page or https://…)", query=query
            )
        try:
            _, version = await anyio.to_thread.run_sync(  # a store write: off the event loop
                lambda: merch.add_redirect(query, url.strip(), author="merchant page")
            )
        except RuleError as exc:
            return _refused(caller, is_form, _where("redirects", exc), exc.message, query=query)
        if is_form:
            return RedirectResponse(f"/merchant?saved=redirect-v{version}#search-controls", status_code=303)
        return JSONResponse({"saved": "redirect", "version": version})

    @app.get("/merchant/api/placements", include_in_schema=False)
    def placements(_: Admin) -> dict[str, Any]:
        settings, version = merch.search_settings()
        return {
            "placements": [p.to_dict() for p in merch.placements()],
            "search": {"version": version, **settings.model_dump(mode="json")},
        }

    @app.post("/merchant/api/placements/{name}/rules", include_in_schema=False)
    async def save_rules(name: str, request: Request, _: Admin) -> Response:
        try:
            body = await request.json()
        except ValueError:
            return _problem(422, "body", "the body is not valid JSON")
        try:
            saved = await anyio.to_thread.run_sync(
                lambda: merch.save_rules(name, body, author="merchant page")
            )
        except PlacementNotFound as exc:
            return JSONResponse({"error": "unknown_placement", "detail": exc.message}, status_code=404)
        except RuleError as exc:
            return _problem(422, f"body.{exc.field}" if exc.field else "body", exc.message)
        return JSONResponse(saved.to_dict())


async def _body(request: Request) -> tuple[dict[str, Any] | None, bool]:
    """The request's fields and whether they came from the page's form (else JSON; None: not JSON)."""
    if "application/x-www-form-urlencoded" in request.headers.get("content-type", ""):
        return dict(await form(request)), True
    try:
        body = await request.json()
    except ValueError:
        return None, False
    return (body if isinstance(body, dict) else None), False


def _where(section: str, exc: RuleError) -> str:
    return f"body.{exc.field}" if exc.field else f"body.{section}"


def _refused(caller: Caller, is_form: bool, field: str, message: str, *, query: str = "") -> Response:
    """A refused save: the page again with the reason (422) for the form, a problem for JSON."""
    if is_form:
        html = _merchant_html(caller, query=query, error=f"{field.removeprefix('body.')}: {message}")
        return HTMLResponse(html, status_code=422)
    return _problem(422, field, message)


def _problem(status: int, field: str, message: str) -> JSONResponse:
    return JSONResponse(
        {
            "error": "invalid_request",
            "detail": [{"field": field, "message": message, "type": "rule_invalid"}],
        },
        status_code=status,
    )
