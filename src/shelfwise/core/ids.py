"""Stable ids made from content, so the same record always gets the same id."""

from __future__ import annotations

import functools
import hashlib
import operator
import os
import struct
from base64 import b32encode as _b32encode
from collections.abc import Iterable, Iterator, Sequence
from time import time as _time


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

    The random bits come from the OS's CSPRNG, read 4 KiB at a time (``_random62``): one system
    call per 512 answers instead of one per answer.

    >>> len(answer_id()), answer_id(0) < answer_id(1)
    (22, True)
    """
    ms = int(_time() * 1000) if ts_ms is None else int(ts_ms)
    n = ((ms & 0xFFFFFFFFFFFF) << 62) | _random62()
    # 110 bits, padded to 120 (15 bytes: 24 base32 digits, no padding), the first 22 digits kept
    return _b32encode((n << 10).to_bytes(15, "big"))[:22].translate(_TO_CROCKFORD).decode()


_TO_CROCKFORD = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _B32.encode())
_RANDOM: list[Iterator[int]] = [iter(())]


def _random62() -> int:
    """62 random bits from the OS's CSPRNG, drawn in blocks of 512 (``next`` on a tuple iterator
    is atomic: threads never get the same value)."""
    try:
        return next(_RANDOM[0])
    except StopIteration:
        block = iter([v & _MASK62 for v in struct.unpack("<512Q", os.urandom(4096))])
        _RANDOM[0] = block
        return next(block)


_MASK62 = (1 << 62) - 1


def _fresh_random() -> None:
    _RANDOM[0] = iter(())  # a forked child draws its own bits, never its parent's


os.register_at_fork(after_in_child=_fresh_random)
