"""The one seam between the pipeline's steps and the engine that runs them.

A step that is embarrassingly parallel (scoring users in chunks, embedding texts in batches,
checking ingest batches) is written as a pure function ``fn(shared, part)`` over the parts of its
input, and takes a ``Mapper`` that applies it to every part *in order*. In-process the mapper is
``local_map`` (a plain loop: the default everywhere); ``shelfwise.distributed`` supplies one that
runs the parts as Ray tasks, with ``shared`` put once into the object store. The step's code is
the same either way, which is what makes the two engines give the same answers.

    >>> list(local_map(lambda shared, x: shared * x, [1, 2, 3], shared=10))
    [10, 20, 30]
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import Any, Protocol, TypeVar

S = TypeVar("S")
T = TypeVar("T")
R = TypeVar("R")


class Mapper(Protocol):
    """Apply ``fn(shared, part)`` to every part, yielding the results in the parts' order."""

    def __call__(
        self, fn: Callable[[Any, Any], Any], parts: Iterable[Any], *, shared: Any = None
    ) -> Iterator[Any]: ...


def local_map(fn: Callable[[S, T], R], parts: Iterable[T], *, shared: S = None) -> Iterator[R]:  # type: ignore[assignment]
    """The in-process mapper: a loop, lazily (a part is read only when its result is wanted)."""
    for part in parts:
        yield fn(shared, part)


def ahead_map(
    fn: Callable[[S, T], R],
    parts: Iterable[T],
    *,
    shared: S = None,  # type: ignore[assignment]
    depth: int = 2,
    name: str = "shelfwise-ahead",
) -> Generator[R, None, None]:
    """``local_map`` run ahead of its caller: one background thread reads the next parts and
    applies ``fn`` to them (at most ``depth`` results waiting) while the caller works on the ones
    before. It pays where one side spends its time outside the GIL (SQLite, zlib, Arrow, NumPy):
    an ingest's reading and checking of batch n+1 overlaps the store's writing of batch n.

    The results and their order are ``local_map``'s, and an error, from reading ``parts`` or from
    ``fn``, is raised where ``local_map`` would raise it: after every result before it. Closing
    the iterator early (the caller failed, or stopped) stops the thread and closes ``parts``.

        >>> list(ahead_map(lambda shared, x: shared * x, [1, 2, 3], shared=10))
        [10, 20, 30]
    """
    waiting: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()
    end = object()

    def put(item: tuple[bool, Any]) -> bool:
        while not stop.is_set():
            try:
                waiting.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        source = iter(parts)
        try:
            for part in source:
                if not put((True, fn(shared, part))):
                    return
            put((True, end))
        except BaseException as exc:  # handed to the caller, raised there in its place
            put((False, exc))
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    try:
        while True:
            ok, value = waiting.get()
            if not ok:
                raise value
            if value is end:
                return
            yield value
    finally:
        stop.set()
        thread.join(timeout=60)


def chunks(n: int, size: int) -> list[tuple[int, int]]:
    """``[lo, hi)`` bounds cutting ``range(n)`` into runs of at most ``size``.

    >>> chunks(5, 2)
    [(0, 2), (2, 4), (4, 5)]
    """
    size = max(1, int(size))
    return [(lo, min(lo + size, n)) for lo in range(0, n, size)]


__all__ = ["Mapper", "ahead_map", "chunks", "local_map"]
