"""Privacy at ingest: keyed pseudonyms for user ids, and contact details scrubbed from free text.

A pseudonym is HMAC-SHA256(key, raw id), truncated to 128 bits and hex-encoded: stable for
one key, so a shopper's events join up across runs, and not reversible without the key.
The raw id is never stored anywhere.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re

from shelfwise.data.normalize import clean_id

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
# International or national phone numbers: 9-15 digits, optional +country code, with spaces,
# dots, dashes or brackets between groups. Anchored on non-word/non-digit boundaries so stock
# codes (85123A), prices (2.55) and sizes (10x20) are left alone.
PHONE = re.compile(r"(?<![\w.])(?:\+|00)?\d(?:[\s\-.()]{0,2}\d){8,14}(?![\w])")
_NINE_DIGITS = re.compile(r"(?:\d\D{0,3}){9}")  # cheap pre-check: too few digits for a phone number
EMAIL_MARK = "[email]"
PHONE_MARK = "[phone]"


class Pseudonymizer:
    """Maps raw user ids to pseudonyms. Cached: a shop has far fewer users than events.

    The id is cleaned first (``clean_id``, as ingest cleans it), so every spelling ingest treats as
    one shopper gets one pseudonym, whoever asks: ingest, the API or the CLI.

    The cache is a bounded LRU (``cache_size`` raw ids, about 0.3 kB each): the API pseudonymises
    ids that anonymous callers choose, so an unbounded cache would be memory anyone can fill."""

    def __init__(self, key: bytes, *, cache_size: int = 100_000) -> None:
        if len(key) < 16:
            raise ValueError("pseudonym key must be at least 16 bytes")
        self._key = key
        self.cache_size = cache_size
        self._cached = functools.lru_cache(maxsize=cache_size)(self._compute)

    def __getstate__(self) -> tuple[bytes, int]:
        # a worker process (Ray) gets the key and an empty cache of the same size, not the cache
        return self._key, self.cache_size

    def __setstate__(self, state: tuple[bytes, int]) -> None:
        self._key, self.cache_size = state
        self._cached = functools.lru_cache(maxsize=self.cache_size)(self._compute)

    def _compute(self, raw_id: str) -> str:
        cleaned = clean_id(raw_id).encode("utf-8", "surrogatepass")
        return hmac.new(self._key, cleaned, hashlib.sha256).hexdigest()[:32]

    def __call__(self, raw_id: str) -> str:
        return self._cached(raw_id)

    def cache_entries(self) -> int:
        return int(self._cached.cache_info().currsize)


def scrub_pii(text: str) -> tuple[str, int]:
    """Replace e-mail addresses and phone numbers in ``text``; returns the text and how many were replaced."""
    n_email = n_phone = 0
    if "@" in text:
        text, n_email = EMAIL.subn(EMAIL_MARK, text)
    if _NINE_DIGITS.search(text):
        text, n_phone = PHONE.subn(PHONE_MARK, text)
    return text, n_email + n_phone
