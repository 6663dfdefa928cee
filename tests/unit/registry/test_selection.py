"""Serve the best model that meets the latency budget: every candidate trained on the same split,
timed as a server calls it, the best within the budget activated and the decision recorded."""

from __future__ import annotations

from pathlib import Path

import pytest

from shelfwise.core.settings import Settings
from shelfwise.data.readers import get_format
from shelfwise.features.dataset import Dataset
from shelfwise.registry import ModelRegistry
from shelfwise.registry.selection import last_selection, select_best
from shelfwise.registry.versions import RegistryError
from shelfwise.store import open_store
from shelfwise.store.ingest import ingest_events
from tests.conftest import TEST_KEY


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory, retail_slice: Path) -> Dataset:
    root = tmp_path_factory.mktemp("sel")
    settings = Settings(var_dir=root / "var", pseudonym_key=TEST_KEY)
    with open_store(f"sqlite:///{root / 'store.db'}") as store:
        ingest_events(store, retail_slice, get_format("online-retail"), settings)
        return Dataset.from_store(store)


def test_the_best_candidate_within_the_budget_is_activated_and_recorded(
    dataset: Dataset, tmp_path: Path
) -> None:
    reg = ModelRegistry(tmp_path / "models")
    out = select_best(dataset, reg, ["popular", "itemknn"], budget_ms=1000.0, bundles=False, sample_users=50)
    by_model = {c.model: c for c in out.candidates}
    assert set(by_model) == {"popular", "itemknn"}
    best = max(out.candidates, key=lambda c: c.metric)
    assert out.chosen == best.version == reg.active
    assert all(c.p99_ms >= c.p50_ms > 0 for c in out.candidates)
    recorded = last_selection(reg)
    assert recorded is not None and recorded["chosen"] == best.version
    assert best.model in recorded["reason"] and "budget" in recorded["reason"]


def test_a_budget_no_candidate_meets_keeps_the_active_version(dataset: Dataset, tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path / "models")
    first = select_best(dataset, reg, ["popular"], budget_ms=1000.0, bundles=False, sample_users=30)
    out = select_best(dataset, reg, ["itemknn"], budget_ms=0.0, bundles=False, sample_users=30)
    assert out.chosen is None and reg.active == first.chosen
    assert "no candidate met" in out.reason
    with pytest.raises(RegistryError, match="no candidate"):
        select_best(dataset, reg, [], budget_ms=10.0)
