"""Analytics fixtures: real data ingested once per session into SQLite stores, read as snapshots.

- ``retail_customers``: every Online Retail line of the customers whose id ends in 1 (a tenth of
  the customers, their whole year) plus the guest lines of the first week: enough history for
  churn windows and demand series, small enough to ingest in seconds.
- ``rees46``: the shared REES46 sample (one day of views, carts and purchases), skipped when absent.
"""

from __future__ import annotations

import csv
import gzip
from collections.abc import Iterator
from pathlib import Path

import pytest

from shelfwise.core.settings import Settings
from shelfwise.data.readers import get_format
from shelfwise.store import open_store
from shelfwise.store.analytical import AnalyticalStore
from shelfwise.store.ingest import ingest_events
from tests.conftest import ONLINE_RETAIL, SHARED, TEST_KEY

REES46 = SHARED / "rees46_sample" / "events.csv"


def retail_customer_slice(out: Path) -> Path:
    with (
        gzip.open(ONLINE_RETAIL, "rt", encoding="utf-8", newline="") as src,
        out.open("w", newline="") as dst,
    ):
        reader = csv.reader(src)
        writer = csv.writer(dst)
        writer.writerow(next(reader))
        for row in reader:
            customer = row[6].removesuffix(".0")
            if customer.endswith("1") or (not customer and row[4] < "2010-12-08"):
                writer.writerow(row)
    return out


def ingest_into(tmp: Path, path: Path, fmt: str) -> str:
    url = f"sqlite:///{tmp / 'store.db'}"
    settings = Settings(var_dir=tmp / "var", pseudonym_key=TEST_KEY)
    with open_store(url) as store:
        ingest_events(store, path, get_format(fmt), settings)
    return url


@pytest.fixture(scope="session")
def retail_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    tmp = tmp_path_factory.mktemp("retail_customers")
    return ingest_into(tmp, retail_customer_slice(tmp / "retail.csv"), "online-retail")


@pytest.fixture(scope="session")
def retail(retail_url: str) -> Iterator[AnalyticalStore]:
    with AnalyticalStore.open(retail_url) as db:
        yield db


@pytest.fixture(scope="session")
def rees46_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    if not REES46.exists():
        pytest.skip(f"shared REES46 sample not found at {REES46}")
    return ingest_into(tmp_path_factory.mktemp("rees46"), REES46, "rees46")


@pytest.fixture(scope="session")
def rees46(rees46_url: str) -> Iterator[AnalyticalStore]:
    with AnalyticalStore.open(rees46_url) as db:
        yield db
