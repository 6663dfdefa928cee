"""The registry bound to its store, and safe under concurrent writers (issue 13, findings 8 and 10):
a version trained on one store is never served over another; two processes erasing and activating
at once lose nothing; a deletion that fails half-way says what failed; an item write stays a
success when the catalogue log cannot be written."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from shelfwise.api.app import create_app
from shelfwise.registry import ModelRegistry
from tests.conftest import TEST_KEY
from tests.integration.api_fixtures import API_KEY, KNOWN_USER, Served
from tests.integration.test_api_server import _free_port
from tests.integration.test_cli import BIN

AUTH = {"X-API-Key": API_KEY}


def _env(served: Served) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHELFWISE_")}
    env.update(
        SHELFWISE_VAR_DIR=str(served.root / "var"),
        SHELFWISE_MODELS_DIR=str(served.models),
        SHELFWISE_PSEUDONYM_KEY=TEST_KEY,
    )
    return env


def test_finding_08_a_registry_never_serves_another_stores_model(served: Served, fresh_pg_url: str) -> None:
    env = _env(served)
    shutil.rmtree(served.models)  # the demo: a model trained on the SQLite store, through the CLI
    cmd = [str(BIN), "models", "train", "--db", served.url, "--model", "itemknn", "--no-bundles", "--json"]
    trained = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert trained.returncode == 0, trained.stderr
    version = json.loads(trained.stdout)["version"]

    # `serve --db postgresql://…/shop` over the same registry: refused at once, saying why
    serve = [str(BIN), "serve", "--db", fresh_pg_url, "--port", str(_free_port()), "--no-train"]
    refused = subprocess.run(serve, env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0
    line = refused.stderr.strip().splitlines()[-1]
    assert version in line and "trained on another store" in line and "SHELFWISE_MODELS_DIR" in line

    # a server already running over PostgreSQL that follows the registry refuses it too
    app = create_app(served.settings(), fresh_pg_url, watch_interval=None)
    with TestClient(app) as client:
        ready = client.get("/readyz", headers=AUTH)  # why is shown to an admin only (finding 13)
        assert ready.status_code == 503 and "trained on another store" in ready.json()["detail"]["model"]
        recs = client.get(f"/v1/users/{KNOWN_USER}/recommendations", headers=AUTH)
        assert recs.status_code == 503 and recs.json()["error"] == "no_model_active"
        assert client.post(f"/v1/admin/models/{version}/activate", headers=AUTH).status_code == 409
    # and over the store it was trained on, it is served
    with TestClient(create_app(served.settings(), served.url, watch_interval=None)) as client:
        assert (
            client.get(f"/v1/users/{KNOWN_USER}/recommendations", headers=AUTH).json()["model_version"]
            == version
        )


def _erasures(root: Path) -> int:
    """The registry's erasure counter, as other processes read it."""
    path = root / "ERASURES"
    return int(json.loads(path.read_text())["erasures"]) if path.exists() else 0


WORKER = textwrap.dedent(
    """
    import sys
    from shelfwise.registry import ModelRegistry
    from shelfwise.serving.signals import ErasureCounter

    root, users, versions = sys.argv[1], sys.argv[2].split(","), sys.argv[3].split(",")
    registry = ModelRegistry(root)
    for n, user in enumerate(users):
        registry.erase_user(user)  # what a deletion does to the registry
        ErasureCounter(registry).note()
        registry.activate(versions[n % len(versions)])
    """
)


def test_finding_10_two_processes_deleting_and_activating_at_once_lose_nothing(served: Served) -> None:
    registry = ModelRegistry(served.models)
    (base,) = registry.versions()
    for n in range(4):  # four more versions (copies with their own ids)
        copy = served.models / f"{base}-copy{n}"
        shutil.copytree(served.models / base, copy)
        meta = json.loads((copy / "version.json").read_text())
        (copy / "version.json").write_text(json.dumps({**meta, "version": copy.name}))
    versions = registry.versions()
    users = [str(u) for u in np.load(served.models / base / "recommender" / "user_ids.npy")][:40]
    before = _erasures(served.models)
    jobs = [
        (users[0::2], [v for v in versions if v.endswith(("copy0", "copy1"))]),
        (users[1::2], [v for v in versions if v.endswith(("copy2", "copy3"))]),
    ]
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(served.models), ",".join(u), ",".join(v)])
        for u, v in jobs
    ]
    assert [p.wait(timeout=600) for p in procs] == [0, 0]
    assert _erasures(served.models) == before + len(users)  # no increment lost
    for version in versions:
        assert registry.verify(version) == [], version  # every rewrite left consistent checksums
        assert all(registry.find_user(u) == [] for u in users[:6]), version
    held = {str(u) for v in versions for u in np.load(served.models / v / "recommender" / "user_ids.npy")}
    assert not held & set(users)  # no erasure undone by the other process's rewrite
    assert registry.active in versions and registry.verify(registry.active) == []


def test_finding_10_a_failed_deletion_says_what_failed_and_an_item_write_survives_the_catalogue_log(
    served: Served,
) -> None:
    app = create_app(served.settings(), served.url, watch_interval=None)
    with TestClient(app) as client:
        # the registry cannot take the erasure counter (a directory where its file belongs)
        (served.models / "ERASURES").mkdir()
        r = client.delete(f"/v1/users/{KNOWN_USER}", headers=AUTH)
        assert r.status_code == 503 and r.headers["Retry-After"], r.text
        body = r.json()
        assert body["error"] == "deletion_incomplete" and set(body["failed"]) == {"erasure_counter"}
        assert body["removed"]["events"] > 0 and body["verified"] is False  # the store rows are gone
        assert {p["place"]: p["found"] for p in body["places"]}["store_events"] is False
        (served.models / "ERASURES").rmdir()
        retry = client.delete(f"/v1/users/{KNOWN_USER}", headers=AUTH)
        assert retry.status_code == 200 and retry.json()["verified"] is True, retry.text

        # the catalogue log cannot be written: the item is stored, and the answer says the rest
        (served.models / "CATALOGUE.log").mkdir()
        item = {"title": "Blue enamel teapot", "category": "Kitchen > Teapots", "price": 9}
        put = client.put("/v1/items/TEAPOT-9", json=item, headers=AUTH)
        assert put.status_code == 200, put.text
        assert put.json()["warnings"] and "other workers were not told" in put.json()["warnings"][0]
        assert client.get("/v1/items/TEAPOT-9").json()["title"] == "Blue enamel teapot"
        assert (
            client.get("/v1/search", params={"q": "enamel teapot"}).json()["hits"][0]["item_id"] == "TEAPOT-9"
        )
        gone = client.delete("/v1/items/TEAPOT-9", headers=AUTH)
        assert gone.status_code == 200 and gone.json()["warnings"]
