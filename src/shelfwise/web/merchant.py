"""The merchant page (``/merchant``, admin): the shop's placements with their rules, and the search
settings; rules are edited as JSON and saved through the same ``Merchandising`` service the API
and the CLI use, so a save holds on the storefront's next request.

The page is signed in by a session cookie, like ``/ops``; its saves carry the session's CSRF token.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from shelfwise.merchandising.placements import PlacementNotFound
from shelfwise.merchandising.rules import RuleError
from shelfwise.merchandising.service import Merchandising
from shelfwise.web.layout import render
from shelfwise.web.pages import Admin, AdminPage


def mount_merchant(app: FastAPI, merch: Merchandising) -> None:
    """Add ``/merchant`` and its JSON endpoints to ``app``."""

    @app.get("/merchant", response_class=HTMLResponse, include_in_schema=False)
    def merchant_page(caller: AdminPage) -> str:
        return render(
            "merchant.html",
            title="Merchandising",
            here="/merchant",
            scripts=("merchant.js",),
            page_name="merchant",
            session=caller.session,
        )

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
            saved = merch.save_rules(name, body, author="merchant page")
        except PlacementNotFound as exc:
            return JSONResponse({"error": "unknown_placement", "detail": exc.message}, status_code=404)
        except RuleError as exc:
            return _problem(422, f"body.{exc.field}" if exc.field else "body", exc.message)
        return JSONResponse(saved.to_dict())


def _problem(status: int, field: str, message: str) -> JSONResponse:
    return JSONResponse(
        {
            "error": "invalid_request",
            "detail": [{"field": field, "message": message, "type": "rule_invalid"}],
        },
        status_code=status,
    )
