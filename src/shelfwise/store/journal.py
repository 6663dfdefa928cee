"""A durable local journal of events the store could not take.

When the store is down, the API writes the events here instead, ``fsync``s the file and only then
answers 202: an acknowledged event is on disk. A background thread replays the journal into the
store when it answers again; ``event_id`` is the idempotency key, so a replay (or a client's retry
that reached the store directly) stores nothing twice.

Layout: one open segment ``open.jsonl`` (appended, one JSON event per line) and sealed segments
``seg-<ns>.jsonl`` waiting for replay. A segment is deleted only after the store committed every
event in it. A torn last line (the process died mid-write, before the fsync, so it was never
acknowledged) is skipped.

    journal = EventJournal(Path("var/journal"))
    journal.append(events)           # durable when it returns
    journal.replay(store)            # -> events replayed (0 when nothing was pending)
    journal.forget(pseudonym)        # an erased shopper's events, out of every segment

Files change under a lock file (``.lock``, with ``filelock``), so an erasure run from another
process (``shelfwise privacy delete``) can rewrite segments while a server appends to them. A replay
that read a segment before an erasure still goes through the store, whose tombstones refuse the
erased shopper's events.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from filelock import FileLock

from shelfwise.core.logging import get_logger
from shelfwise.data.schemas import Event, validate_event
from shelfwise.store.base import Store

log = get_logger(__name__)

OPEN = "open.jsonl"
LOCK = ".lock"


def store_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` means the store could not be reached or did not commit (worth journaling),
    False for a bug or bad data (which a replay would not fix)."""
    import sqlalchemy as sa

    from shelfwise.core.errors import StoreError

    if isinstance(exc, sa.exc.DBAPIError):
        return isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError) or exc.connection_invalidated
    return isinstance(exc, StoreError | sa.exc.TimeoutError | ConnectionError | TimeoutError)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class EventJournal:
    """An append-only, fsync'd journal of events; safe for the threads of one process."""

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()  # appends and sealing
        self._files = FileLock(str(self.dir / LOCK), timeout=60)  # the same, across processes
        self._replay_lock = threading.Lock()
        self._pending = sum(len(self._read(p)) for p in self._segments(include_open=True))
        self.replayed_total = 0
        self.journaled_total = 0
        self.last_replay_error: str | None = None
        self.replay_failures = 0  # replays that failed (the store still down, or a bug): logged, counted
        self.replay_failures_in_a_row = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- writing ---------------------------------------------------------------------------------
    def append(self, events: Sequence[Event]) -> None:
        """Write ``events`` and fsync; when this returns they survive a crash of the process or host."""
        if not events:
            return
        data = "".join(
            json.dumps(dataclasses.asdict(e), separators=(",", ":"), default=str) + "\n" for e in events
        ).encode()
        with self._lock, self._files:
            path = self.dir / OPEN
            created = not path.exists()
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            if created:
                _fsync_dir(self.dir)  # the new file's name is durable too
            self._pending += len(events)
            self.journaled_total += len(events)

    # --- reading ---------------------------------------------------------------------------------
    @property
    def backlog(self) -> int:
        """Events journaled and not yet replayed into the store."""
        return self._pending

    def _segments(self, *, include_open: bool = False) -> list[Path]:
        sealed = sorted(self.dir.glob("seg-*.jsonl"))
        if include_open and (self.dir / OPEN).exists():
            sealed.append(self.dir / OPEN)
        return sealed

    @staticmethod
    def _read(path: Path) -> list[Event]:
        events = []
        with path.open("rb") as fh:
            for line in fh:
                if not line.endswith(b"\n"):
                    break  # torn tail: never fsync'd, never acknowledged
                try:
                    events.append(validate_event(json.loads(line)))
                except ValueError:
                    log.error("skipping an unreadable journal line", path=str(path))
        return events

    def _seal(self) -> None:
        with self._lock, self._files:
            path = self.dir / OPEN
            if path.exists() and path.stat().st_size > 0:
                os.rename(path, self.dir / f"seg-{time.time_ns():020d}.jsonl")
                _fsync_dir(self.dir)

    # --- replay ----------------------------------------------------------------------------------
    def replay(self, store: Store, *, batch: int = 1_000) -> int:
        """Store every journaled event (oldest segment first); returns how many were replayed.

        Raises the store's error when it is still down; what was replayed so far stays replayed."""
        with self._replay_lock:
            if self._pending == 0 and not self._segments(include_open=True):
                return 0
            self._seal()
            done = 0
            # segments are stored together, ``batch`` events a transaction, and forgotten together
            # with one directory fsync: a store that was down for a while leaves a small segment per
            # failed attempt (each attempt seals what came meanwhile), and a transaction plus an
            # fsync per segment made the replay after an outage cost seconds on a loaded machine
            taken: list[Path] = []
            events: list[Event] = []
            for seg in self._segments():
                more = self._read(seg)
                if events and len(events) + len(more) > batch:
                    done += self._store_and_forget(store, taken, events, batch)
                    taken, events = [], []
                taken.append(seg)
                events.extend(more)
            if taken:
                done += self._store_and_forget(store, taken, events, batch)
            with self._lock:
                if not self._segments(include_open=True):
                    self._pending = 0  # another process may have rewritten segments (``forget``)
            self.replayed_total += done
            self.last_replay_error = None
            return done

    def _store_and_forget(self, store: Store, segments: list[Path], events: list[Event], batch: int) -> int:
        for start in range(0, len(events), batch):
            # commits; the store refuses events of shoppers erased since they were journaled
            store.append_events(events[start : start + batch])
        with self._lock, self._files:
            for seg in segments:
                seg.unlink(missing_ok=True)
            _fsync_dir(self.dir)
            self._pending = max(0, self._pending - len(events))
        return len(events)

    # --- erasure ---------------------------------------------------------------------------------
    def forget(self, user_id: str) -> int:
        """Remove every journaled event of ``user_id`` (a pseudonym) from every segment; how many.

        Each segment that names them is rewritten (temporary file, fsync, rename) under the lock
        file; events of other shoppers stay exactly as they were."""
        needle = f'"user_id":"{user_id}"'.encode()
        removed = 0
        with self._lock, self._files:
            for seg in self._segments(include_open=True):
                try:
                    data = seg.read_bytes()
                except FileNotFoundError:  # replayed meanwhile
                    continue
                if needle not in data:
                    continue
                lines = data.splitlines(keepends=True)
                kept = [line for line in lines if needle not in line]
                removed += len(lines) - len(kept)
                tmp = seg.with_name(f".{seg.name}.tmp")
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                try:
                    os.write(fd, b"".join(kept))
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.replace(tmp, seg)
            if removed:
                _fsync_dir(self.dir)
                self._pending = max(0, self._pending - removed)
        return removed

    def mentions(self, user_id: str) -> int:
        """How many journaled events (not yet replayed) name ``user_id``."""
        needle = f'"user_id":"{user_id}"'.encode()
        found = 0
        for seg in self._segments(include_open=True):
            try:
                found += seg.read_bytes().count(needle)
            except FileNotFoundError:
                continue
        return found

    def start_replaying(
        self,
        store: Store,
        *,
        interval: float = 0.25,
        on_replay: Callable[[int], Any] | None = None,
        on_error: Callable[[BaseException], Any] | None = None,
    ) -> None:
        """Replay in a background thread every ``interval`` seconds while a backlog is pending. A
        failed replay is counted (``replay_failures``, ``on_error``) and logged when it starts failing
        and when it recovers (not every interval: the store may be down for minutes)."""
        if self._thread is not None:
            return

        def loop() -> None:
            while not self._stop.wait(interval):
                if self._pending == 0:
                    continue
                try:
                    n = self.replay(store)
                except Exception as exc:  # the store is still down (or a bug): try again later
                    self._failed(exc, on_error, unavailable=store_unavailable(exc))
                    continue
                if self.replay_failures_in_a_row:
                    log.warning("journal replay works again", failed_attempts=self.replay_failures_in_a_row)
                    self.replay_failures_in_a_row = 0
                if n:
                    log.warning("journal replayed into the store", events=n)
                    if on_replay is not None:
                        on_replay(n)

        self._thread = threading.Thread(target=loop, name="shelfwise-journal-replay", daemon=True)
        self._thread.start()

    def _failed(
        self, exc: BaseException, on_error: Callable[[BaseException], Any] | None, *, unavailable: bool
    ) -> None:
        self.replay_failures += 1
        self.replay_failures_in_a_row += 1
        self.last_replay_error = str(exc).splitlines()[0] if str(exc) else repr(exc)
        if self.replay_failures_in_a_row == 1 or not unavailable:
            # an outage is logged when it starts (the store may be down for minutes); a bug every time
            log.warning(
                "journal replay failed; retrying" if unavailable else "journal replay failed (not an outage)",
                error=self.last_replay_error if unavailable else repr(exc),
                backlog=self._pending,
            )
        if on_error is not None:
            try:
                on_error(exc)
            except Exception as hook_exc:  # a metrics hook must not stop the replay thread
                log.warning("journal replay error hook failed", error=repr(hook_exc))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
