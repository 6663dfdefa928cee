"""Sessions and cached results in the real Redis on 127.0.0.1:6379 (a unique key prefix per test,
removed afterwards): real-time updates, invalidation, and deletion that reaches Redis."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis
from fastapi.testclient import TestClient

from shelfwise.api.app import create_app
from tests.integration.api_fixtures import API_KEY, KNOWN_USER, Served

REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture
def prefix() -> Iterator[str]:
    name = f"shelfwise-test-{uuid.uuid4().hex[:8]}:"
    client = redis.Redis.from_url(REDIS)
    yield name
    keys = list(client.scan_iter(f"{name}*"))
    if keys:
        client.delete(*keys)


def test_sessions_and_cache_live_in_redis_and_deletion_clears_them(served: Served, prefix: str) -> None:
    r = redis.Redis.from_url(REDIS)
    settings = served.settings(redis_url=REDIS, redis_prefix=prefix)
    with TestClient(create_app(settings, served.url, watch_interval=None)) as c:
        svc = c.app.state.services  # type: ignore[attr-defined]
        assert svc.sessions.backend == "redis" and svc.cache.backend == "redis"
        pseudo = svc.pseudonymize(KNOWN_USER)
        url = f"/v1/users/{KNOWN_USER}/recommendations"
        read = {"X-API-Key": API_KEY}  # the admin key reads too
        assert c.get(url, headers=read).json()["cached"] is False
        assert r.exists(f"{prefix}rec:{pseudo}")
        assert c.get(url, headers=read).json()["cached"] is True
        c.post(
            "/v1/events",
            json={"type": "cart", "user_id": KNOWN_USER, "item_id": "71053"},
            headers={"X-API-Key": API_KEY},
        )
        assert r.lrange(f"{prefix}sess:{pseudo}", 0, -1) == [b"71053"]
        assert r.zrange(f"{prefix}cart:{pseudo}", 0, -1) == [b"71053"]
        fresh = c.get(url, headers=read).json()
        assert fresh["cached"] is False and "71053" not in {i["item_id"] for i in fresh["items"]}
        # a second replica sharing Redis sees the same session
        with TestClient(create_app(settings, served.url, watch_interval=None)) as other:
            cart = other.get(url, params={"scenario": "cart"}, headers=read).json()
            assert cart["source"] == "bought_together"
        r.set(f"{prefix}other:{pseudo}", "1")  # any other key under the prefix that names them
        deleted = c.delete(f"/v1/users/{KNOWN_USER}", headers={"X-API-Key": API_KEY}).json()
        assert deleted["verified"] is True and deleted["removed"]["redis_keys"] == 1
        assert {p["place"]: p["checked"] for p in deleted["places"]}["redis_keys"] is True
        assert not list(r.scan_iter(f"{prefix}*{pseudo}"))
