"""The trust services the served half calls (no HTTP): consent seen by a second worker process
within a second (real Redis, real stores), a shopper's export with the tables later features add,
and the admin explanation of a recommendation already served."""

from __future__ import annotations

import multiprocessing as mp
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa

from shelfwise.core.settings import Settings
from shelfwise.data.privacy import Pseudonymizer
from shelfwise.data.readers import get_format
from shelfwise.features.dataset import Dataset
from shelfwise.registry import ModelRegistry
from shelfwise.store import open_store
from shelfwise.store.consent import set_consent
from shelfwise.store.erasure import user_footprint
from shelfwise.store.ingest import ingest_events
from shelfwise.trust.consent_sync import ConsentView
from shelfwise.trust.explaining import explain
from shelfwise.trust.rights import export_shopper
from tests.conftest import ONLINE_RETAIL, TEST_KEY

REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture
def prefix() -> Iterator[str]:
    name = f"shelfwise-test-{uuid.uuid4().hex[:8]}:"
    yield name
    client = redis.Redis.from_url(REDIS)
    keys = list(client.scan_iter(f"{name}*"))
    if keys:
        client.delete(*keys)


def _worker(url: str, redis_url: str | None, prefix: str, poll: float, user: str, out: Any) -> None:
    """A serving worker: answers "may I personalise?" for ``user`` in a loop, as requests would,
    and reports the wall time it first sees the answer turn to no."""
    client = redis.Redis.from_url(redis_url) if redis_url else None
    with open_store(url) as store:
        view = ConsentView(store, redis=client, prefix=prefix, poll_seconds=poll)
        assert view.personalise(user)  # cached from here on
        out.put(("ready", time.time()))
        deadline = time.time() + 20
        while time.time() < deadline:
            if not view.personalise(user):
                out.put(("off", time.time()))
                return
            time.sleep(0.002)
        out.put(("timeout", time.time()))


def _seen_by_other_worker(
    url: str, *, redis_url: str | None, prefix: str, poll: float, via_view: bool
) -> float:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    user = "shopper-1"
    proc = ctx.Process(target=_worker, args=(url, redis_url, prefix, poll, user, out))
    proc.start()
    try:
        kind, _ = out.get(timeout=60)
        assert kind == "ready"
        time.sleep(0.3)  # the worker has answered from its cache for a while
        with open_store(url) as store:
            if via_view:
                client = redis.Redis.from_url(redis_url) if redis_url else None
                ConsentView(store, redis=client, prefix=prefix).set(user, no_personalisation=True)
            else:
                set_consent(store, user, no_personalisation=True)  # a writer that knows no Redis
            changed = time.time()
        kind, seen = out.get(timeout=30)
        assert kind == "off"
        return seen - changed
    finally:
        proc.join(timeout=10)
        if proc.is_alive():
            proc.kill()


def test_consent_reaches_a_second_worker_within_a_second_through_redis(
    fresh_pg_url: str, prefix: str
) -> None:
    # the store's own stamp is polled only every 30 s here: only the Redis stamp can be this quick
    lag = _seen_by_other_worker(fresh_pg_url, redis_url=REDIS, prefix=prefix, poll=30.0, via_view=True)
    assert lag < 1.0


