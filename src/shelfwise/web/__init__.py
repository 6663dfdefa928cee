"""Layer 8: web pages (storefront, analytics dashboard, operations), served by the API's app.

``shelfwise.api.app.create_app`` calls ``mount(app, services)``; the pages call the same JSON API
a shop's own front end would call.
"""

from __future__ import annotations

from typing import Any


def access_root(settings: Any) -> Any:
    """Where the access secrets live (``settings.access_root`` when the settings have one: replicas
    share it), else ``var_dir``."""
    return getattr(settings, "access_root", None) or settings.var_dir


def key_ring(services: Any) -> Any:
    """The API's key ring: ``services.keys`` when it is a ``KeyRing``; otherwise one over the same
    places the API reads keys from: ``keys.json`` and the configured admin key digests (the key
    ``serve`` created in ``var/api.key``, or ``SHELFWISE_API_KEY_HASHES``)."""
    keys = services.keys
    if hasattr(keys, "role_of") and hasattr(keys, "records"):
        return keys
    from shelfwise.core.access import KeyRing, Role, fixed_roles

    return KeyRing(access_root(services.settings) / "keys.json", fixed_roles(keys.hashes, Role.ADMIN))


def mount(app: Any, services: Any) -> None:
    """Add the pages to the API's app (``services``: its ``shelfwise.serving.container.Services``)."""
    from shelfwise.web.access import PageAccess
    from shelfwise.web.ops import Operations
    from shelfwise.web.pages import mount_pages

    settings = services.settings
    store_url = getattr(services, "store_url", None) or services.store.url
    dashboard = mount_pages(
        app,
        store_url=store_url,
        var_dir=settings.var_dir,
        access=PageAccess.from_ring(key_ring(services), access_root(settings)),
        operations=Operations(services.registry, services.live, services.metrics),
        build_report=getattr(settings, "dashboard_on_start", False),
        demo_users=getattr(settings, "demo_users", ()),
        security_headers=False,  # the API's Guard adds them
        pseudonymize=getattr(services, "pseudonymize", None),
        erased_among=services.store.erased_among,
    )
    merch = getattr(services, "merch", None)
    if merch is not None:
        from shelfwise.web.merchant import mount_merchant

        mount_merchant(app, merch)
    feedback = getattr(services, "feedback", None)
    if feedback is not None:
        from shelfwise.web.experiments import mount_experiments

        mount_experiments(app, feedback.experiments)
    # the app's lifespan runs these when the server stops
    app.state.closers = [*getattr(app.state, "closers", []), dashboard.close]
