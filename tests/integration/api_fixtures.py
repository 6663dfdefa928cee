"""Fixtures for the service tests: a store built from a slice of Online Retail, a registry with
a trained, active version and the store's search index — built once per run (registered in
``conftest.py``), copied for each test."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shelfwise.api.security import hash_key
from shelfwise.core.settings import Settings
from shelfwise.data.readers import get_format
from shelfwise.features.dataset import Dataset
from shelfwise.registry import ModelRegistry, TrainingConfig, train_version
from shelfwise.serving.search_service import build_search
from shelfwise.store import open_store
from shelfwise.store.ingest import ingest_events
from tests.conftest import TEST_KEY

API_KEY = "test-api-key-9f8e7d"
# fast to fit: item-kNN, and bought-together without association-rule mining
FAST = TrainingConfig(
    recommender={"model": "itemknn"}, bought_together={"model": "bought-together", "max_rules": 0}
)
KNOWN_USER = "17850"  # the first customer of the Online Retail file


@dataclass
class Served:
    root: Path

    @property
    def url(self) -> str:
        return f"sqlite:///{self.root / 'store.db'}"

    @property
    def models(self) -> Path:
        return self.root / "models"

    def settings(self, **overrides: object) -> Settings:
        base: dict[str, object] = {
            "var_dir": self.root / "var",
            "pseudonym_key": TEST_KEY,
            "api_key_hashes": [hash_key(API_KEY)],
            "models_dir": self.models,
            # the analytics report builds in a child process for a minute: only tests of it ask
            "dashboard_on_start": False,
        }
        return Settings(**{**base, **overrides})  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def served_template(tmp_path_factory: pytest.TempPathFactory, retail_slice: Path) -> Path:
    root = tmp_path_factory.mktemp("served")
    served = Served(root)
    settings = served.settings()
    with open_store(served.url) as store:
        ingest_events(store, retail_slice, get_format("online-retail"), settings)
        ds = Dataset.from_store(store)
    train_version(ds, ModelRegistry(served.models), FAST)
    # the search index an app builds on its first start (var/indexes, the tests' keyword mode): built
    # once here, so each copy's app loads it instead of building it again
    with open_store(served.url) as store:
        build_search(store, settings)
    return root


@pytest.fixture
def served(served_template: Path, tmp_path: Path) -> Served:
    """A copy of the template for one test (the template itself is never changed)."""
    root = tmp_path / "served"
    shutil.copytree(served_template, root)
    return Served(root)


def reader(app: Any) -> dict[str, str]:
    """Headers with a new ``read`` key of ``app``'s key ring: what a shop's back end sends to read
    its shoppers' personal answers."""
    from shelfwise.core.access import Role

    key, _ = app.state.services.keys.create(Role.READ, "tests")
    return {"X-API-Key": key}
