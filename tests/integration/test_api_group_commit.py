"""Group commit of API events on a real SQLite store: every acknowledged event is stored, each
request gets its own count of new events and duplicates, and concurrent requests share commits."""

from __future__ import annotations

import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from shelfwise.data.schemas import Event, EventType
from shelfwise.serving.event_writer import GroupCommitter
from shelfwise.store import open_store


def _events(request: int, n: int, *, ids: list[str] | None = None) -> list[Event]:
    return [
        Event(
            event_id=(ids[i] if ids else f"r{request}-e{i}"),
            type=EventType.VIEW,
            ts=1_700_000_000_000 + request * 100 + i,
            user_id=f"user-{request % 7}",
            item_id=f"item-{i}",
        )
        for i in range(n)
    ]


def test_no_acknowledged_event_is_lost_and_concurrent_requests_share_commits(tmp_path: Path) -> None:
    path = tmp_path / "shop.db"
    with open_store(f"sqlite:///{path}") as store:
        committer = GroupCommitter(store)
        # another writer holds SQLite's write lock for a moment: the requests arriving meanwhile
        # must queue behind one commit and go out together, not one transaction each
        blocker = sqlite3.connect(path, timeout=30, check_same_thread=False)
        blocker.execute("BEGIN IMMEDIATE")
        release = threading.Timer(0.5, blocker.rollback)
        release.start()
        requests = 120
        # every 10th request repeats the ids of request 0: stored once, counted as duplicates
        shared = [f"shared-{i}" for i in range(3)]

        def post(r: int) -> tuple[int, int]:
            events = _events(r, 3, ids=shared if r % 10 == 0 else None)
            return r, committer.append(events)

        with ThreadPoolExecutor(24) as pool:
            acknowledged = dict(pool.map(post, range(requests)))
        release.join()
        blocker.close()
        committer.close()

        stored = {e.event_id for e in store.iter_events()}
        duplicates_posted = [r for r in range(requests) if r % 10 == 0]
        assert sum(acknowledged.values()) == len(stored) == 3 * (requests - len(duplicates_posted)) + 3
        # exactly one of the requests that posted the shared ids was told it stored them
        assert sorted(acknowledged[r] for r in duplicates_posted) == [0] * (len(duplicates_posted) - 1) + [3]
        assert all(acknowledged[r] == 3 for r in range(requests) if r % 10)
        assert set(shared) <= stored
        assert committer.requests == requests and committer.commits < requests / 2


def test_a_closed_writer_commits_what_waits_and_refuses_more(tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path / 'shop.db'}") as store:
        committer = GroupCommitter(store)
        assert committer.append(_events(1, 5)) == 5
        committer.close()
        started = time.perf_counter()
        try:
            committer.append(_events(2, 1))
        except RuntimeError as exc:
            assert "closed" in str(exc)
        else:
            raise AssertionError("a closed writer accepted events")
        assert time.perf_counter() - started < 1.0
        assert len(list(store.iter_events())) == 5
