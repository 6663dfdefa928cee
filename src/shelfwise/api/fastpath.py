"""A cheaper request path for the hottest routes, with FastAPI's behaviour on every other request.

FastAPI solves a route's parameters by reflection on every request: for a shopper's
recommendations (a query model, a path parameter, the caller and its two documented security
schemes) that was about half of a cached answer's CPU. A route of class ``Bound`` whose endpoint
has a *binder* (``bind(endpoint)``) first tries the binder: it reads the path and the query
directly and validates them with a pydantic model holding the same constraints as the route's
signature. Only a request the binder accepts as a whole takes this path; anything else (a value
that fails a constraint, a repeated or unknown query parameter, dependency overrides) is handed to
FastAPI's own handler, so every error answer (422 bodies, field names, messages) is FastAPI's,
unchanged. The signature still documents the route: the OpenAPI document does not change.

    @router.get("/v1/search", ...)
    async def search(svc: Svc, caller: CallerDep, q: ..., page: ... = 1) -> SearchOut: ...
    bind(search, SearchParams, path={}, lists=("brand", "attribute"))

The tests compare both paths' answers (status, headers, body) on valid and invalid requests.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import ResponseValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError

from shelfwise.api.auth import caller_of

Binder = Callable[[Request], dict[str, Any] | None]
_BINDERS: dict[Callable[..., Any], Binder] = {}


def bind(
    endpoint: Callable[..., Any],
    params: type[BaseModel],
    *,
    model_arg: str | None = None,
    path: dict[str, tuple[int, int]] | None = None,
    lists: tuple[str, ...] = (),
) -> None:
    """Give ``endpoint`` a binder: its query validated by ``params`` (passed whole as ``model_arg``,
    or field by field), its ``path`` parameters (strings) checked against (min, max) lengths, plus
    ``svc`` and ``caller``. ``lists``: query parameters that may repeat (a list each)."""
    names = frozenset(params.model_fields)
    path = path or {}
    listed = frozenset(lists)
    validate = params.model_validate
    takes_caller = "caller" in inspect.signature(endpoint).parameters

    def binder(request: Request) -> dict[str, Any] | None:
        values: dict[str, Any] = {}
        raw = request.scope.get("query_string", b"")
        if raw:
            for key, value in request.query_params.multi_items():
                if key not in names:
                    return None  # FastAPI decides what an unknown parameter means
                if key in listed:
                    values.setdefault(key, []).append(value)
                elif key in values:
                    return None  # a repeated single value: FastAPI's rule (the last one)
                else:
                    values[key] = value
        try:
            query = validate(values)
        except ValidationError:
            return None  # FastAPI answers the 422, naming each field
        out: dict[str, Any] = {}
        if path:
            found = request.path_params
            for name, (shortest, longest) in path.items():
                value = found.get(name)
                if not isinstance(value, str) or not shortest <= len(value) <= longest:
                    return None
                out[name] = value
        out["svc"] = request.app.state.services
        if takes_caller:
            out["caller"] = caller_of(request)
        if model_arg is not None:
            out[model_arg] = query
        else:
            out.update(query.__dict__)
        return out

    _BINDERS[endpoint] = binder


class Bound(APIRoute):
    """An ``APIRoute`` that answers through the endpoint's binder when it has one and accepts the
    request; otherwise (and for every other route) exactly as ``APIRoute``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        slow = super().get_route_handler()
        binder = _BINDERS.get(self.endpoint)
        if binder is None:
            return slow
        endpoint, field = self.endpoint, self.response_field

        async def handler(request: Request) -> Response:
            if request.app.dependency_overrides:
                return await slow(request)
            kwargs = binder(request)
            if kwargs is None:
                return await slow(request)
            raw = await endpoint(**kwargs)
            if isinstance(raw, Response):
                return raw
            # what FastAPI does with a returned model: validate and dump by the response model
            assert field is not None
            value, errors = field.validate(raw, {}, loc=("response",))
            if errors:  # never for our own models; as FastAPI's handler
                raise ResponseValidationError(errors=errors, body=raw)
            return Response(content=field.serialize_json(value, by_alias=True), media_type="application/json")

        handler.slow = slow  # type: ignore[attr-defined]  # the tests compare both paths
        return handler