def test_consent_reaches_a_second_worker_without_redis_through_the_store_stamp(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    with open_store(url):
        pass
    lag = _seen_by_other_worker(url, redis_url=None, prefix="x:", poll=0.5, via_view=False)
    assert lag < 1.0


def test_a_consent_view_answers_from_its_cache_until_the_stamp_moves(sqlite_url: str, prefix: str) -> None:
    client = redis.Redis.from_url(REDIS)
    with open_store(sqlite_url) as store:
        a = ConsentView(store, redis=client, prefix=prefix, poll_seconds=3600)
        b = ConsentView(store, redis=client, prefix=prefix, poll_seconds=3600)
        assert a.personalise("u") and b.personalise("u")
        set_consent(store, "u", no_personalisation=True)  # behind both views' backs, no stamp moved
        assert b.personalise("u")  # the cache holds: the stamp is what tells a worker
        a.set("u", no_personalisation=True)
        assert not b.personalise("u") and b.reloads == 1
        a.set("u", no_personalisation=False)
        assert b.personalise("u")


def test_a_consent_view_answers_shoppers_it_never_saw_from_one_read_of_the_table(
    sqlite_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only shoppers who turned a flag on have a row: a small table is read whole once per stamp, so
    a shopper the worker never saw costs no store read; a bigger one is read shopper by shopper."""
    from shelfwise.trust import consent_sync

    per_shopper: list[str] = []
    real = consent_sync.get_consent

    def counted(store: Any, user_id: str) -> Any:
        per_shopper.append(user_id)
        return real(store, user_id)

    monkeypatch.setattr(consent_sync, "get_consent", counted)
    client = redis.Redis.from_url(REDIS)
    with open_store(sqlite_url) as store:
        set_consent(store, "off", no_personalisation=True)
        view = ConsentView(store, redis=client, prefix=prefix, poll_seconds=3600)
        assert not view.personalise("off")
        assert all(view.personalise(f"new-{i}") for i in range(50))
        assert per_shopper == []
        other = ConsentView(store, redis=client, prefix=prefix, poll_seconds=3600)
        other.set("new-7", no_personalisation=True)  # the stamp moves: the table is read again
        assert not view.personalise("new-7") and view.personalise("off") is False
        assert view.personalise("new-8") and per_shopper == []
        small = ConsentView(store, redis=client, prefix=prefix, poll_seconds=3600, snapshot_limit=1)
        assert not small.personalise("new-7")  # two rows > 1: shopper by shopper
        assert per_shopper == ["new-7"]


def _load(tmp_path: Path, limit: int) -> str:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    settings = Settings(var_dir=tmp_path / "var", pseudonym_key=TEST_KEY)
    with open_store(url) as store:
        ingest_events(store, ONLINE_RETAIL, get_format("online-retail"), settings, limit=limit)
    return url


@pytest.fixture
def loaded(tmp_path: Path) -> str:
    return _load(tmp_path, 6000)


def test_export_shopper_holds_the_tables_later_features_add_and_nothing_of_another(
    loaded: str, tmp_path: Path
) -> None:
    pseudo = Pseudonymizer(TEST_KEY.encode())
    shopper, other = pseudo("17850"), pseudo("13047")
    with open_store(loaded) as store:
        with store.engine.begin() as conn:  # type: ignore[attr-defined]
            conn.exec_driver_sql(
                "CREATE TABLE experiment_assignments (user_id TEXT, experiment TEXT, arm TEXT)"
            )
            conn.exec_driver_sql("CREATE TABLE later_feature_rows (user_id TEXT, item_id TEXT, ts INTEGER)")
            conn.execute(
                sa.text("INSERT INTO experiment_assignments VALUES (:u, 'recs-1', :a)"),
                [{"u": shopper, "a": "treatment"}, {"u": other, "a": "control"}],
            )
            conn.execute(
                sa.text("INSERT INTO later_feature_rows VALUES (:u, 'i1', 1)"), [{"u": shopper}, {"u": other}]
            )
        out = export_shopper(store, tmp_path / "models", shopper)
        footprint = user_footprint(store, shopper)
    assert out["user_id"] == shopper
    for place, count in footprint.items():
        assert out["counts"][place] == count
    assert out["counts"]["events"] > 0
    assert out["tables"]["experiment_assignments"] == [
        {"user_id": shopper, "experiment": "recs-1", "arm": "treatment"}
    ]
    assert out["tables"]["later_feature_rows"] == [{"user_id": shopper, "item_id": "i1", "ts": 1}]
    assert out["not_recorded"] == {}
    assert out["segment"]["available"] and out["segment"]["rfm"]["user_id"] == shopper
    assert other not in str(out)


def test_explain_gives_the_full_attribution_of_a_served_recommendation(tmp_path: Path) -> None:
    from shelfwise.registry import TrainingConfig, train_version

    # a week of invoices: enough later purchases for the hybrid's inner split to train a ranker
    url = _load(tmp_path, 20_000)
    with open_store(url) as store:
        ds = Dataset.from_store(store)
        registry = ModelRegistry(tmp_path / "models")
        train_version(ds, registry, TrainingConfig(recommender={"model": "hybrid", "rounds": 30}), force=True)
        model = registry.load(registry.active).recommender  # type: ignore[arg-type]
        user = Pseudonymizer(TEST_KEY.encode())("17850")
        served = model.recommend([user], k=5)[0]
        out = explain(registry, store, served)
    assert [row["item"] for row in out["items"]] == served.items
    assert out["missing"] == []
    for row, reason in zip(out["items"], served.reasons, strict=True):
        assert row["served_reason"] == reason
        assert sum(row["contributions"].values()) + row["base_value"] == pytest.approx(row["score"], abs=1e-4)
        assert row["top_feature"] in row["contributions"] and "features" in row
    assert 0.0 <= out["fidelity"] <= 1.0
