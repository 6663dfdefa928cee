"""Product-aware analysis: sizes, fractions, dimensions and model numbers stay searchable.

The general analyser (``shelfwise.features.text.Analyzer``) splits on every non-word character, so
``1/2 in. pvc`` becomes ``1 2 pvc``, ``3/4"`` becomes ``3 4`` and ``XR-200`` becomes ``xr 200``: a
query for a half-inch pipe also matches three-quarter-inch ones, and ``xr200`` finds nothing.
``ProductAnalyzer`` keeps those tokens and *adds* canonical product terms after them:

* fractions and decimals whole: ``1/2``, ``2.5``;
* a number with a unit, glued and spelled one way: ``1/2 in.``, ``1/2"``, ``1/2 inch`` → ``1/2in``;
  ``500 ml`` → ``500ml``; ``2 Ltr`` → ``2l``;
* dimensions: ``8 x 10``, ``8×10``, ``8X10`` → ``8x10`` (and the numbers alone);
* model numbers: ``XR-200``, ``XR 200``, ``xr.200`` → ``xr200`` (the token a glued ``XR200`` has),
  so every spelling finds every other.

The same analyser runs at index and query time (the index saves its config), so the added terms
match each other; plain words are analysed exactly as before.

    >>> ProductAnalyzer().tokens('PVC pipe 3/4" XR-200')[-3:]
    ['3/4', '3/4in', 'xr200']
"""

from __future__ import annotations

import re
from typing import Final

from shelfwise.features.text import Analyzer, AnalyzerConfig

_UNITS: Final[dict[str, str]] = {
    '"': "in",
    "''": "in",
    "in": "in",
    "inch": "in",
    "inches": "in",
    "ft": "ft",
    "feet": "ft",
    "foot": "ft",
    "'": "ft",
    "mm": "mm",
    "cm": "cm",
    "m": "m",
    "ml": "ml",
    "l": "l",
    "ltr": "l",
    "litre": "l",
    "liter": "l",
    "litres": "l",
    "liters": "l",
    "g": "g",
    "gm": "g",
    "gms": "g",
    "gram": "g",
    "grams": "g",
    "kg": "kg",
    "kgs": "kg",
    "oz": "oz",
    "lb": "lb",
    "lbs": "lb",
    "gb": "gb",
    "tb": "tb",
    "mb": "mb",
    "mah": "mah",
    "w": "w",
    "watt": "w",
    "watts": "w",
    "v": "v",
    "volt": "v",
    "hz": "hz",
    "mp": "mp",
    "pcs": "pc",
    "pc": "pc",
    "pieces": "pc",
}
_NUMBER: Final = r"\d+(?:[./]\d+)?"
_UNIT_ALT: Final = "|".join(sorted((re.escape(u) for u in _UNITS if u[0].isalpha()), key=len, reverse=True))
# a number, optional space, a unit word (not followed by more letters) or an inch/foot mark
_MEASURE: Final = re.compile(rf"(?<![\w./])({_NUMBER})\s*(?:({_UNIT_ALT})\b\.?|(''|\"|'))")
_FRACTION: Final = re.compile(r"(?<![\w./])(\d+[./]\d+)(?![\w/])")
_DIMENSION: Final = re.compile(
    rf"(?<![\w./])({_NUMBER})\s*[x×*]\s*({_NUMBER})(?:\s*[x×*]\s*({_NUMBER}))?(?![\w/])"
)
# letters and digits joined by -, ., / or a space (xr-200, xr 200, a.b-12), at least one digit
_MODEL: Final = re.compile(
    r"(?<![\w])([a-z]+[a-z0-9]*(?:[-./ ][a-z0-9]+)+|[0-9]+[a-z][a-z0-9]*(?:[-.][a-z0-9]+)*)"
)
_HAS_SIGNAL: Final = re.compile(r"\d")


def product_terms(text: str) -> list[str]:
    """The canonical product terms of ``text`` (see the module docstring), in order, no duplicates."""
    low = text.lower()
    if not _HAS_SIGNAL.search(low):
        return []
    out: list[str] = []
    for m in _FRACTION.finditer(low):
        out.append(m.group(1).replace(",", "."))
    for m in _MEASURE.finditer(low):
        unit = _UNITS[m.group(2) or m.group(3)]
        out.append(f"{m.group(1)}{unit}")
    dims = set()
    for m in _DIMENSION.finditer(low):
        parts = [p for p in m.groups() if p]
        out.append("x".join(parts))
        dims.add(m.group(0).replace(" ", ""))
    for m in _MODEL.finditer(low):
        raw = m.group(1)
        if not any(c.isdigit() for c in raw) or raw in dims:
            continue
        # "xr-200" joins; across a space only a short letter run and a number do ("xr 200", not
        # "size 9" or "shoes 2")
        parts = re.split(r"([-./ ])", raw)
        joined = [parts[0]]
        for sep, piece in zip(parts[1::2], parts[2::2], strict=True):
            if sep == " " and not (
                piece.isdigit()
                and len(piece) >= 2
                and joined[-1].isalpha()
                and len(joined[-1]) <= 3
                and len(joined) == 1
            ):
                _model_term(joined, out)
                joined = []
            joined.append(piece)
        _model_term(joined, out)
    return list(dict.fromkeys(t for t in out if t))


def _model_term(pieces: list[str], out: list[str]) -> None:
    word = "".join(pieces)
    if len(pieces) > 1 and any(c.isdigit() for c in word) and any(c.isalpha() for c in word):
        out.append(word)


class ProductAnalyzer(Analyzer):
    """``Analyzer`` plus the canonical product terms of ``product_terms`` (added after the words)."""

    def tokens(self, text: str | None) -> list[str]:
        out = super().tokens(text)
        if text and _HAS_SIGNAL.search(text):
            have = set(out)
            out.extend(t for t in product_terms(text) if t not in have)
        return out


def make_analyzer(config: AnalyzerConfig | None = None) -> Analyzer:
    """The analyser a search index uses for ``config`` (product terms when ``product_terms`` is on)."""
    config = config or AnalyzerConfig()
    return ProductAnalyzer(config) if config.product_terms else Analyzer(config)
