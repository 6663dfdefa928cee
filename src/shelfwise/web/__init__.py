"""Layer 8: web pages (storefront, analytics dashboard, operations), served by the API's app.

``shelfwise.api.app.create_app`` calls ``mount(app, services)``; the pages call the same JSON API
a shop's own front end would call.
"""

from __future__ import annotations

from typing import Any


def key_ring(services: Any) -> Any:
    """The API's key ring (``services.key_ring``) when it has one; otherwise one over the same
    places the API reads keys from: ``var/keys.json`` and the configured admin key digests (the key
    ``serve`` created in ``var/api.key``, or ``SHELFWISE_API_KEY_HASHES``)."""
    ring = getattr(services, "key_ring", None)
    if ring is not None:
        return ring
    from shelfwise.core.access import KeyRing, Role, fixed_roles

    return KeyRing(services.settings.var_dir / "keys.json", fixed_roles(services.keys.hashes, Role.ADMIN))


def mount(app: Any, services: Any) -> None:
    """Add the pages to the API's app (``services``: the API's ``Services``)."""
    from shelfwise.web.access import PageAccess
    from shelfwise.web.ops import Operations
    from shelfwise.web.pages import mount_pages

    settings = services.settings
    store_url = getattr(services, "store_url", None) or services.store.url
    mount_pages(
        app,
        store_url=store_url,
        var_dir=settings.var_dir,
        access=PageAccess.from_ring(key_ring(services), settings.var_dir),
        operations=Operations(services.registry, services.live, services.metrics),
        build_report=getattr(settings, "dashboard_on_start", False),
        demo_users=getattr(settings, "demo_users", ()),
    )
