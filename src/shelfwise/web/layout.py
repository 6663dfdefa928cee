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
)


@cache
def _env() -> Environment:
    return Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))


def render(template: str, *, title: str, here: str = "", scripts: tuple[str, ...] = (), **values: Any) -> str:
    """A whole page from ``templates/<template>``."""
    return _env().get_template(template).render(title=title, here=here, scripts=scripts, nav=NAV, **values)
