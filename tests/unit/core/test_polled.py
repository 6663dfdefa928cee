"""``Polled``: one reader per poll, outside the lock; the others keep the last value; a newer read or
a ``drop()`` wins over an older read; the failure rules; the first value waited for. Real threads,
and a real SQLite table as the slow source where it matters."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from shelfwise.core.polled import Polled

WAIT = 10.0  # seconds a test waits for a thread before it calls the test failed


class Source:
    """Answers ``values`` in turn; a read whose number is in ``hold`` waits until it is released."""

    def __init__(self, *values: Any, hold: tuple[int, ...] = ()) -> None:
        self.values = list(values)
        self.reads = 0
        self.entered = {n: threading.Event() for n in hold}
        self.release = {n: threading.Event() for n in hold}
        self._lock = threading.Lock()

    def __call__(self, last: Any) -> Any:
        with self._lock:
            self.reads += 1
            n = self.reads
        if n in self.release:
            self.entered[n].set()
            assert self.release[n].wait(WAIT), f"read {n} was never released"
        value = self.values[min(n, len(self.values)) - 1]
        if isinstance(value, BaseException):
            raise value
        return value


class Call(threading.Thread):
    """``polled.get()`` in a thread of its own: ``result`` or ``error`` once it is done."""

    def __init__(self, polled: Polled[Any]) -> None:
        super().__init__(daemon=True)
        self.polled = polled
        self.result: Any = None
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self.result = self.polled.get()
        except BaseException as exc:
            self.error = exc

    def done(self) -> Call:
        self.join(WAIT)
        assert not self.is_alive(), "get() never returned"
        return self


def _timed(call: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    return call(), time.perf_counter() - started


def test_one_caller_reads_while_the_others_answer_at_once_with_the_last_value() -> None:
    source = Source("v1", "v2", hold=(2,))
    polled: Polled[str] = Polled(source, every=0.0)
    assert polled.get() == "v1"
    reader = Call(polled)  # the poll is due at once: this one reads, and waits on the source
    assert source.entered[2].wait(WAIT)
    answers = [_timed(polled.get) for _ in range(50)]
    assert {value for value, _ in answers} == {"v1"}
    assert max(seconds for _, seconds in answers) < 0.5
    assert source.reads == 2  # nobody started a second read while the first one waits
    source.release[2].set()
    assert reader.done().result == "v2"
    assert polled.get() == "v2"


def test_a_hung_read_is_not_joined_by_more_reads_when_later_polls_fall_due() -> None:
    source = Source("v1", "v2", "v3", hold=(2,))
    polled: Polled[str] = Polled(source, every=0.02)
    polled.get()
    time.sleep(0.03)
    reader = Call(polled)
    assert source.entered[2].wait(WAIT)
    deadline = time.monotonic() + 0.2  # ten intervals: the poll is due again and again meanwhile
    while time.monotonic() < deadline:
        assert polled.get() == "v1"
        time.sleep(0.005)
    assert source.reads == 2
    source.release[2].set()
    assert reader.done().result == "v2"
    time.sleep(0.03)
    assert polled.get() == "v3"  # the next poll reads as usual


def test_the_value_is_read_again_only_when_the_poll_is_due() -> None:
    source = Source(1, 2, 3)
    polled: Polled[int] = Polled(source, every=0.2)
    assert [polled.get(), polled.get(), polled.get()] == [1, 1, 1]
    time.sleep(0.25)
    assert polled.get() == 2 and source.reads == 2


def test_the_reader_is_given_the_value_last_read_so_it_can_keep_it() -> None:
    seen: list[Any] = []

    def read(last: list[int] | None) -> list[int]:
        seen.append(last)
        return last if last is not None else [1]  # the source did not change: the same object

    polled: Polled[list[int]] = Polled(read, every=0.0)
    first = polled.get()
    assert polled.get() is first and seen == [None, first]


def test_a_drop_wins_over_a_read_that_started_before_it() -> None:
    """The running experiments are read; an experiment is created meanwhile: the list read before
    the create must not be kept, and the next caller reads again without waiting for the old read."""
    source = Source("before", "stale", "after", hold=(2,))
    polled: Polled[str] = Polled(source, every=0.0)
    polled.get()
    old = Call(polled)
    assert source.entered[2].wait(WAIT)
    polled.drop()
    (value, seconds) = _timed(polled.get)  # does not wait for the old read
    assert value == "after" and seconds < 0.5
    source.release[2].set()
    assert old.done().result == "after"  # its own read was overtaken: the newer value is its answer
    polled.every = 3600.0
    assert polled.get() == "after"


def test_a_newer_read_wins_over_an_older_one_that_finishes_after_it() -> None:
    source = Source("first", "older", "newer", hold=(2, 3))
    polled: Polled[str] = Polled(source, every=0.0)
    polled.get()
    older = Call(polled)
    assert source.entered[2].wait(WAIT)
    polled.drop()
    newer = Call(polled)
    assert source.entered[3].wait(WAIT)
    source.release[3].set()
    assert newer.done().result == "newer"
    source.release[2].set()
    assert older.done().result == "newer"
    polled.every = 3600.0
    assert polled.get() == "newer"


def test_a_read_overtaken_by_a_drop_with_nothing_newer_answers_its_own_caller() -> None:
    source = Source("v1", "read before the drop", "read again", hold=(2,))
    polled: Polled[str] = Polled(source, every=3600.0)
    polled.get()
    polled.every = 0.0
    old = Call(polled)
    assert source.entered[2].wait(WAIT)
    polled.drop()
    source.release[2].set()
    assert old.done().result == "read before the drop"  # the freshest its caller can have
    polled.every = 3600.0
    # ...but it was not kept: the next caller reads again
    assert polled.get() == "read again" and source.reads == 3


def test_keep_last_keeps_the_value_through_an_outage_and_waits_a_poll_before_trying_again() -> None:
    source = Source("v1", ConnectionError("store down"), "v2")
    polled: Polled[str] = Polled(
        source, every=0.1, keep_last_on=lambda exc: isinstance(exc, ConnectionError), name="rules"
    )
    assert polled.get() == "v1"
    time.sleep(0.12)
    assert polled.get() == "v1" and source.reads == 2  # the outage: the rules last read hold
    assert polled.get() == "v1" and source.reads == 2  # not retried on every call meanwhile
    time.sleep(0.12)
    assert polled.get() == "v2"


def test_keep_last_with_nothing_read_yet_answers_none() -> None:
    polled: Polled[str] = Polled(
        Source(ConnectionError("down"), "v1"), every=0.0, keep_last_on=lambda e: True
    )
    assert polled.get() is None
    assert polled.get() == "v1"


def test_keep_last_still_raises_what_is_no_outage_and_the_next_caller_reads_again() -> None:
    source = Source("v1", ValueError("a bug, not an outage"), "v2")
    polled: Polled[str] = Polled(
        source, every=0.05, keep_last_on=lambda exc: isinstance(exc, ConnectionError)
    )
    polled.get()
    time.sleep(0.06)
    with pytest.raises(ValueError, match="a bug"):
        polled.get()
    polled.every = 3600.0  # were the failed poll counted, the next read would be an hour away
    assert polled.get() == "v2"


def test_raise_gives_the_error_to_the_caller_that_read_and_rearms_the_poll() -> None:
    source = Source("v1", ConnectionError("store down"), "v2", hold=(2,))
    polled: Polled[str] = Polled(source, every=0.0)
    polled.get()
    reader = Call(polled)
    assert source.entered[2].wait(WAIT)
    polled.every = 3600.0  # were the failed poll counted, the next read would be an hour away
    assert polled.get() == "v1"  # the others are not held up, and they do not see the error
    source.release[2].set()
    assert isinstance(reader.done().error, ConnectionError)
    assert polled.get() == "v2"  # the next caller read again at once


def test_without_wait_for_first_the_others_go_without_while_the_first_read_waits() -> None:
    source = Source("v1", hold=(1,))
    polled: Polled[str] = Polled(source, every=0.0)
    first = Call(polled)
    assert source.entered[1].wait(WAIT)
    assert polled.get() is None and source.reads == 1
    source.release[1].set()
    assert first.done().result == "v1"


def test_wait_for_first_makes_every_caller_read_until_a_value_is_held() -> None:
    source = Source("v1", "v1 again", "later", hold=(1,))
    polled: Polled[str] = Polled(source, every=3600.0, wait_for_first=True)
    first = Call(polled)
    assert source.entered[1].wait(WAIT)
    assert polled.get() == "v1 again"  # it read for itself, rather than go without
    source.release[1].set()
    assert first.done().result == "v1 again"  # its own read lost to the newer one
    assert polled.get() == "v1 again" and source.reads == 2


def test_wait_for_first_after_a_drop_reads_again_even_while_an_old_read_hangs() -> None:
    source = Source({"home": 1}, {"home": 1}, {"home": 1, "cart": 2}, hold=(2,))
    polled: Polled[dict[str, int]] = Polled(source, every=0.0, wait_for_first=True)
    polled.get()
    old = Call(polled)
    assert source.entered[2].wait(WAIT)
    polled.drop()  # e.g. an experiment created on "cart"
    assert polled.get() == {"home": 1, "cart": 2}
    source.release[2].set()
    assert old.done().result == {"home": 1, "cart": 2}


def test_an_interrupted_read_frees_the_poll() -> None:
    source = Source("v1", KeyboardInterrupt(), "v2")
    polled: Polled[str] = Polled(source, every=0.0, keep_last_on=lambda exc: True)
    polled.get()
    with pytest.raises(KeyboardInterrupt):
        polled.get()
    assert polled.get() == "v2"


def test_a_locked_sqlite_table_holds_up_one_caller_and_no_other(tmp_path: Path) -> None:
    """The case it was written for: a session holds the table (here SQLite's write lock; the
    reader's busy timeout ends the wait), the poll falls due; one request waits, the others answer
    at once from the value last read, and after the lock the value is read again."""
    path = tmp_path / "stamps.db"
    with sqlite3.connect(path) as setup:
        setup.execute("CREATE TABLE stamp (n INTEGER)")
        setup.execute("INSERT INTO stamp VALUES (1)")

    def read(last: int | None) -> int:
        conn = sqlite3.connect(path, timeout=5.0)  # the busy timeout: a statement timeout's like
        try:
            (n,) = conn.execute("SELECT n FROM stamp").fetchone()
            return int(n)
        finally:
            conn.close()

    polled: Polled[int] = Polled(
        read, every=0.05, keep_last_on=lambda e: isinstance(e, sqlite3.OperationalError)
    )
    assert polled.get() == 1
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # a rollback journal: no one reads until it commits
    holder.execute("UPDATE stamp SET n = 2")
    time.sleep(0.06)
    waiting = Call(polled)
    time.sleep(0.2)  # it waits on the lock now
    answers = [_timed(polled.get) for _ in range(20)]
    assert {value for value, _ in answers} == {1}
    assert max(seconds for _, seconds in answers) < 0.5
    assert waiting.is_alive()
    holder.execute("COMMIT")
    holder.close()
    assert waiting.done().result == 2
    assert polled.get() == 2


# --- wait_at_most: a request waits a bounded time for a poll, never the store's statement timeout ---


def test_a_slow_poll_answers_with_the_held_value_after_wait_at_most_and_lands_later() -> None:
    source = Source("v1", "v2", "v3", hold=(2,))
    polled: Polled[str] = Polled(source, every=0.0, wait_at_most=0.2)
    assert polled.get() == "v1"
    answer, seconds = _timed(polled.get)  # the poll is due: its read hangs
    assert answer == "v1" and 0.15 <= seconds < 2.0, seconds
    assert source.entered[2].is_set()
    assert polled.get() == "v1" and source.reads == 2  # still one read at a time
    source.release[2].set()
    deadline = time.monotonic() + WAIT
    while polled._reader and time.monotonic() < deadline:  # the late read lands on its own
        time.sleep(0.01)
    assert polled.get() in {"v2", "v3"}  # v2 landed; the next poll (every=0) may already read v3
    assert source.reads >= 2


def test_a_quick_poll_is_answered_by_its_own_read_with_wait_at_most() -> None:
    source = Source("v1", "v2")
    polled: Polled[str] = Polled(source, every=0.0, wait_at_most=5.0)
    assert polled.get() == "v1"
    assert polled.get() == "v2"


def test_the_first_read_is_waited_for_even_with_wait_at_most() -> None:
    source = Source("v1", hold=(1,))
    polled: Polled[str] = Polled(source, every=0.0, wait_at_most=0.05)
    first = Call(polled)
    assert source.entered[1].wait(WAIT)
    time.sleep(0.2)
    assert first.is_alive()  # nothing held: nothing to answer with but the read
    source.release[1].set()
    assert first.done().result == "v1"


@pytest.mark.parametrize("kept", [True, False])
def test_a_failure_within_wait_at_most_follows_the_failure_rules(kept: bool) -> None:
    source = Source("v1", ConnectionError("store down"), "v3")
    polled: Polled[str] = Polled(
        source,
        every=0.0,
        wait_at_most=5.0,
        keep_last_on=lambda exc: isinstance(exc, ConnectionError) and kept,
    )
    assert polled.get() == "v1"
    if kept:
        assert polled.get() == "v1"
    else:
        with pytest.raises(ConnectionError):
            polled.get()
    assert polled.get() == "v3"


def test_a_late_failure_not_kept_makes_the_next_caller_read_again() -> None:
    source = Source("v1", RuntimeError("broken"), "v3", hold=(2,))
    polled: Polled[str] = Polled(source, every=3600.0, wait_at_most=0.1)
    assert polled.get() == "v1"
    polled._polled_at = -float("inf")  # make the hour-long poll due now
    assert polled.get() == "v1"  # gave up waiting: the held value
    source.release[2].set()  # the read fails with nobody waiting for it
    deadline = time.monotonic() + WAIT
    while polled._reader and time.monotonic() < deadline:
        time.sleep(0.01)
    assert polled.get() == "v3"  # not an hour later: at once
