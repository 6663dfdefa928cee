"""The OpenAPI document, made to say what the service does.

FastAPI documents every 422 as its own ``HTTPValidationError`` (``{"detail": [{"loc", "msg",
"type"}]}``), but this service answers ``{"error", "detail": [{"field", "message", "type"}]}``
(``app._error_handlers``, and every 422 a route raises itself). A client generated from the
document, or a fuzzer checking answers against it, would be wrong about every 422; so each
operation's 422 is rewritten to the real body, and FastAPI's two unused models are dropped.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field


class FieldProblem(BaseModel):
    field: str = Field(description="where: body.events.1.price, query.k, path.user_id…")
    message: str
    type: str = Field(description="what kind of problem: greater_than_equal, missing_field…")


class ValidationErrorOut(BaseModel):
    """Every 422: which fields are wrong, and why."""

    error: str = Field(description="invalid_request")
    detail: list[FieldProblem]


def invalid(field: str, message: str, kind: str = "value_error") -> dict[str, Any]:
    """The body of a 422 a route raises itself (the same shape as a validation error's)."""
    return {"error": "invalid_request", "detail": [{"field": field, "message": message, "type": kind}]}


_REF = "#/components/schemas/{model}"


def install(app: FastAPI) -> None:
    """Give ``app`` an OpenAPI document whose 422 answers are the real error body."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            summary=app.summary,
            description=app.description,
            routes=app.routes,
        )
        models = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in (FieldProblem, ValidationErrorOut):
            models[model.__name__] = model.model_json_schema(ref_template=_REF)
        body = {
            "description": "invalid request: each wrong field is named, with why",
            "content": {"application/json": {"schema": {"$ref": _REF.format(model="ValidationErrorOut")}}},
        }
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                responses = operation.get("responses", {})
                if "422" in responses or operation.get("parameters") or operation.get("requestBody"):
                    responses["422"] = body
        for unused in ("HTTPValidationError", "ValidationError"):
            models.pop(unused, None)
        _event_times(models, app)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _event_times(models: dict[str, Any], app: FastAPI) -> None:
    """An event's time. The gate refuses one before the shop's start or ahead of the clock (plus a
    skew tolerance); that bound moves with the clock, so no document could state it: the schema
    gives the type and format only, and such an event is received (202) and listed in
    ``rejections`` with its reason, like every refusal of the gate."""
    settings = app.state.services.settings
    rule = (
        f" Refused by the quality gate (listed in `rejections`, quarantined) when before the shop's "
        f"start ({settings.shop_start}) or more than {settings.future_tolerance_seconds} s ahead of the "
        "server's clock."
    )
    for name in ("ProductEventIn", "MoneyEventIn", "OtherEventIn"):
        ts = models.get(name, {}).get("properties", {}).get("ts")
        if ts is None:
            continue
        # any integer or text is received; the gate parses it (a text that is not ISO 8601 date-time is
        # refused as bad_timestamp, listed and quarantined): a format or length in the document would
        # promise a 422 the service does not give
        ts["description"] = str(ts.get("description", "event time, ms since the epoch or ISO 8601")) + rule
