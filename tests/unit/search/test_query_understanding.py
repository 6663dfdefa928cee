"""Query understanding on the real catalogue: prices, brands, typos, synonyms, autocomplete."""

from __future__ import annotations

import csv
import random

import pytest

from shelfwise.data.schemas import Item
from shelfwise.search.engine import SearchConfig, SearchEngine
from shelfwise.search.query import QueryUnderstanding, parse_price
from tests.conftest import DATA


@pytest.mark.parametrize(
    ("query", "text", "low", "high"),
    [
        ("shoes under 500", "shoes", None, 500.0),
        ("watch below rs. 1,500", "watch", None, 1500.0),
        ("kurta between 20 and 40", "kurta", 20.0, 40.0),
        ("mug ₹200-₹400", "mug", 200.0, 400.0),
        ("羽绒服 100元以下", "羽绒服", None, 100.0),
        ("手机 低于2000元", "手机", None, 2000.0),
        ("sofa over $300", "sofa", 300.0, None),
        ("bag 1k to 2k", "bag", 1000.0, 2000.0),
        ("baby dress 6-12 months", "baby dress 6-12 months", None, None),
    ],
)
def test_price_phrases_become_bounds(query: str, text: str, low: float | None, high: float | None) -> None:
    assert parse_price(query) == (text, low, high)


def test_under_500_filters_results_by_price(keyword_engine: SearchEngine) -> None:
    everything = keyword_engine.search("analog watch", k=200, mode="bm25")
    cheap = keyword_engine.search("analog watch under 500", k=200, mode="bm25")
    assert cheap.applied_filters == {"price_max": 500.0}
    assert cheap.hits and all(h.item.price is not None and h.item.price <= 500 for h in cheap.hits)
    assert any(h.item.price and h.item.price > 500 for h in everything.hits)
    assert {h.item_id for h in cheap.hits} == {
        h.item_id for h in everything.hits if h.item.price is not None and h.item.price <= 500
    }


def test_a_brand_in_the_query_becomes_a_filter(keyword_engine: SearchEngine) -> None:
    result = keyword_engine.search("karatcraft ring", k=20, mode="bm25")
    assert result.applied_filters.get("brands") == ["karatcraft"]
    assert result.hits and all((h.item.brand or "").lower() == "karatcraft" for h in result.hits)


def test_colour_terms_boost_matching_items(keyword_engine: SearchEngine) -> None:
    result = keyword_engine.search("black analog watch", k=5, mode="bm25")
    assert result.query.colours == ["black"]
    assert sum("black" in (h.item.title or "") + str(h.item.attributes) for h in result.hits) >= 4


@pytest.mark.parametrize(
    ("typo", "right"), [("jaket", "jacket"), ("samsnug", "samsung"), ("braclet", "bracelet")]
)
def test_a_typo_is_corrected_and_finds_what_the_right_spelling_finds(
    keyword_engine: SearchEngine, typo: str, right: str
) -> None:
    fixed = keyword_engine.search(typo, k=5, mode="bm25")
    assert fixed.corrected == right  # "showing results for"
    assert fixed.item_ids == keyword_engine.search(right, k=5, mode="bm25").item_ids
    assert fixed.hits


def test_correct_words_are_left_alone(keyword_engine: SearchEngine) -> None:
    # catalogue words, and English words the catalogue lacks ("canine" must not become "nine")
    for query in ["dog shampoo", "analog watch", "cotton kurta", "usb charger", "canine grooming", "pooch"]:
        assert keyword_engine.search(query, k=1, mode="bm25").corrected is None


def _typo(word: str, rng: random.Random) -> str:
    i = rng.randrange(1, len(word) - 1)
    kind = rng.choice(["drop", "swap", "double", "replace"])
    if kind == "drop":
        return word[:i] + word[i + 1 :]
    if kind == "swap":
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if kind == "double":
        return word[:i] + word[i] + word[i:]
    return word[:i] + rng.choice("aeiou") + word[i + 1 :]


def test_a_generated_typo_set_finds_the_same_top_results(
    keyword_engine: SearchEngine, flipkart_1k: list[Item]
) -> None:
    """One random edit in one word of 2-word title phrases: ≥ 90% keep the same top-5 results."""
    rng = random.Random(5)
    same = total = 0
    for item in flipkart_1k[::4]:
        words = [w for w in (item.title or "").split() if w.isalpha()]
        if len(words) < 2 or len(words[-1]) < 5:
            continue
        right = f"{words[0]} {words[-1]}"
        typo = f"{words[0]} {_typo(words[-1], rng)}"
        if typo == right:
            continue
        total += 1
        expected = keyword_engine.search(right, k=5, mode="bm25", facets=False).item_ids
        got = keyword_engine.search(typo, k=5, mode="bm25", facets=False).item_ids
        same += got == expected
    assert total >= 100
    assert same / total >= 0.9, f"{same}/{total}"


def test_synonyms_widen_the_match(keyword_engine: SearchEngine) -> None:
    parsed = keyword_engine.understanding.parse("mobile cover")
    assert "phone" in parsed.expansions
    assert keyword_engine.search("tee", k=5, mode="bm25").hits


def test_autocomplete_from_titles_and_past_queries(keyword_engine: SearchEngine) -> None:
    engine = keyword_engine
    suggestions = engine.autocomplete("anal")
    assert suggestions and suggestions[0].startswith("analog")
    assert all(s.startswith("anal") for s in suggestions)
    ac = QueryUnderstanding().fit([]).autocomplete
    assert ac is not None
    with (DATA / "wands" / "query.csv").open() as f:
        for row in csv.DictReader(f, delimiter="\t"):
            ac.record(row["query"])
    ac.record("salon chair")
    assert ac.suggest("salon")[0] == "salon chair"


def test_chinese_queries_find_chinese_titles() -> None:
    # Hand-written titles in the style of Taobao listings, not real ones. Real Chinese titles are tested in
    # test_chinese_titles.py (data/mogujie_zh), but those are all women's clothing. These cover what they
    # lack: mixed Chinese/Latin text (Redmi Note 12 5G, nike 篮球鞋), brands, and phones, shoes and underwear.
    titles = [
        "波司登 女士 冬季 加厚 连帽 羽绒服 白鸭绒",
        "李宁 男子 跑步鞋 轻便 透气 运动鞋",
        "小米 Redmi Note 12 5G 智能手机 8GB+256GB",
        "南极人 纯棉 男士 保暖内衣 套装",
        "耐克 Nike Air 女子 篮球鞋",
        "雅鹿 男士 短款 羽绒服 黑色 外套",
    ]
    items = [Item(item_id=f"zh{i}", title=t, price=100.0 * (i + 1)) for i, t in enumerate(titles)]
    engine = SearchEngine.build(items, SearchConfig(dense=False))
    assert set(engine.search("羽绒服", k=3, mode="bm25").item_ids[:2]) == {"zh0", "zh5"}
    assert engine.search("跑步鞋", k=1, mode="bm25").item_ids == ["zh1"]
    assert engine.search("小米手机", k=1, mode="bm25").item_ids == ["zh2"]
    assert engine.search("nike 篮球鞋", k=1, mode="bm25").item_ids == ["zh4"]
    # price phrase in Chinese filters as well
    cheap = engine.search("羽绒服 200元以下", k=3, mode="bm25")
    assert cheap.item_ids == ["zh0"]
