"""``ahead_map``: ``local_map``'s results, order and errors, computed a part or two ahead in a thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from shelfwise.core.parallel import ahead_map, local_map


def _threads() -> set[str]:
    return {t.name for t in threading.enumerate()}


def test_ahead_map_gives_local_maps_results_in_order() -> None:
    parts = list(range(500))
    slow = lambda shared, x: (time.sleep(0.001) if x % 50 == 0 else None, shared + x)[1]  # noqa: E731
    assert list(ahead_map(slow, parts, shared=7, depth=3)) == list(local_map(slow, parts, shared=7))
    assert list(ahead_map(slow, [], shared=7)) == []


def test_the_work_runs_ahead_of_the_caller_in_another_thread_and_at_most_depth_ahead() -> None:
    done: list[int] = []
    where: set[str] = set()

    def fn(_shared: None, x: int) -> int:
        where.add(threading.current_thread().name)
        done.append(x)
        return x

    seen = ahead_map(fn, range(100), depth=2, name="test-ahead")
    assert next(seen) == 0
    deadline = time.monotonic() + 5
    while len(done) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)  # it would go on here if nothing held it back
    # 0 handed over, 1 and 2 waiting, 3 computed and held until there is room
    assert done == [0, 1, 2, 3]
    assert where == {"test-ahead"}
    assert list(seen) == list(range(1, 100))


def test_an_error_surfaces_where_local_map_raises_it() -> None:
    def source() -> Iterator[int]:
        yield from range(5)
        raise OSError("unreadable after line 5")

    got = []
    with pytest.raises(OSError, match="after line 5"):
        for x in ahead_map(lambda _s, x: x, source()):
            got.append(x)
    assert got == [0, 1, 2, 3, 4]

    def fn(_shared: None, x: int) -> int:
        if x == 3:
            raise ValueError("part 3")
        return x

    got = []
    with pytest.raises(ValueError, match="part 3"):
        for x in ahead_map(fn, range(10)):
            got.append(x)
    assert got == [0, 1, 2]


def test_closing_early_stops_the_thread_and_closes_the_source() -> None:
    closed = threading.Event()

    def source() -> Iterator[int]:
        try:
            yield from range(10**9)
        finally:
            closed.set()

    before = _threads()
    seen = ahead_map(lambda _s, x: x, source(), name="test-ahead-closed")
    assert [next(seen) for _ in range(3)] == [0, 1, 2]
    seen.close()  # what a failing caller's loop does to it
    assert closed.wait(5)
    deadline = time.monotonic() + 5
    while "test-ahead-closed" in _threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "test-ahead-closed" not in _threads() and _threads() <= before | {"test-ahead-closed"}
