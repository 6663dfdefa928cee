"""Chinese queries over real Chinese product titles: 64 Mogujie listings (data/mogujie_zh).

Every expectation comes from the titles themselves: an item is right for "毛衣" when its title contains 毛衣.
"""

from __future__ import annotations

import csv
import hashlib
import re

import pytest

from shelfwise.data.schemas import Item
from shelfwise.search.documents import read_products
from shelfwise.search.engine import SearchConfig, SearchEngine
from tests.conftest import DATA

MOGUJIE = DATA / "mogujie_zh" / "products.csv"
K = 10


@pytest.fixture(scope="module")
def zh_items() -> list[Item]:
    return read_products(MOGUJIE)


@pytest.fixture(scope="module")
def zh_engine(zh_items: list[Item]) -> SearchEngine:
    return SearchEngine.build(zh_items, SearchConfig(dense=False))


def _titled(items: list[Item], *words: str) -> set[str]:
    return {i.item_id for i in items if all(w in (i.title or "") for w in words)}


def test_the_mogujie_fixture_loads_with_its_titles_unchanged(zh_items: list[Item]) -> None:
    readme = (MOGUJIE.parent / "README.md").read_text(encoding="utf-8")
    match = re.search(r"\*\*sha256:\*\* `([0-9a-f]{64})`", readme)
    assert match and hashlib.sha256(MOGUJIE.read_bytes()).hexdigest() == match.group(1)
    with MOGUJIE.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(zh_items) == len(rows) == 64
    assert len({i.item_id for i in zh_items}) == 64
    # the loader's clean-up (NFKC, spaces) must not change a seller's title
    assert [i.title for i in zh_items] == [r["title"] for r in rows]
    assert all(i.price is not None and i.price > 0 for i in zh_items)


@pytest.mark.parametrize("word", ["毛衣", "棒球服", "针织衫", "打底衫", "夹克", "外套", "连衣裙", "牛仔裤"])
def test_a_chinese_word_ranks_the_titles_containing_it_first(
    zh_engine: SearchEngine, zh_items: list[Item], word: str
) -> None:
    expected = _titled(zh_items, word)
    assert len(expected) >= 2  # a word of the data, not of the test
    top = zh_engine.search(word, k=K, mode="bm25", facets=False).item_ids
    n = min(K, len(expected))
    assert len(top) >= n
    assert set(top[:n]) <= expected, [t for t in top[:n] if t not in expected]


@pytest.mark.parametrize(
    "word",
    [
        "棒球服",
        "针织衫",
        "打底衫",
        "连衣裙",
        "牛仔裤",
        "夹克",
        # jieba alone cuts 水貂绒毛衣 as 水貂/绒毛/衣 and does not know 卫衣 (羊羔毛卫衣 → 毛卫衣):
        # the analyser's Han character pairs find them
        "毛衣",
        "卫衣",
    ],
)
def test_a_chinese_word_finds_every_title_containing_it(
    zh_engine: SearchEngine, zh_items: list[Item], word: str
) -> None:
    found = set(zh_engine.search(word, k=len(zh_items), mode="bm25", facets=False).item_ids)
    missing = _titled(zh_items, word) - found
    assert not missing, sorted(i.title or "" for i in zh_items if i.item_id in missing)


def test_a_two_word_chinese_query_puts_titles_with_both_words_first(
    zh_engine: SearchEngine, zh_items: list[Item]
) -> None:
    both = _titled(zh_items, "针织衫", "女")
    assert len(both) >= K
    top = zh_engine.search("针织衫 女", k=K, mode="bm25", facets=False).item_ids
    assert len(top) == K and set(top) <= both


@pytest.mark.parametrize(
    ("query", "word", "bound"),
    [
        ("毛衣 50元以下", "毛衣", {"price_max": 50.0}),
        ("针织衫 50块以内", "针织衫", {"price_max": 50.0}),
        ("棒球服 低于100元", "棒球服", {"price_max": 100.0}),
        ("棒球服 100元以上", "棒球服", {"price_min": 100.0}),
    ],
)
def test_a_chinese_price_phrase_filters_real_titles(
    zh_engine: SearchEngine, zh_items: list[Item], query: str, word: str, bound: dict[str, float]
) -> None:
    result = zh_engine.search(query, k=len(zh_items), mode="bm25", facets=False)
    assert result.applied_filters == bound
    low, high = bound.get("price_min", float("-inf")), bound.get("price_max", float("inf"))

    def inside(item: Item) -> bool:
        return item.price is not None and low <= item.price <= high

    assert result.hits and all(inside(h.item) for h in result.hits)
    # the filter drops exactly the out-of-range items of the plain query, nothing else
    plain = zh_engine.search(word, k=len(zh_items), mode="bm25", facets=False)
    assert any(not inside(h.item) for h in plain.hits)
    assert {h.item_id for h in result.hits} == {h.item_id for h in plain.hits if inside(h.item)}
    # and the in-range titles with the word come first (针织衫 also matches its part 针织, ranked lower)
    expected = {i.item_id for i in zh_items if inside(i)} & _titled(zh_items, word)
    n = min(K, len(expected))
    assert n >= 2 and set(result.item_ids[:n]) <= expected
