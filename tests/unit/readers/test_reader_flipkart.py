from __future__ import annotations

from shelfwise.data.readers import FORMATS
from shelfwise.data.readers.flipkart import parse_specifications


def test_flipkart_20k_counts_and_fields(dataset_file, read_all) -> None:
    drafts, problems = read_all("flipkart", dataset_file("flipkart"))
    assert len(drafts) == 20_000
    assert problems == []
    assert len({d.fields["item_id"] for d in drafts}) == 20_000
    assert sum(1 for d in drafts if d.fields["brand"] is None) == 5_861
    assert sum(1 for d in drafts if "rating" not in d.fields["attributes"]) == 18_151

    first = drafts[0]
    assert first.line_no == 2
    assert first.fields == {
        "item_id": "c2d766ca982eca8304150849735ffef9",
        "title": "Alisha Solid Women's Cycling Shorts",
        "brand": "Alisha",
        "price": "379",
        "currency": "INR",
        "attributes": {"pid": "SRTEH2FF9KEDEFGF", "retail_price": "999"},
    }


def test_flipkart_1k_counts_and_fields(dataset_file, read_all) -> None:
    drafts, problems = read_all("flipkart-1k", dataset_file("flipkart-1k"))
    assert len(drafts) == 1_002
    assert problems == []

    first = drafts[0]
    assert first.fields["item_id"] == "f449ec65dcbc041b6ae5e6a32717d01b"
    assert first.fields["title"] == "aw bellies"
    assert first.fields["category"] == "['footwear', 'womens footwear', 'ballerinas', 'aw bellies']"
    assert first.fields["price"] == "499.0"
    assert first.fields["brand"] == "aw"
    assert first.fields["description"].startswith("key features of aw bellies")
    assert first.fields["attributes"] == {
        "ideal for": "women",
        "occasion": "casual",
        "color": "red",
        "outer material": "patent leather",
        "heel height": "1 inch",
        "number of contents in sales package": "pack of 1",
        "pid": "SHOEH4GRSUBJGZXE",
        "retail_price": "999.0",
    }


def test_flipkart_formats() -> None:
    for name in ("flipkart", "flipkart-1k"):
        fmt = FORMATS[name]
        assert fmt.kind == "items" and fmt.currency == "INR"
        assert fmt.redistributable and fmt.licence.startswith("CC BY-SA 4.0")


def test_parse_specifications() -> None:
    assert parse_specifications("") == {}
    assert parse_specifications("ideal for: women, color: brown, white13, weight: 2 kg") == {
        "ideal for": "women",
        "color": "brown, white13",
        "weight": "2 kg",
    }
    assert parse_specifications("occasion: ethnic, casual, party") == {"occasion": "ethnic, casual, party"}
    assert parse_specifications("no key here, color: red, color: blue") == {"color": "red"}
