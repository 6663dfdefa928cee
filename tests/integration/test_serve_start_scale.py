"""A start never waits for heavy work (issue 19): a hybrid search index that would embed more
items than ``search_embed_on_start`` answers in keyword mode first (and says so) while a background
thread embeds the catalogue and then swaps the hybrid version in; a first start on a shop with many
events serves popularity at once and leaves the chosen model to a background ``models train``;
the first trained version replaces that stand-in without a gate to beat."""

from __future__ import annotations

import shutil
import time

import pytest
from fastapi.testclient import TestClient

from shelfwise.api.app import create_app
from shelfwise.features.dataset import Dataset
from shelfwise.registry import ModelRegistry, TrainingConfig, train_version
from shelfwise.registry.indexes import IndexRegistry
from shelfwise.registry.training import first_start_version
from shelfwise.store import open_store
from tests.integration.api_fixtures import Served


@pytest.fixture
def served(served: Served) -> Served:
    """A copy whose search index was never built: these tests are about the first starts."""
    shutil.rmtree(served.root / "var" / "indexes")
    return served


def _search(client: TestClient, q: str = "christmas decorations") -> dict:
    answer = client.get("/v1/search", params={"q": q, "size": 10})
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_hybrid_index_is_built_in_the_background_while_keyword_search_answers(
    served: Served,
) -> None:
    settings = served.settings(search_mode="hybrid", search_embed_on_start=0)
    with TestClient(create_app(settings, served.url, watch_interval=None)) as client:
        svc = client.app.state.services  # type: ignore[attr-defined]
        build = svc.search_build
        assert build is not None
        first = _search(client)
        if build.running:  # answered before the embeddings were done: keyword, and it says so
            assert first["mode"] == "bm25" and "-index-bm25-" in first["model_version"]
            assert any("meaning index is being built" in note for note in first["notes"]), first
            assert len(first["hits"]) > 0
        # an item written meanwhile is in the hybrid index once it serves
        written = client.put(
            "/v1/items/NEW-ITEM-1",
            json={"title": "velvet christmas stocking", "category": "seasonal", "price": 3.5},
            headers={"X-API-Key": "test-api-key-9f8e7d"},
        )
        assert written.status_code in (200, 201), written.text
        assert build.join(timeout=300), build.state
        assert build.state == "done", build.error
        after = _search(client)
        assert after["mode"] == "hybrid" and "-index-hybrid-" in after["model_version"]
        assert not any("meaning index" in note for note in after["notes"])
        assert svc.search.get("NEW-ITEM-1") is not None
        assert IndexRegistry(settings.var_dir / "indexes").active == after["model_version"]
    # the next start embeds only the item written meanwhile (under the default threshold): hybrid at once
    again = served.settings(search_mode="hybrid")
    with TestClient(create_app(again, served.url, watch_interval=None)) as client:
        svc = client.app.state.services  # type: ignore[attr-defined]
        assert svc.search_build is None and svc.search_mode == "hybrid"


def test_keyword_stand_in_is_not_activated_and_is_reused(served: Served) -> None:
    from shelfwise.serving.search_service import build_search

    settings = served.settings(search_mode="auto", search_embed_on_start=0)
    with open_store(served.url) as store:
        _, first, build = build_search(store, settings)  # the thread is started by the container only
        assert first.mode == "bm25" and build is not None and build.hybrid
        _, again, build = build_search(store, settings)  # a restart before the hybrid one was built
        assert again.version == first.version and build is not None  # reused, not built twice
    # the stand-in never became the active version: `auto` still wants hybrid
    assert IndexRegistry(settings.var_dir / "indexes").active is None


def test_first_start_serves_popularity_and_the_trained_model_replaces_it(
    served: Served,
) -> None:
    registry = ModelRegistry(served.root / "fresh-models")
    with open_store(served.url) as store:
        ds = Dataset.from_store(store)
        store_id = store.store_id
    started = time.perf_counter()
    first = first_start_version(ds, registry, store_id=store_id)
    assert time.perf_counter() - started < 30
    assert registry.active == first.info.version and first.info.metrics == {}
    assert first.info.model == "popular"
    # the trained version has nothing measured to beat: activated whatever its score
    fast = TrainingConfig(
        recommender={"model": "itemknn"},
        bought_together=None,
        card_robustness_seconds=0,
    )
    trained = train_version(ds, registry, fast, store_id=store_id)
    assert trained.activated and registry.active == trained.info.version
    assert trained.gate.active is None  # no baseline was refitted for the gate
    card = (registry.root / trained.info.version / "model_card.json").read_text()
    assert "not measured when trained" in card


def test_big_catalogue_answers_from_its_first_items_while_the_full_index_is_built(
    served: Served,
) -> None:
    settings = served.settings(search_mode="bm25", search_index_on_start=50)
    with TestClient(create_app(settings, served.url, watch_interval=None)) as client:
        svc = client.app.state.services  # type: ignore[attr-defined]
        build = svc.search_build
        assert build is not None and not build.hybrid
        total = build.total
        first = _search(client, "bag")
        if build.running:  # the stand-in: the first 50 items, and the answer says so
            assert first["model_version"] == f"starting-50-of-{total}"
            assert any("full index of" in note for note in first["notes"]), first
        assert build.join(timeout=120) and build.state == "done", build.error
        after = _search(client, "bag")
        assert "-index-bm25-" in after["model_version"] and not after["notes"]
        assert len(svc.search) == total
        built_version = after["model_version"]
        assert IndexRegistry(settings.var_dir / "indexes").active == built_version
    versions = IndexRegistry(settings.var_dir / "indexes").versions()
    # a restart answers from the first items again while the catalogue is read in the background,
    # then serves the version registered for it: loaded, not built again
    with TestClient(create_app(settings, served.url, watch_interval=None)) as client:
        svc = client.app.state.services  # type: ignore[attr-defined]
        build = svc.search_build
        assert build is not None and build.join(timeout=120) and build.state == "done", build.error
        assert _search(client, "bag")["model_version"] == built_version
        assert len(svc.search) == total
    assert IndexRegistry(settings.var_dir / "indexes").versions() == versions
