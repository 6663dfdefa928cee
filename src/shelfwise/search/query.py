"""Query understanding: price phrases, catalogue terms (brand, category, colour, size), synonyms,
spelling correction against the catalogue's own words, and autocomplete.

``QueryUnderstanding`` is built from the catalogue (``fit(items)``) so it only recognises brands
and categories the shop actually has, and only corrects towards words its titles use.
"""

from __future__ import annotations

import bisect
import re
from collections import Counter, OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Final

from shelfwise.core.errors import ConfigError
from shelfwise.data.schemas import Item
from shelfwise.data.vocabulary import COLOURS, GENDERS
from shelfwise.features.text import Analyzer
from shelfwise.features.text import stem as _stem

_NUM: Final = r"(\d+(?:[.,]\d+)?)\s*(?:k\b)?"
_CUR: Final = r"(?:rs\.?|inr|usd|eur|gbp|\$|₹|€|£|元|块|rmb)?"
_PRICE_PATTERNS: Final = [
    # between 20 and 40, 20-40, 20 to 40, from 20 to 40
    (
        re.compile(
            rf"(?:between|from)?\s*{_CUR}\s*{_NUM}\s*{_CUR}\s*(?:and|to|-|–|~|至|到)\s*{_CUR}\s*{_NUM}\s*{_CUR}"
        ),
        "range",
    ),
    (
        re.compile(
            rf"(?:under|below|less than|cheaper than|up to|upto|within|max|<=?)\s*{_CUR}\s*{_NUM}\s*{_CUR}"
        ),
        "max",
    ),
    (re.compile(rf"(?:over|above|more than|at least|min|>=?)\s*{_CUR}\s*{_NUM}\s*{_CUR}"), "min"),
    (re.compile(rf"{_CUR}\s*{_NUM}\s*{_CUR}\s*(?:以下|以内|之内|内)"), "max"),
    (re.compile(rf"(?:低于|不超过|少于|小于)\s*{_NUM}\s*{_CUR}"), "max"),
    (re.compile(rf"{_CUR}\s*{_NUM}\s*{_CUR}\s*(?:以上)"), "min"),
    (re.compile(rf"(?:高于|超过|大于)\s*{_NUM}\s*{_CUR}"), "min"),
    (re.compile(rf"{_NUM}\s*{_CUR}\s*(?:or less|and under|or below|max)"), "max"),
]

_SIZE: Final = re.compile(
    r"\b(xxs|xs|s|m|l|xl|xxl|xxxl|[2-5]xl|\d+(?:\.\d+)?\s?(?:gb|tb|mb|ml|l|ltr|kg|g|gm|mm|cm|inch|in|w|mah))\b"
)

# Two-way product synonyms; a shop adds its own with ``synonyms=``.
DEFAULT_SYNONYMS: Final[dict[str, tuple[str, ...]]] = {
    "tee": ("t-shirt", "tshirt"),
    "tshirt": ("t-shirt", "tee"),
    "sneakers": ("shoes", "sports shoes"),
    "sneaker": ("shoe",),
    "couch": ("sofa",),
    "sofa": ("couch",),
    "mobile": ("phone", "smartphone"),
    "cellphone": ("mobile", "phone"),
    "smartphone": ("mobile", "phone"),
    "laptop": ("notebook",),
    "notebook": ("laptop",),
    "earphones": ("headphones", "earbuds"),
    "headphones": ("earphones", "headset"),
    "tv": ("television",),
    "television": ("tv",),
    "pant": ("trousers",),
    "pants": ("trousers",),
    "trousers": ("pants",),
    "purse": ("wallet", "handbag"),
    "wristwatch": ("watch",),
    "fridge": ("refrigerator",),
    "bedsheet": ("bed sheet",),
    "mug": ("cup",),
    "carpet": ("rug",),
    "rug": ("carpet",),
    "羽绒服": ("down jacket",),
    "手机": ("mobile phone",),
    "鞋": ("shoes",),
}


