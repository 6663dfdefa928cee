"""A small bounded mapping, safe to ``put`` from several threads."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import TypeVar

V = TypeVar("V")


class LRUDict(OrderedDict[str, V]):
    """The last ``size`` keys put (search affinities per shopper)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size
        self.lock = threading.Lock()

    def put(self, key: str, value: V) -> None:
        with self.lock:
            self[key] = value
            self.move_to_end(key)
            while len(self) > self.size:
                self.popitem(last=False)
