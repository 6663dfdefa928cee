"""Stable ids made from content, so the same record always gets the same id."""

from __future__ import annotations

import functools
import hashlib
import operator
from collections.abc import Iterable, Sequence


def content_id(*parts: str | int | float | None) -> str:
    """A 128-bit hex id of the parts, in order; ``None``, ``""``, ``1`` and ``"1"`` all differ.

    Built on ``repr`` of the tuple, which is unambiguous for these types and fast.
    """
    return hashlib.blake2b(repr(parts).encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def time_ordered_id(ts_ms: int, *parts: str | int | float | None) -> str:
    """A 128-bit hex id: 48 bits of time (ms) then an 80-bit hash of the time and the parts.

    Deterministic like ``content_id``, but ids of later events sort later, so a store's
    primary-key index grows at its end instead of at random places (about 1.5x faster bulk
    inserts into SQLite on the Online Retail data).
    """
    digest = hashlib.blake2b(repr((ts_ms, *parts)).encode("utf-8", "surrogatepass"), digest_size=10)
    return f"{ts_ms & 0xFFFFFFFFFFFF:012x}{digest.hexdigest()}"


def time_prefix(ts_ms: int) -> str:
    """The first 12 hex digits of ``time_ordered_id(ts_ms, ...)``."""
    return f"{ts_ms & 0xFFFFFFFFFFFF:012x}"


def time_ordered_ids(prefixes: Iterable[str], reprs: Sequence[Iterable[str]]) -> list[str]:
    """``time_ordered_id`` of many rows, the same ids: ``reprs`` holds one column per argument (the
    time first) of each value's ``repr``, and ``prefixes`` each row's ``time_prefix``. A caller with
    few distinct values per column takes each ``repr`` once; the rest runs without a Python frame
    per row (``repr`` of a tuple is its items' ``repr`` joined by ``", "`` in parentheses)."""
    texts = map("({})".format, map(", ".join, zip(*reprs, strict=True)))
    data = map(operator.methodcaller("encode", "utf-8", "surrogatepass"), texts)
    digests = map(functools.partial(hashlib.blake2b, digest_size=10), data)
    return list(map(operator.add, prefixes, map(operator.methodcaller("hexdigest"), digests)))


def sha256_file(path: str, *, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


_B32 = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford's base32, lower case: no i, l, o, u


def answer_id(ts_ms: int | None = None) -> str:
    """A compact unique id for one served answer (a recommendation or search list), 22 characters:
    48 bits of time (ms) then 62 random bits, in base32. Later answers sort later (the impressions
    table's index grows at its end); 62 random bits make a collision within one millisecond
    negligible (birthday bound ~2**31 answers in the same ms).

    >>> len(answer_id()), answer_id(0) < answer_id(1)
    (22, True)
    """
    import secrets
    import time

    ms = int(time.time() * 1000) if ts_ms is None else int(ts_ms)
    n = ((ms & 0xFFFFFFFFFFFF) << 62) | secrets.randbits(62)
    out = []
    for _ in range(22):
        out.append(_B32[n & 31])
        n >>= 5
    return "".join(reversed(out))
