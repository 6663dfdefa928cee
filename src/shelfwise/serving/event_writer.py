"""Group commit of API events: many concurrent requests share one store transaction.

Each ``POST /v1/events`` hands its (already validated) events to ``GroupCommitter.append`` and
waits. One writer thread takes everything waiting, stores it with ``Store.append_event_groups``
(one transaction, one commit) and then wakes every request of that group with its own count. A
request is answered only after the commit that holds its events returned, so an acknowledged
(``202``) event is stored; while one commit runs the next group gathers, so under load the cost
of a commit (the SQLite write lock, the WAL append) is paid once per group, not once per request.

When a group's transaction fails, its requests are retried one by one, so a single bad request
(or a transient lock) fails only itself.

    committer = GroupCommitter(store)
    inserted = committer.append(events)   # blocks until committed
    committer.close()

Events taken while the store is down go to the local journal (``open_journal``) and are replayed
into the store when it answers again.
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

from shelfwise.core.logging import get_logger
from shelfwise.data.schemas import Event
from shelfwise.serving.metrics import Metrics
from shelfwise.store import Store
from shelfwise.store.journal import EventJournal

log = get_logger(__name__)


class GroupCommitter:
    def __init__(self, store: Store, *, max_events: int = 20_000) -> None:
        self.store = store
        self.max_events = max_events
        self._pending: deque[tuple[Sequence[Event], cf.Future[int]]] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self.commits = 0  # transactions committed (for tests and metrics)
        self.requests = 0  # requests they held
        # told the events of each commit, after the requests were woken (attribution queues them)
        self.on_commit: Callable[[Sequence[Event]], None] | None = None
        self._thread = threading.Thread(target=self._run, name="shelfwise-group-commit", daemon=True)
        self._thread.start()

    def append(self, events: Sequence[Event], *, timeout: float | None = None) -> int:
        """Store ``events`` (with those of concurrent callers); how many were new. Raises what the
        store raised when the commit failed: nothing of this call was acknowledged then. After
        ``timeout`` seconds without a commit (a hung store) raises ``TimeoutError``: the events may
        still be committed later, so the caller's fallback must be idempotent (the journal is)."""
        if not events:
            return 0
        future: cf.Future[int] = cf.Future()
        with self._cond:
            if self._closed:
                raise RuntimeError("the event writer is closed")
            self._pending.append((events, future))
            self._cond.notify()
        return future.result(timeout)

    def close(self) -> None:
        """Commit what is waiting, then stop."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=30)

    def _take(self) -> list[tuple[Sequence[Event], cf.Future[int]]]:
        with self._cond:
            while not self._pending and not self._closed:
                self._cond.wait()
            group, size = [], 0
            while self._pending and (not group or size + len(self._pending[0][0]) <= self.max_events):
                item = self._pending.popleft()
                group.append(item)
                size += len(item[0])
            return group

    def _run(self) -> None:
        while True:
            group = self._take()
            if not group:
                return  # closed and drained
            try:
                counts = self.store.append_event_groups([events for events, _ in group])
            except Exception as exc:
                if len(group) == 1:
                    group[0][1].set_exception(exc)
                    continue
                log.warning("group commit failed; committing its requests one by one", error=repr(exc))
                for events, future in group:
                    try:
                        future.set_result(self.store.append_events(events))
                    except Exception as one_exc:
                        future.set_exception(one_exc)
                    else:
                        self._committed([events])
                continue
            self.commits += 1
            self.requests += len(group)
            for (_, future), count in zip(group, counts, strict=True):
                future.set_result(count)
            self._committed([events for events, _ in group])

    def _committed(self, groups: list[Sequence[Event]]) -> None:
        if self.on_commit is None:
            return
        try:
            self.on_commit([e for events in groups for e in events])
        except Exception as exc:  # the events are stored: a follower's failure is only logged
            log.warning("after-commit hook failed", error=repr(exc))


def open_journal(var_dir: Path, store: Store, metrics: Metrics) -> EventJournal:
    """The event journal under ``var_dir/journal`` (one per replica: give each its own var_dir),
    replayed in the background, its backlog exported as ``shelfwise_event_journal_backlog``."""
    from prometheus_client import Counter, Gauge

    journal = EventJournal(var_dir / "journal")
    failures = Counter(
        "shelfwise_event_journal_replay_failures",
        "journal replays that failed (the store still down, or a bug: see the log)",
        registry=metrics.registry,
    )
    Gauge(
        "shelfwise_event_journal_backlog",
        "acknowledged events in the local journal, not yet in the store",
        registry=metrics.registry,
    ).set_function(lambda: journal.backlog)
    Gauge(
        "shelfwise_event_journal_replayed",
        "events replayed from the journal into the store since start",
        registry=metrics.registry,
    ).set_function(lambda: journal.replayed_total)
    journal.start_replaying(store, on_error=lambda _exc: failures.inc())
    return journal
