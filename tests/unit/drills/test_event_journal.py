"""The event journal: what it acknowledged survives, replays once, and a torn tail is skipped."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from shelfwise.data.schemas import Event, EventType
from shelfwise.store import open_store
from shelfwise.store.journal import EventJournal, store_unavailable


def _events(n: int, start: int = 0) -> list[Event]:
    return [
        Event(
            event_id=f"e{i}", type=EventType.VIEW, ts=1_600_000_000_000 + i, user_id="u1", item_id=f"i{i % 7}"
        )
        for i in range(start, start + n)
    ]


def test_journaled_events_survive_a_restart_and_replay_once(tmp_path: Path) -> None:
    journal = EventJournal(tmp_path / "journal")
    journal.append(_events(5))
    journal.append(_events(3, start=5))
    assert journal.backlog == 8
    # the process dies with a half-written line (never fsync'd, so never acknowledged)
    with (tmp_path / "journal" / "open.jsonl").open("ab") as fh:
        fh.write(b'{"event_id":"torn","ty')
    again = EventJournal(tmp_path / "journal")  # the restart
    assert again.backlog == 8
    with open_store(f"sqlite:///{tmp_path / 'store.db'}") as store:
        store.append_events(_events(2))  # a client's retry already reached the store
        assert again.replay(store) == 8
        assert store.counts()["events"] == 8  # no duplicates: event_id is the idempotency key
        assert again.backlog == 0
        assert again.replay(store) == 0
    assert not list((tmp_path / "journal").glob("*.jsonl"))


def test_a_store_that_is_down_keeps_the_backlog(tmp_path: Path) -> None:
    journal = EventJournal(tmp_path / "journal")
    journal.append(_events(4))
    with open_store(f"sqlite:///{tmp_path / 'store.db'}") as store:
        store.engine.dispose()
        broken = sa.create_engine("postgresql+psycopg://127.0.0.1:1/nowhere")
        real_engine, store.engine = store.engine, broken
        with pytest.raises(sa.exc.OperationalError) as down:
            store.append_events(_events(1))
        assert store_unavailable(down.value)
        with pytest.raises(sa.exc.OperationalError):
            journal.replay(store)
        assert journal.backlog == 4
        store.engine = real_engine
        assert journal.replay(store) == 4
        assert store.counts()["events"] == 4


def test_bad_data_is_not_mistaken_for_an_outage() -> None:
    assert not store_unavailable(ValueError("bad"))
    assert not store_unavailable(sa.exc.IntegrityError("x", {}, Exception("dup")))


def test_an_outage_full_of_small_segments_replays_in_few_transactions(tmp_path: Path) -> None:
    """Each failed replay attempt seals what came meanwhile, so an outage leaves a segment per attempt;
    the replay after it stores them ``batch`` events a transaction, not one transaction per segment
    (that cost seconds after a 5 s outage on a loaded machine: the drill's store-outage RTO)."""
    journal = EventJournal(tmp_path / "journal")
    with open_store(f"sqlite:///{tmp_path / 'store.db'}") as store:
        real_engine = store.engine
        store.engine = sa.create_engine("postgresql+psycopg://127.0.0.1:1/nowhere")
        for attempt in range(20):  # the store is down: every attempt seals a segment of 3 events
            journal.append(_events(3, start=3 * attempt))
            with pytest.raises(sa.exc.OperationalError):
                journal.replay(store)
        assert len(list((tmp_path / "journal").glob("seg-*.jsonl"))) == 20
        store.engine = real_engine
        transactions = []
        append = store.append_events
        store.append_events = lambda events, **kw: transactions.append(len(events)) or append(events, **kw)  # type: ignore[method-assign]
        assert journal.replay(store, batch=25) == 60
        assert transactions == [24, 24, 12]  # whole segments, at most ``batch`` events each
        assert store.counts()["events"] == 60 and journal.backlog == 0
    assert not list((tmp_path / "journal").glob("*.jsonl"))
