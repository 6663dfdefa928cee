"""Schemathesis against the served OpenAPI schema (bounded): no request, however odd, gets a 5xx.

Driven by hand (operations → Hypothesis strategies) rather than through the pytest plugin, which
does not load under this pytest version."""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from shelfwise.api.app import create_app
from tests.integration.api_fixtures import API_KEY, Served

EXAMPLES = 15


def test_no_server_errors_on_any_operation(served: Served) -> None:
    # no rate limit: the fuzzer must reach the routes, not the limiter
    app = create_app(served.settings(rate_limit_per_second=0), served.url, watch_interval=None)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [op.ok() for op in schema.get_all_operations()]
    assert len(operations) >= 20
    calls: list[tuple[str, str, int]] = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        def run(case: Any) -> None:
            if case.path == "/v1/users/{user_id}" and case.method.upper() == "DELETE":
                case.path_parameters = {"user_id": "fuzz-user"}
            response = case.call(headers={"X-API-Key": API_KEY})
            calls.append((case.method, case.path, response.status_code))
            case.validate_response(response, checks=[not_a_server_error])

        run()
    assert not [c for c in calls if c[2] >= 500]
    assert len(calls) >= 5 * len(operations)
