"""Normalisation at ingest: text, category paths and currencies, so the same thing is written one way."""

from __future__ import annotations

import ast
import re
import unicodedata

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SURROGATE = re.compile("[\ud800-\udfff]")  # lone surrogates (e.g. from JSON "\\udc80") cannot be stored
CATEGORY_SEP = " > "

CURRENCY_SYMBOLS = {
    "£": "GBP",
    "$": "USD",
    "us$": "USD",
    "€": "EUR",
    "₹": "INR",
    "rs": "INR",
    "rs.": "INR",
    "¥": "CNY",
    "元": "CNY",
    "rmb": "CNY",
    "円": "JPY",
    "₩": "KRW",
    "₽": "RUB",
    "zł": "PLN",
    "r$": "BRL",
    "a$": "AUD",
    "c$": "CAD",
    "chf": "CHF",
    "kr": "SEK",
}
ISO_CURRENCIES = frozenset(
    [
        "AED",
        "ARS",
        "AUD",
        "BGN",
        "BRL",
        "CAD",
        "CHF",
        "CLP",
        "CNY",
        "COP",
        "CZK",
        "DKK",
        "EGP",
        "EUR",
        "GBP",
        "HKD",
        "HUF",
        "IDR",
        "ILS",
        "INR",
        "ISK",
        "JPY",
        "KRW",
        "KZT",
        "MXN",
        "MYR",
        "NGN",
        "NOK",
        "NZD",
        "PEN",
        "PHP",
        "PKR",
        "PLN",
        "RON",
        "RUB",
        "SAR",
        "SEK",
        "SGD",
        "THB",
        "TRY",
        "TWD",
        "UAH",
        "USD",
        "VND",
        "ZAR",
    ]
)


def clean_text(value: str) -> str:
    """NFKC, no control characters or lone surrogates, single spaces, no stray separators at the ends."""
    if not value.isascii():
        value = unicodedata.normalize("NFKC", _SURROGATE.sub("\ufffd", value))
    if not value.isprintable():
        value = _CONTROL.sub("", value)
    return " ".join(value.split()).strip(" ,;|")


def clean_id(value: str) -> str:
    """The one spelling of an id (a shopper's, an item's, a session's): ``clean_text`` — NFKC, no
    control characters, single spaces, trimmed. Ingest, the API and the CLI all pass a shop's user id
    through this before pseudonymising it, so ``ＡＢＣ-7``, `` ABC-7 `` and ``ABC-7`` are one shopper
    everywhere (stored, deleted, verified)."""
    return clean_text(value)


def category_path(value: str) -> str | None:
    """One spelling for a category path, root first: ``"a > b > c"``, lower case.

    Accepts ``a.b.c`` (REES46), ``["a", "b"]`` / ``"['a', 'b']"`` (Flipkart), ``a > b``, ``a/b`` and
    ``a >> b``; Flipkart's trees repeat the whole path in the last element, which is cut back.
    """
    text = value.strip()
    if not text:
        return None
    parts: list[str]
    if text.startswith("[") and text.endswith("]"):
        try:
            parsed = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            parsed = None
        if isinstance(parsed, list | tuple):
            parts = [str(p) for p in parsed]
            if len(parts) == 1 and ">>" in parts[0]:
                parts = parts[0].split(">>")
        else:
            parts = [text.strip("[]")]
    elif ">>" in text:
        parts = text.split(">>")
    elif ">" in text:
        parts = text.split(">")
    elif "/" in text:
        parts = text.split("/")
    elif "." in text and " " not in text:
        parts = text.split(".")
    else:
        parts = [text]
    cleaned = [clean_text(p.replace("_", " ").strip("\"'")).lower() for p in parts]
    cleaned = [p for p in cleaned if p]
    return CATEGORY_SEP.join(cleaned) or None


def currency_code(value: str) -> str | None:
    """ISO 4217 code for a code, symbol or common name; None when it is not a currency we know."""
    text = value.strip()
    if not text:
        return None
    upper = text.upper()
    if upper in ISO_CURRENCIES:
        return upper
    return CURRENCY_SYMBOLS.get(text.lower())
