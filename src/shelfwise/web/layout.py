"""Templates (Jinja2, autoescaped) and the navigation every page shares."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

TEMPLATES = Path(__file__).with_name("templates")
NAV = (
    ("/", "Home"),
    ("/search", "Search"),
    ("/cart", "Cart"),
    ("/analytics/", "Analytics"),
    ("/ops", "Operations"),
    ("/merchant", "Merchandising"),
    ("/experiments", "Experiments"),
)


@cache
def _env() -> Environment:
    # autoescape for every template, whatever its name: data never becomes markup by accident
    return Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(default=True, default_for_string=True),
    )


def render(
    template: str,
    *,
    title: str,
    here: str = "",
    scripts: tuple[str, ...] = (),
    session: Any = None,
    **values: Any,
) -> str:
    """A whole page from ``templates/<template>``. Scripts load from ``/static`` after ``dom.js``
    (no inline script anywhere, so the CSP can say ``script-src 'self'``); ``session`` (a signed-in
    page session) adds its CSRF token and a sign-out button."""
    return (
        _env()
        .get_template(template)
        .render(
            title=title,
            here=here,
            # header.js: the search box's autocomplete, on every page with scripts
            scripts=("dom.js", "header.js", *scripts) if scripts else (),
            nav=NAV,
            session=session,
            **values,
        )
    )