@dataclass
class ParsedQuery:
    """What a query asks for, as the engine uses it."""

    raw: str
    text: str  # the words left to match, spelling corrected, price phrases removed
    corrected: str | None = None  # "showing results for …" when spelling changed the query
    price_min: float | None = None
    price_max: float | None = None
    brands: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    colours: list[str] = field(default_factory=list)
    sizes: list[str] = field(default_factory=list)
    genders: list[str] = field(default_factory=list)
    expansions: list[str] = field(default_factory=list)  # synonym text added to matching

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v not in (None, [], "")}


def _copy(parsed: ParsedQuery) -> ParsedQuery:
    return ParsedQuery(**{k: list(v) if isinstance(v, list) else v for k, v in parsed.__dict__.items()})


def _number(text: str, whole: str) -> float:
    value = float(text.replace(",", ""))
    if re.search(re.escape(text) + r"\s*k\b", whole):
        value *= 1000
    return value


def parse_price(text: str) -> tuple[str, float | None, float | None]:
    """``"shoes under 500"`` → ``("shoes", None, 500.0)``; the phrase is removed from the text."""
    low: float | None = None
    high: float | None = None
    lowered = text.lower()
    for pattern, kind in _PRICE_PATTERNS:
        match = pattern.search(lowered)
        if not match:
            continue
        if kind == "range":
            a, b = _number(match.group(1), match.group(0)), _number(match.group(2), match.group(0))
            # a bare "a-b" needs a price word or both to look like prices, not sizes like 6-12 months
            if not re.search(r"between|from|rs|\$|₹|元|块|inr|usd|to\s", match.group(0)) and max(a, b) < 50:
                continue
            low, high = min(a, b), max(a, b)
        elif kind == "max":
            high = _number(match.group(1), match.group(0))
        else:
            low = _number(match.group(1), match.group(0))
        lowered = (lowered[: match.start()] + " " + lowered[match.end() :]).strip()
        break
    return " ".join(lowered.split()), low, high


@lru_cache(maxsize=1)
def english_words(min_count: int = 200_000) -> frozenset[str]:
    """Common English words (symspellpy's frequency list): never "corrected" towards catalogue words,
    so "canine" does not become "nine" in a shop that has no canine products."""
    from importlib.resources import files

    path = files("symspellpy") / "frequency_dictionary_en_82_765.txt"
    words = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        word, _, count = line.partition(" ")
        if count.strip().isdigit() and int(count) >= min_count:
            words.add(word)
    return frozenset(words)


class SpellChecker:
    """symspellpy over the catalogue's words (counts = how many titles/brands/categories use them).

    A word is corrected only when neither the catalogue nor common English knows it.
    """

    def __init__(
        self, word_counts: Mapping[str, int], *, max_edit_distance: int = 2, stems: Iterable[str] = ()
    ) -> None:
        try:
            from symspellpy import SymSpell
        except ImportError as exc:  # pragma: no cover - a declared dependency
            raise ConfigError("spelling correction needs symspellpy", hint="pip install symspellpy") from exc
        self.max_edit_distance = max_edit_distance
        self._sym = SymSpell(max_dictionary_edit_distance=max_edit_distance, prefix_length=7)
        self.words = dict(word_counts)
        self.stems = frozenset(stems)  # a word whose stem the catalogue has matches as it is
        self._fixed: dict[str, str] = {}  # word -> its correction (the dictionary never changes)
        for word, count in self.words.items():
            self._sym.create_dictionary_entry(word, count)
        # read the English list now (once per process, ~0.5 s of CPU), not inside the first query
        # with a word the catalogue does not know
        english_words()

    def correct_word(self, word: str) -> str:
        fixed = self._fixed.get(word)
        if fixed is None:
            fixed = self._correct_word(word)
            if len(self._fixed) > 100_000:
                self._fixed.clear()
            self._fixed[word] = fixed
        return fixed

    def _correct_word(self, word: str) -> str:
        from symspellpy import Verbosity

        if word in self.words or len(word) < 3 or not word.isalpha() or not word.isascii():
            return word
        if word in english_words() or (self.stems and _stem(word) in self.stems):
            return word
        distance = 1 if len(word) <= 4 else self.max_edit_distance
        found = self._sym.lookup(word, Verbosity.CLOSEST, max_edit_distance=distance)
        if not found:
            return word
        best = max(found, key=lambda s: (-s.distance, s.count))
        return str(best.term)

    def correct(self, text: str) -> str:
        return " ".join(self.correct_word(w) for w in text.split())


