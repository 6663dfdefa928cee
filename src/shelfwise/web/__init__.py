"""Layer 8: web pages (storefront, analytics dashboard, operations), served by the API's app.

``shelfwise.api.app.create_app`` calls ``mount(app, services)``; the pages call the same JSON API
a shop's own front end would call.
"""

from __future__ import annotations

from typing import Any


def key_ring(services: Any) -> Any:
    """The API's key ring (``services.keys``: ``var/keys.json`` and the fixed admin keys), so a
    key created or revoked with ``shelfwise keys`` counts for the pages exactly as for the API."""
    from shelfwise.core.access import KeyRing

    ring = getattr(services, "keys", None)
    if not isinstance(ring, KeyRing):
        raise TypeError("the pages need the API's key ring (services.keys)")
    return ring


def mount(app: Any, services: Any) -> None:
    """Add the pages to the API's app (``services``: the API's ``Services``)."""
    from shelfwise.web.access import PageAccess
    from shelfwise.web.ops import Operations
    from shelfwise.web.pages import mount_pages

    settings = services.settings
    store_url = getattr(services, "store_url", None) or services.store.url
    dashboard = mount_pages(
        app,
        store_url=store_url,
        var_dir=settings.var_dir,
        access=PageAccess.from_ring(key_ring(services), settings.var_dir),
        operations=Operations(services.registry, services.live, services.metrics),
        build_report=getattr(settings, "dashboard_on_start", False),
        demo_users=getattr(settings, "demo_users", ()),
    )
    # the app's lifespan runs these when the server stops
    app.state.closers = [*getattr(app.state, "closers", []), dashboard.close]
