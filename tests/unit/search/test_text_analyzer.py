"""English and Chinese analysis as search sees it: the same words in any inflection match."""

from __future__ import annotations

from shelfwise.features.text import Analyzer, AnalyzerConfig, detect_language


def test_english_is_lower_cased_stemmed_and_stop_words_dropped() -> None:
    a = Analyzer()
    assert a.tokens("Running Shoes for the Men") == a.tokens("run shoe men")
    assert "the" not in a.tokens("The Jacket") and "for" not in a.tokens("for men")
    assert a.tokens("Women's Jackets") == a.tokens("women jacket")


def test_stemming_and_stop_words_can_be_turned_off() -> None:
    a = Analyzer(AnalyzerConfig(stem=False, stop_words=False))
    assert a.tokens("The Running Shoes") == ["the", "running", "shoes"]


def test_chinese_is_segmented_into_words_and_their_parts() -> None:
    tokens = Analyzer().tokens("女士冬季加厚羽绒服")
    assert "羽绒服" in tokens and "羽绒" in tokens
    assert "冬季" in tokens
    # a query for the shorter word finds a title with the longer one
    assert set(Analyzer().tokens("羽绒")) <= set(tokens)


def test_mixed_text_uses_each_analyser_on_its_own_run() -> None:
    tokens = Analyzer().tokens("Nike 男士跑步鞋 Running Shoes")
    assert tokens[0] == "nike"
    assert "跑步" in tokens and "run" in tokens and "shoe" in tokens
    assert detect_language("Nike 跑步鞋") == "mixed"
    assert detect_language("跑步鞋") == "zh"
    assert detect_language("running shoes") == "en"
    assert detect_language("!!") == "none"


def test_full_width_and_accents_are_normalised() -> None:
    a = Analyzer()
    assert a.tokens("ＮＩＫＥ　Ｓｈｏｅｓ") == a.tokens("nike shoes")


def test_every_flipkart_title_analyses_to_terms(flipkart_1k) -> None:
    a = Analyzer()
    empty = [it.title for it in flipkart_1k if it.title and not a.tokens(it.title)]
    assert empty == []