class Autocomplete:
    """Completions of a typed prefix from past queries (by frequency) and the catalogue's titles."""

    def __init__(self, titles: Iterable[str], analyzer: Analyzer) -> None:
        self.analyzer = analyzer
        phrases: Counter[str] = Counter()
        for title in titles:
            words = analyzer.words(title)
            for n in (1, 2, 3):
                for i in range(0, max(len(words) - n + 1, 0)):
                    phrases[" ".join(words[i : i + n])] += 1
        self._phrases = phrases
        self._sorted = sorted(phrases)
        self._past: Counter[str] = Counter()

    def phrase_count(self, phrase: str) -> int:
        """How often a phrase of up to three words occurs in the titles."""
        return self._phrases.get(phrase, 0)

    def record(self, query: str) -> None:
        """Remember a query a shopper ran (say, from the event log)."""
        q = " ".join(query.lower().split())
        if q:
            self._past[q] += 1

    def suggest(self, prefix: str, k: int = 8) -> list[str]:
        p = " ".join(prefix.lower().split())
        if not p:
            return []
        past = sorted((q for q in self._past if q.startswith(p)), key=lambda q: (-self._past[q], q))
        out = list(past[:k])
        start = bisect.bisect_left(self._sorted, p)
        found = []
        for phrase in self._sorted[start:]:
            if not phrase.startswith(p):
                break
            found.append(phrase)
        found.sort(key=lambda s: (-self._phrases[s], len(s)))
        for phrase in found:
            if len(out) >= k:
                break
            if phrase not in out and phrase != p:
                out.append(phrase)
        return out


