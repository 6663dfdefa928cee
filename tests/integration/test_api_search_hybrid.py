"""What is served is what is measured: a hybrid search index version serves the full engine (keyword +
sentence embeddings + adaptive fusion) through ``GET /v1/search``, names itself in every answer, and a
restart over the same catalogue serves the same version without embedding anything again."""

from __future__ import annotations

from fastapi.testclient import TestClient

from shelfwise.api.app import create_app
from tests.integration.api_fixtures import Served


def test_hybrid_search_is_served_and_its_embeddings_survive_a_restart(served: Served) -> None:
    settings = served.settings(search_mode="hybrid")
    cache = settings.var_dir / "embeddings" / "vectors.npy"
    with TestClient(create_app(settings, served.url, watch_interval=None)) as client:
        svc = client.app.state.services  # type: ignore[attr-defined]
        answer = client.get("/v1/search", params={"q": "christmas decorations", "size": 10})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["mode"] == "hybrid" and "-index-hybrid-" in body["model_version"]
        assert body["model_version"] == svc.search_version
        served_ids = [h["item_id"] for h in body["hits"]]
        offline = svc.search.search("christmas decorations", k=10, mode="hybrid")
        assert served_ids == [h.item_id for h in offline.hits]  # the answer is the engine's hybrid ranking
        assert svc.search.dense is not None and len(served_ids) == 10
        # words no title holds can still find items by meaning
        meaning = client.get("/v1/search", params={"q": "xmas ornaments"}).json()["hits"]
        by_meaning = [h["title"] for h in meaning if h["reason"] == "close in meaning to your words"]
        assert any("CHRISTMAS" in title for title in by_meaning), meaning
    assert cache.exists()
    first = cache.stat().st_mtime_ns
    # a restart over the same catalogue serves the same index version and writes no vector
    with TestClient(create_app(settings, served.url, watch_interval=None)) as client:
        again = client.get("/v1/search", params={"q": "christmas decorations", "size": 10}).json()
        assert [h["item_id"] for h in again["hits"]] == served_ids
        assert again["model_version"] == body["model_version"]
    assert cache.stat().st_mtime_ns == first
