"""A value re-read from a slow source (the store) when its poll is due, never under a lock.

The request path keeps a few things in memory that it must re-read now and then: the running
experiments, the merchandising documents' stamp, the consent stamp, the shopper links. A read can
hang (a session holds the table until the statement timeout), so it must never be made while a
lock is held, and it must cost one request, not all of them. ``Polled`` is that rule, once:

- a poll is due ``every`` seconds (counted from the start of the last one); the caller that finds
  it due reads, **outside the lock**, and the others answer with the value last read meanwhile;
  one read at a time: while it waits, no second caller starts another;
- a read that a newer one, or a ``drop()``, overtook is thrown away (never kept over a newer value)
  and no longer holds up the next poll;
- when the read fails, ``keep_last_on(exc)`` true keeps the last value (logged; the next poll is
  due ``every`` seconds later); any other error is raised to the caller that read, and the next
  caller reads again;
- with nothing read yet (or after ``drop()``), ``get()`` returns ``None`` to everyone but the reader,
  or with ``wait_for_first=True`` every caller reads itself: it waits rather than go without;
- with ``wait_at_most`` set and a value held, the reader too waits no longer than that for a poll:
  the read goes on in its own thread, the reader answers with the value held, and the read's
  result (or failure, logged; a failure not kept makes the next caller read again) lands when it
  ends. A request then waits at most ``wait_at_most`` per polled value for a store that hangs,
  not the statement timeout. A first read (nothing held) is always waited for.

``read`` is given the value last read (``None`` at first), so it can keep that very object when
its source did not change (a stamp that did not move); it never returns ``None`` (that means
"nothing read"). What a caller keeps per value (documents read under a stamp) can live in that
object: once a newer one replaces it, a late write into it is never read again.

    >>> stamps = iter([1, 1, 2])
    >>> stamp = Polled(lambda last: next(stamps), every=0.0)
    >>> [stamp.get(), stamp.get(), stamp.get()]
    [1, 1, 2]
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from shelfwise.core.logging import get_logger

T = TypeVar("T")
log = get_logger(__name__)


class Polled(Generic[T]):
    """A value ``read`` again at most every ``every`` seconds, by one caller at a time; the others
    keep the value last read. Thread-safe. See the module's docstring for the rules."""

    def __init__(
        self,
        read: Callable[[T | None], T],
        *,
        every: float,
        keep_last_on: Callable[[BaseException], bool] | None = None,
        wait_for_first: bool = False,
        wait_at_most: float | None = None,
        name: str = "polled value",
    ) -> None:
        self.read = read
        self.every = every
        self.keep_last_on = keep_last_on
        self.wait_for_first = wait_for_first
        self.wait_at_most = wait_at_most
        self.name = name
        self._lock = threading.Lock()
        self._value: T | None = None
        self._polled_at = -float("inf")  # when the last poll started
        self._tickets = 0  # reads started so far: each read's ticket is its number
        self._floor = 0  # a read whose ticket is at most this one is not kept: it was overtaken
        self._reader = 0  # the ticket of the poll reading now (free when at most ``_floor``)

    def get(self) -> T | None:
        """The value, read again first when the poll is due and nobody else is reading it."""
        with self._lock:
            held, now = self._value, time.monotonic()
            due = self._reader <= self._floor and now - self._polled_at >= self.every
            if not due and not (held is None and self.wait_for_first):
                return held
            self._tickets += 1
            ticket = self._tickets
            if due:  # a caller waiting for the first value reads beside the poll, not as it
                self._polled_at, self._reader = now, ticket
        if due and held is not None and self.wait_at_most is not None:
            return self._read_in_background(held, ticket, self.wait_at_most)
        return self._read(held, ticket)

    def _read(self, held: T | None, ticket: int) -> T | None:
        """Read, keep the value unless overtaken, and apply the failure rules (see the module)."""
        try:
            value = self.read(held)
        except BaseException as exc:  # an interrupt too must free the poll
            kept = isinstance(exc, Exception) and self.keep_last_on is not None and self.keep_last_on(exc)
            with self._lock:
                if self._reader == ticket:
                    self._reader = 0
                if not kept:
                    self._polled_at = -float("inf")  # not read: the next caller tries again
                held = self._value
            if not kept:
                raise
            log.warning("not read again: the last value holds", what=self.name, error=str(exc)[:200])
            return held
        with self._lock:
            if self._reader == ticket:
                self._reader = 0
            if ticket > self._floor:
                self._value, self._floor = value, ticket
            elif self._value is not None:
                value = self._value  # a newer read was kept while this one waited: it is the answer
        return value

    def _read_in_background(self, held: T, ticket: int, wait: float) -> T | None:
        """The poll's read in a thread of its own: its answer when it comes within ``wait`` seconds
        (its error raised as ``_read`` would), else the value held while it goes on."""
        done = threading.Event()
        answer: list[T | None] = []
        failure: list[BaseException] = []

        def run() -> None:
            try:
                answer.append(self._read(held, ticket))
            except BaseException as exc:
                failure.append(exc)
            with self._lock:
                abandoned = done.is_set()  # the reader answered without it
                done.set()
            if abandoned and failure:  # nobody to raise to: say so; the next caller reads again
                log.warning("a late read failed", what=self.name, error=str(failure[0])[:200])

        threading.Thread(target=run, name=f"poll: {self.name}", daemon=True).start()
        if not done.wait(wait):
            with self._lock:
                if not done.is_set():
                    done.set()  # from here on the read is on its own
                    log.warning("a poll is slow: the last value answers", what=self.name, waited_s=wait)
                    return self._value if self._value is not None else held
        if failure:
            raise failure[0]
        return answer[0]

    def drop(self) -> None:
        """Forget the value (its source changed here): the next ``get`` reads again, and a read that
        started before this call is not kept."""
        with self._lock:
            self._value = None
            self._floor = self._tickets
            self._polled_at = -float("inf")
