"""The web pages, mounted on the API's FastAPI app by ``mount_pages``.

Pages are server-rendered HTML with a little JavaScript that calls the same JSON API a shop's own
front end would call, so what the pages show is what the API serves. This module may use the
engines below it (analytics); it never imports ``shelfwise.api``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from shelfwise.store.analytical import shown_url
from shelfwise.web.dashboard import DIMENSIONS, AnalyticsDashboard
from shelfwise.web.layout import render

STATIC = Path(__file__).with_name("static")


def mount_pages(
    app: FastAPI,
    *,
    store_url: str,
    var_dir: Path,
    build_report: bool = True,
    demo_users: Sequence[str] = (),
) -> AnalyticsDashboard:
    """Add the web pages to ``app``; returns the dashboard (the caller closes it on shutdown).
    ``demo_users`` are shop user ids offered on the home page (the store keeps only pseudonyms).

    ``build_report`` starts building the analytics report in the background at once (it takes
    about half a minute on Online Retail) so the dashboard is ready when someone opens it."""
    dashboard = AnalyticsDashboard(store_url, var_dir)
    if build_report and dashboard.state["status"] != "ready":
        dashboard.build()
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

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

    @app.get("/ops", response_class=HTMLResponse, include_in_schema=False)
    def ops_page() -> str:
        return _shop("ops.html", "Operations", "/ops")

    @app.get("/analytics", include_in_schema=False)
    def analytics_redirect() -> Response:
        return RedirectResponse("/analytics/")

    @app.get("/analytics/", response_class=HTMLResponse, include_in_schema=False)
    def analytics_page() -> str:
        return _analytics_html(dashboard)

    @app.get("/analytics/api/funnel", include_in_schema=False)
    def analytics_funnel(by: str = "category", top: int = Query(20, ge=1, le=200)) -> dict[str, Any]:
        return dashboard.funnel(_dimension(by), top=top)

    @app.get("/analytics/chart/funnel.svg", include_in_schema=False)
    def analytics_funnel_chart(by: str = "category", top: int = Query(20, ge=1, le=200)) -> Response:
        return Response(dashboard.funnel_svg(_dimension(by), top=top), media_type="image/svg+xml")

    @app.get("/analytics/api/report", include_in_schema=False)
    def analytics_report_state() -> dict[str, Any]:
        return {**dashboard.state, "summary": dashboard.summary()}

    @app.post("/analytics/api/rebuild", include_in_schema=False)
    def analytics_rebuild() -> JSONResponse:
        return JSONResponse(dashboard.build(), status_code=202)

    @app.get("/analytics/{name}", include_in_schema=False)
    def analytics_file(name: str) -> Response:
        path = dashboard.file(name)
        if path is None:
            raise HTTPException(404, f"no report file {name!r}")
        return FileResponse(path)

    return dashboard


def _shop(template: str, title: str, here: str, **values: Any) -> str:
    name = template.removesuffix(".html")
    return render(template, title=title, here=here, scripts=("shop.js",), page_name=name, **values)


def _dimension(by: str) -> Any:
    if by not in DIMENSIONS:
        raise HTTPException(422, f"by: must be one of {', '.join(DIMENSIONS)}, not {by!r}")
    return by


def _analytics_html(dashboard: AnalyticsDashboard) -> str:
    state = dashboard.state
    return render(
        "analytics.html",
        title="Analytics",
        here="/analytics/",
        scripts=("analytics.js",),
        store=shown_url(dashboard.store_url),
        status=state["status"],
        error=state.get("error", ""),
        sections=dashboard.sections() if state["status"] != "building" else None,
        dimensions=DIMENSIONS,
    )
