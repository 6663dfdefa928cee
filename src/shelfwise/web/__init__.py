"""Layer 8: web pages (storefront, analytics dashboard, operations), served by the API's app.

``shelfwise.api.app.create_app`` calls ``mount(app, services)``; the pages call the same JSON API
a shop's own front end would call.
"""

from __future__ import annotations

from typing import Any


def mount(app: Any, services: Any) -> None:
    """Add the pages to the API's app (``services``: the API's ``Services``)."""
    from shelfwise.web.pages import mount_pages

    settings = services.settings
    store_url = getattr(services, "store_url", None) or services.store.url
    mount_pages(
        app,
        store_url=store_url,
        var_dir=settings.var_dir,
        build_report=getattr(settings, "dashboard_on_start", False),
        demo_users=getattr(settings, "demo_users", ()),
    )