class QueryUnderstanding:
    """Recognise catalogue terms in queries; built from the items it will search."""

    def __init__(
        self,
        *,
        analyzer: Analyzer | None = None,
        synonyms: Mapping[str, Iterable[str]] | None = None,
        spelling: bool = True,
    ) -> None:
        self.analyzer = analyzer or Analyzer()
        self.synonyms = {k: tuple(v) for k, v in {**DEFAULT_SYNONYMS, **(synonyms or {})}.items()}
        self.spelling = spelling
        self.brands: dict[str, str] = {}  # lower-case phrase -> brand as stored
        self.categories: dict[str, int] = {}  # category node -> items
        self.colours: set[str] = set()
        self.spell: SpellChecker | None = None
        self.autocomplete: Autocomplete | None = None
        # parsed queries by text: shoppers repeat queries, and parsing (spelling above all) is most
        # of a keyword query's Python time; emptied whenever the catalogue terms change (``fit``)
        self._parsed: OrderedDict[str, ParsedQuery] = OrderedDict()
        self.parse_cache_size = 4096

    def fit(self, items: Iterable[Item]) -> QueryUnderstanding:
        self._parsed = OrderedDict()
        words: Counter[str] = Counter()
        brand_counts: Counter[str] = Counter()
        titles: list[str] = []
        own_titles: Counter[str] = Counter()  # brand -> its items whose titles name the brand
        for item in items:
            if item.brand:
                brand_counts[item.brand.strip()] += 1
                key = item.brand.strip().lower()
                if item.title and f" {key} " in f" {' '.join(self.analyzer.words(item.title))} ":
                    own_titles[key] += 1
            if item.category:
                for node in item.category.split(" > "):
                    self.categories[node] = self.categories.get(node, 0) + 1
            if item.title:
                titles.append(item.title)
            for text in (item.title, item.brand, item.category):
                words.update(self.analyzer.words(text))
            # description words are not suggested often, but a query using one is not "misspelt"
            for word in set(self.analyzer.words((item.description or "")[:2000])):
                words[word] += 0
        self.autocomplete = Autocomplete(titles, self.analyzer)
        lowered: Counter[str] = Counter()
        for brand, n in brand_counts.items():
            lowered[brand.lower()] += n
        self.brands = {}
        for brand in brand_counts:
            key = brand.lower()
            if len(key) < 2 or key.isdigit():
                continue
            # A brand named like a product word ("casual", "coffee") is no filter: most titles using
            # the word belong to other brands' items. Only a distinctive brand phrase becomes a filter.
            in_titles = self.autocomplete.phrase_count(key)
            others = max(in_titles - own_titles[key], 0)
            if lowered[key] * 2 >= in_titles and others <= max(own_titles[key], 1):
                self.brands.setdefault(key, brand)
        self.colours = {c for c in COLOURS if words.get(c)}
        stems = {t for w in words for t in self.analyzer.tokens(w)[:1]}
        known = {w: c for w, c in words.items() if len(w) >= 2}
        self.spell = SpellChecker(known, stems=stems) if self.spelling else None
        return self

    def parse(self, query: str) -> ParsedQuery:
        """What ``query`` asks for; a fresh copy each call (cached by text, so mutating it is safe)."""
        cached = self._parsed.get(query)
        if cached is None:
            cached = self._parse(query)
            self._parsed[query] = cached
            if len(self._parsed) > self.parse_cache_size:
                self._parsed.popitem(last=False)
        else:
            self._parsed.move_to_end(query)
        return _copy(cached)

    def clear_cache(self) -> None:
        """Forget parsed queries and corrected words (what a cold start has)."""
        self._parsed.clear()
        if self.spell is not None:
            self.spell._fixed.clear()

    def _parse(self, query: str) -> ParsedQuery:
        text, low, high = parse_price(query)
        parsed = ParsedQuery(raw=query, text=text, price_min=low, price_max=high)
        if self.spell is not None:
            fixed = self.spell.correct(text)
            if fixed != text:
                parsed.corrected = fixed
                text = fixed
        words = text.split()
        parsed.text = text
        # longest brand phrase first (brands of up to four words)
        i = 0
        while i < len(words):
            for n in (4, 3, 2, 1):
                phrase = " ".join(words[i : i + n])
                if len(words[i : i + n]) == n and phrase in self.brands:
                    parsed.brands.append(self.brands[phrase])
                    i += n - 1
                    break
            i += 1
        for n in (3, 2, 1):
            for j in range(0, max(len(words) - n + 1, 0)):
                phrase = " ".join(words[j : j + n])
                if phrase in self.categories and phrase not in parsed.categories:
                    parsed.categories.append(phrase)
        parsed.colours = [w for w in words if w in COLOURS]
        parsed.genders = sorted({GENDERS[w] for w in words if w in GENDERS})
        parsed.sizes = [
            m.group(1) for m in _SIZE.finditer(text) if len(m.group(1)) > 1 or m.group(1) in "sml"
        ]
        parsed.sizes = [s for s in parsed.sizes if not s.isalpha() or s in ("xs", "xl", "xxl", "xxxl", "xxs")]
        for w in words:
            parsed.expansions.extend(self.synonyms.get(w, ()))
        # Chinese queries come as one run: look for synonyms inside it too.
        if not text.isascii():
            for key, values in self.synonyms.items():
                if not key.isascii() and key in text:
                    parsed.expansions.extend(values)
        return parsed
