"""Issue 19: what ingest keeps in memory across batches stays within its stated size, whatever the
number of rows, and bounding it changes nothing that is stored.

A generated shop (``shelfwise generate``'s model, as ``bench_stream`` ingests it) with far more
shoppers, sessions and time stamps than the limits set here: the pseudonym LRU, the batch gate's
per-rule memos and the shoppers whose pace is followed for bot flags are checked after every
batch, and the store's content (the shoppers' table and flags included) equals that of a run with
limits large enough to hold everything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from shelfwise.core.settings import Settings
from shelfwise.data import batch_gate
from shelfwise.data.privacy import Pseudonymizer
from shelfwise.data.quality import UserActivity
from shelfwise.data.readers import FORMATS
from shelfwise.data.synthetic import ShopConfig, write_shop
from shelfwise.store import ingest as ingest_module
from shelfwise.store import open_store
from shelfwise.store.ingest import ingest_events
from shelfwise.store.tables import events, items, quarantine, users


def _state(url: str) -> dict[str, Any]:
    q = [c for c in quarantine.c if c.name not in ("id", "created_at", "run_id")]
    with open_store(url) as store, store.engine.connect() as conn:  # type: ignore[attr-defined]
        return {
            "events": sorted(tuple(r) for r in conn.execute(sa.select(events))),
            "items": sorted(tuple(r)[:-1] for r in conn.execute(sa.select(items))),  # but updated_ts
            "users": sorted(tuple(r) for r in conn.execute(sa.select(users))),
            "quarantine": sorted(tuple(r) for r in conn.execute(sa.select(*q))),
        }


def test_ingest_caches_stay_bounded_and_store_the_same(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "shop.csv"
    write_shop(ShopConfig(events=6_000, items=400, users=2_000, seed=19), path)
    pseudonymizers: list[Pseudonymizer] = []
    gates: list[batch_gate.BatchEventGate] = []
    paces: list[UserActivity] = []

    class Watched(Pseudonymizer):
        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, **kw)
            pseudonymizers.append(self)

    class WatchedGate(batch_gate.BatchEventGate):
        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, **kw)
            gates.append(self)

    class WatchedPace(UserActivity):
        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, **kw)
            paces.append(self)

    monkeypatch.setattr(ingest_module, "Pseudonymizer", Watched)
    monkeypatch.setattr(ingest_module, "UserActivity", WatchedPace)
    monkeypatch.setattr(ingest_module, "BatchEventGate", WatchedGate)

    def run(
        name: str, *, cache: int, memo: int, pace: int | None
    ) -> tuple[dict[str, Any], list[tuple[int, int, int, int]]]:
        monkeypatch.setattr(batch_gate, "_MEMO_SIZE", memo)
        pseudonymizers.clear()
        gates.clear()
        paces.clear()
        # (records so far, pseudonyms cached, largest memo, shoppers whose pace is followed)
        sizes: list[tuple[int, int, int, int]] = []

        def watch(report: Any) -> None:
            largest = max((len(m) for m in gates[0]._memos.values()), default=0)
            sizes.append((report.records, pseudonymizers[0].cache_entries(), largest, paces[0].held()))

        s = settings.model_copy(
            update={"pseudonym_cache_size": cache, "ingest_batch_size": 500, "bot_pace_capacity": pace}
        )
        url = f"sqlite:///{tmp_path / name}.db"
        with open_store(url) as store:
            report = ingest_events(store, path, FORMATS["csv"], s, on_batch=watch)
        assert report.records == 6_000
        return _state(url), sizes

    small, sizes = run("small", cache=64, memo=50, pace=40)
    assert len(sizes) >= 12  # checked after every batch
    assert all(cached <= 64 and memo <= 50 and held <= 40 for _, cached, memo, held in sizes)
    assert sizes[-1][1] == 64 and sizes[-1][2] >= 40  # the limits were reached, not merely respected
    assert paces[0].evicted > 4 * 40  # shoppers were let go (and refreshed at the end all the same)
    large, sizes = run("large", cache=1_000_000, memo=1_000_000, pace=None)
    assert sizes[-1][1] > 4 * 64  # unbounded, the cache holds every shopper seen (460 here)
    assert sizes[-1][3] > 4 * 40 and paces[0].evicted == 0
    assert small == large


def test_rows_engine_lets_shoppers_go_and_stores_the_same(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The record-by-record engine spills the shoppers it lets go too: the same shoppers' table."""
    path = tmp_path / "shop.csv"
    write_shop(ShopConfig(events=3_000, items=300, users=1_000, seed=7), path)
    paces: list[UserActivity] = []

    class WatchedPace(UserActivity):
        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, **kw)
            paces.append(self)

    monkeypatch.setattr(ingest_module, "UserActivity", WatchedPace)
    states = []
    for name, pace in (("bounded", 30), ("every", None)):
        s = settings.model_copy(update={"ingest_batch_size": 250, "bot_pace_capacity": pace})
        url = f"sqlite:///{tmp_path / name}.db"
        with open_store(url) as store:
            report = ingest_events(store, path, FORMATS["csv"], s, engine="rows")
        assert report.users > 8 * 30  # 268 shoppers
        states.append(_state(url))
    assert paces[0].evicted > 8 * 30 and paces[1].evicted == 0
    assert states[0] == states[1]


def test_indexes_a_killed_bulk_load_left_out_are_built_on_the_next_open(tmp_path: Path) -> None:
    """``bulk_loading`` drops the events indexes for a first load; a run killed before the end
    (``bench_stream``'s time box) leaves them out, and opening the store builds them (on disk)."""
    url = f"sqlite:///{tmp_path / 'killed.db'}"
    with open_store(url) as store, store.engine.begin() as conn:  # type: ignore[attr-defined]
        for index in events.indexes:
            index.drop(conn)
        assert not sa.inspect(conn).get_indexes("events")
    with open_store(url) as store, store.engine.connect() as conn:  # type: ignore[attr-defined]
        names = {ix["name"] for ix in sa.inspect(conn).get_indexes("events")}
        assert names == {ix.name for ix in events.indexes}
        assert conn.exec_driver_sql("PRAGMA temp_store").scalar() == 2  # back to MEMORY after
