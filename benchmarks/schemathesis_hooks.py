"""schemathesis hooks for ``benchmarks/schemathesis_run.py``: the refusals the document states in prose.

The merchandising bodies (a placement, a rule set, the search settings and each of their parts) are
documented as the pydantic models that validate them, with every constraint JSON Schema can state
(types, bounds, required fields, ``additionalProperties: false``, which rule kinds and targets, at
most one diversity rule). A few rules compare fields with each other or with the catalogue, which
JSON Schema cannot express; the document states them in the body's description, and the server
refuses them with a documented 422 (``{"error": "invalid_request", "detail": [...]}``):

- ``candidates`` below ``k``, an exploration ``slot`` beyond ``k``, ``price_min`` above ``price_max``;
- two pins at one position, a promotion whose ``end`` is not after its ``start``, two promotions
  live at the same time on the same items or slot;
- a synonym whose terms are the same once lower-cased, two redirects for the same query;
- a synonym term, stop word, query, or boost/bury attribute or value of spaces only (JSON Schema's
  whitespace is not Python's: ``"\x1c"`` is a space to ``str.strip`` only);
- a rule naming an item the catalogue lacks.

schemathesis's ``positive_data_acceptance`` (ST202) expects no 422 for schema-valid data. For these
operations only, the run's config lets a 422 through that check, and ``prose_rule_refusal`` below
takes its place for 422s: a schema-valid body may be refused only by one of the rules above — a
validator's ``Value error`` or the catalogue check — and any other 422 (an unknown field, a bound, a
type: what the document does state) still fails, as ST202 would.
"""

from __future__ import annotations

from typing import Any

import schemathesis

# (method, path) of the operations whose bodies carry the rules above
OPERATIONS = frozenset(
    {
        ("PUT", "/v1/placements/{name}"),
        ("PUT", "/v1/placements/{name}/rules"),
        ("PUT", "/v1/search/settings"),
        *(
            ("PUT", f"/v1/search/settings/{part}")
            for part in ("synonyms", "redirects", "stop_words", "query_rules")
        ),
    }
)
# how the server words a refusal by one of the rules above (RuleError from a pydantic validator, or
# RuleSet.check_items)
_PROSE = ("Value error, ", "in the catalogue")


def _is_prose_rule(problem: Any) -> bool:
    return (
        isinstance(problem, dict)
        and problem.get("type") == "rule_invalid"
        and any(mark in str(problem.get("message", "")) for mark in _PROSE)
    )


@schemathesis.check
def prose_rule_refusal(ctx: Any, response: Any, case: Any) -> bool | None:
    """A schema-valid body refused with a 422 by a rule the document states only in prose."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or response.status_code != 422:
        return None
    if (case.method.upper(), case.operation.path) not in OPERATIONS:
        return None  # positive_data_acceptance covers every other operation as it is
    try:
        body = response.json()
    except ValueError:  # a 422 that is not JSON fails below
        body = None
    problems = body.get("detail") if isinstance(body, dict) else None
    if not problems or not all(_is_prose_rule(p) for p in problems):
        raise AssertionError(
            "Schema-valid request rejected by a rule the document does not state in prose\n"
            f"[422] {response.text[:500]}"
        )
    return True


def config_toml() -> str:
    """The run's config: for ``OPERATIONS`` only, ``positive_data_acceptance`` lets a 422 through
    (``prose_rule_refusal`` checks those); everywhere, ``negative_data_rejection`` counts a 413 (body
    over ``max_request_bytes``) as the refusal it is."""
    statuses = '["2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"]'
    blocks = [
        f'[[operations]]\ninclude-method = "{method}"\ninclude-path = "{path}"\n'
        f"checks.positive_data_acceptance.expected-statuses = {statuses}\n"
        for method, path in sorted(OPERATIONS)
    ]
    # a body over the size limit is refused with 413 (documented), a refusal like 400/422
    rejected = '["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5xx"]'
    head = f"[checks.negative_data_rejection]\nexpected-statuses = {rejected}\n"
    return "\n".join([head, *blocks])
