"""Stable ids made from content, so the same record always gets the same id."""

from __future__ import annotations

import hashlib


def content_id(*parts: str | int | float | None) -> str:
    """A 128-bit hex id of the parts, in order; ``None``, ``""``, ``1`` and ``"1"`` all differ.

    Built on ``repr`` of the tuple, which is unambiguous for these types and fast.
    """
    return hashlib.blake2b(repr(parts).encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def sha256_file(path: str, *, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
