"""The credentials a server accepts: API keys with roles, and shopper tokens."""

from __future__ import annotations

import secrets

from shelfwise.core.access import KeyRing, ShopperTokens, create_secret_file, fixed_roles, hash_key
from shelfwise.core.logging import get_logger
from shelfwise.core.settings import Settings

log = get_logger(__name__)


def admin_key_hashes(settings: Settings) -> list[str]:
    """Configured admin hashes, or the hash of the admin key created once in ``var_dir/api.key``
    (race-free: two processes starting at once end up with one key)."""
    if settings.api_key_hashes:
        return list(settings.api_key_hashes)
    path = settings.var_dir / "api.key"
    existed = path.exists()
    key = create_secret_file(path, lambda: secrets.token_urlsafe(32))
    if not existed:
        log.warning("created an admin API key", path=str(path))
    return [hash_key(key)]


def key_ring(settings: Settings) -> KeyRing:
    """The API keys a server accepts: ``keys.json`` under the access directory (``shelfwise keys``)
    and the fixed admin keys (settings, or ``var_dir/api.key``)."""
    return KeyRing(settings.access_root / "keys.json", fixed=fixed_roles(admin_key_hashes(settings)))


def shopper_tokens(settings: Settings) -> ShopperTokens:
    return ShopperTokens.from_dir(settings.access_root, ttl_s=settings.shopper_token_ttl_seconds)
