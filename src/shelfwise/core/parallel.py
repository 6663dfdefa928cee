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

from collections.abc import Callable, Iterable, Iterator
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


def chunks(n: int, size: int) -> list[tuple[int, int]]:
    """``[lo, hi)`` bounds cutting ``range(n)`` into runs of at most ``size``.

    >>> chunks(5, 2)
    [(0, 2), (2, 4), (4, 5)]
    """
    size = max(1, int(size))
    return [(lo, min(lo + size, n)) for lo in range(0, n, size)]


__all__ = ["Mapper", "chunks", "local_map"]
