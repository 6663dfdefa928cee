"""The OpenAPI document, made to say what the service does.

FastAPI documents every 422 as its own ``HTTPValidationError`` (``{"detail": [{"loc", "msg",
"type"}]}``), but this service answers ``{"error", "detail": [{"field", "message", "type"}]}``
(``app._error_handlers``, and every 422 a route raises itself). A client generated from the
document, or a fuzzer checking answers against it, would be wrong about every 422; so each
operation's 422 is rewritten to the real body, and FastAPI's two unused models are dropped.

A few routes read their body as plain JSON and validate it themselves (merchandising: the 422 names
``rules[0].position`` and says which rule is at fault). Typed ``dict`` in the signature, FastAPI would
document "any object"; ``documented_body`` gives such a route's document the schema of the model that
really validates it (``additionalProperties: false``, every bound), and the route keeps its own
validation and its 422 body.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field, TypeAdapter


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
_BODY = "x-documented-body"
_BODIES: dict[str, dict[str, Any]] = {}  # documented_body's schemas, by the key its routes carry


def documented_body(
    shape: Any, *, part: str | None = None, drop: tuple[str, ...] = (), description: str = ""
) -> dict[str, Any]:
    """``openapi_extra`` for a route that validates its plain-JSON body itself with ``shape`` (a pydantic
    model or type): the document states ``shape``'s JSON schema (or that of its property ``part``) as
    the request body. ``drop`` removes properties the route takes from elsewhere (a placement's
    ``name`` comes from the path).

    >>> _BODIES[documented_body(list[int])[_BODY]]["schema"]
    {'items': {'type': 'integer'}, 'type': 'array'}
    """
    schema = TypeAdapter(shape).json_schema(ref_template=_REF)
    components = schema.pop("$defs", {})
    if part is not None:
        schema = schema["properties"][part]
    for name in drop:
        schema.get("properties", {}).pop(name, None)
        if name in schema.get("required", []):
            schema["required"] = [r for r in schema["required"] if r != name]
    if description:
        schema["description"] = description
    # the route carries a key, not the schema: FastAPI's encoding of the document drops nulls (defaults)
    key = f"{getattr(shape, '__name__', shape)}:{part}:{','.join(drop)}"
    _BODIES[key] = {"schema": schema, "components": components}
    return {_BODY: key}


def _documented_bodies(schema: dict[str, Any], models: dict[str, Any]) -> None:
    """Put each ``documented_body`` in place of FastAPI's "any object"."""
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            if _BODY not in operation:
                continue
            body = _BODIES[operation.pop(_BODY)]
            for name, definition in body["components"].items():
                if models.setdefault(name, definition) != definition:
                    raise RuntimeError(f"two different schemas named {name!r} in the OpenAPI document")
            content = operation["requestBody"]["content"]["application/json"]
            content["schema"] = body["schema"]


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
        _documented_bodies(schema, models)
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
