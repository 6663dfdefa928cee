"""Text analysis for search and text features: English and Chinese, chosen per text, mixed text handled.

A text is split into runs of Han characters and runs of everything else. Han runs are segmented
with jieba (search mode: words and their shorter parts, so "羽绒服" matches "羽绒"); other runs are
lower-cased, split on non-word characters, stripped of stop words and stemmed with the Snowball
English stemmer (PyStemmer). The same ``Analyzer`` must analyse documents and queries.

>>> Analyzer().tokens("Running Shoes for Men 男士跑步鞋")
['run', 'shoe', 'men', '男士', '跑步', '鞋', '士跑', '步鞋']
"""

from __future__ import annotations

import logging
import re
import threading
import unicodedata
from collections.abc import Iterable, Iterator
from functools import lru_cache
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict

from shelfwise.core.errors import ConfigError

# Han ideographs (CJK Unified + Extension A + compatibility); kana/hangul are left to the word splitter.
_HAN: Final = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_RUNS: Final = re.compile(rf"([{_HAN}]+)")
_HAN_CHAR: Final = re.compile(rf"[{_HAN}]")
_WORD: Final = re.compile(r"[^\W_]+(?:['’][^\W_]+)?")

ENGLISH_STOP_WORDS: Final = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "for",
        "from",
        "has",
        "have",
        "in",
        "into",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "s",
        "such",
        "t",
        "that",
        "the",
        "their",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "was",
        "were",
        "will",
        "with",
    ]
)
# Function words that carry no product meaning; short on purpose (一 and 不 change meaning in titles).
CHINESE_STOP_WORDS: Final = frozenset(
    [
        "的",
        "了",
        "和",
        "与",
        "及",
        "或",
        "是",
        "在",
        "有",
        "为",
        "把",
        "被",
        "之",
        "也",
        "就",
        "都",
        "而",
        "等",
        "这",
        "那",
        "个",
    ]
)

Language = Literal["en", "zh", "mixed", "none"]


def detect_language(text: str) -> Language:
    """Which analyser a text needs: ``zh`` when it is Han only, ``mixed`` when it has both."""
    han = bool(_HAN_CHAR.search(text))
    other = bool(_WORD.search(_HAN_CHAR.sub(" ", text)))
    if han and other:
        return "mixed"
    if han:
        return "zh"
    return "en" if other else "none"


class AnalyzerConfig(BaseModel):
    """How text becomes tokens. Round-trips to JSON so a saved index knows how it was built."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lowercase: bool = True
    stem: bool = True
    stop_words: bool = True
    chinese: Literal["search", "exact"] = "search"
    # also index each pair of adjacent Han characters (as Lucene's CJK analyser does): jieba splits a
    # word differently inside longer titles ("水貂绒毛衣" → 水貂/绒毛/衣) or not at all ("卫衣" is not in
    # its dictionary); the pairs still match
    chinese_bigrams: bool = True
    min_length: int = 1
    # search indexes add canonical size/fraction/dimension/model-number terms (shelfwise.search.analysis)
    product_terms: bool = False


_jieba_lock = threading.Lock()


@lru_cache(maxsize=1)
def _jieba() -> Any:
    try:
        import jieba
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise ConfigError("Chinese text needs jieba", hint="pip install jieba") from exc
    jieba.setLogLevel(logging.WARNING)
    with _jieba_lock:
        jieba.initialize()
    return jieba


@lru_cache(maxsize=1)
def _stemmer() -> Any:
    try:
        import Stemmer
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise ConfigError("English stemming needs PyStemmer", hint="pip install PyStemmer") from exc
    return Stemmer.Stemmer("english")


class Analyzer:
    """Turns text into index terms. Thread-safe; cheap to create (models load on first use)."""

    def __init__(self, config: AnalyzerConfig | None = None) -> None:
        self.config = config or AnalyzerConfig()
        self._stems: dict[str, str] = {}

    def __call__(self, text: str | None) -> list[str]:
        return self.tokens(text)

    def tokens(self, text: str | None) -> list[str]:
        """The terms of one text, in order, duplicates kept (BM25 counts them)."""
        if not text:
            return []
        if not text.isascii():
            text = unicodedata.normalize("NFKC", text)
        out: list[str] = []
        for i, run in enumerate(_RUNS.split(text)):
            if not run:
                continue
            if i % 2:  # odd pieces are the Han runs the split captured
                out.extend(self._chinese(run))
            else:
                out.extend(self._latin(run))
        return out

    def many(self, texts: Iterable[str | None]) -> Iterator[list[str]]:
        for text in texts:
            yield self.tokens(text)

    def words(self, text: str | None) -> list[str]:
        """Surface words (lower-cased, unstemmed, stop words kept): for spelling and autocomplete."""
        if not text:
            return []
        if not text.isascii():
            text = unicodedata.normalize("NFKC", text)
        return [w.lower() for w in _WORD.findall(_HAN_CHAR.sub(" ", text))]

    def _latin(self, run: str) -> list[str]:
        cfg = self.config
        words = _WORD.findall(run.lower() if cfg.lowercase else run)
        if cfg.stop_words:
            words = [w for w in words if w not in ENGLISH_STOP_WORDS]
        words = [w.replace("’", "'").removesuffix("'s") for w in words if len(w) >= cfg.min_length]
        if not cfg.stem:
            return words
        stems = self._stems
        missing = [w for w in words if w not in stems]
        if missing:
            if len(stems) > 500_000:
                stems.clear()
            for word, stem in zip(missing, _stemmer().stemWords(missing), strict=True):
                stems[word] = stem
        return [stems[w] for w in words]

    def _chinese(self, run: str) -> list[str]:
        jieba = _jieba()
        pieces = jieba.lcut_for_search(run) if self.config.chinese == "search" else jieba.lcut(run)
        if self.config.stop_words:
            pieces = [p for p in pieces if p not in CHINESE_STOP_WORDS]
        pieces = [p for p in pieces if p.strip()]
        if self.config.chinese_bigrams and len(run) > 2:
            have = set(pieces)
            pairs = (run[i : i + 2] for i in range(len(run) - 1))
            pieces.extend(p for p in pairs if p not in have and p not in CHINESE_STOP_WORDS)
        return pieces


def stem(word: str) -> str:
    """The Snowball English stem of one lower-case word."""
    return str(_stemmer().stemWord(word))
