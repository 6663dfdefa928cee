"""Search fixtures: the real Flipkart catalogues (vendored), an engine over them, the embedding model."""

from __future__ import annotations

import pytest

from shelfwise.data.schemas import Item
from shelfwise.search.dense import Encoder
from shelfwise.search.documents import read_dataset
from shelfwise.search.engine import SearchConfig, SearchEngine


@pytest.fixture(scope="session")
def flipkart_1k() -> list[Item]:
    """1,002 real Flipkart products with category tree, description and specifications."""
    return read_dataset("flipkart-1k")


@pytest.fixture(scope="session")
def keyword_engine(flipkart_1k: list[Item]) -> SearchEngine:
    """A keyword-only engine over the 1k catalogue; tests must not change it (build their own)."""
    return SearchEngine.build(flipkart_1k, SearchConfig(dense=False))


@pytest.fixture(scope="session")
def encoder() -> Encoder:
    """all-MiniLM-L6-v2 from the installed package, loaded once per test run."""
    enc = Encoder()
    enc.model  # noqa: B018 - load now, once
    return enc
