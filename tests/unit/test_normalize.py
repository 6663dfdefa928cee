from __future__ import annotations

import pytest

from shelfwise.data.normalize import category_path, clean_text, currency_code


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("appliances.environment.water_heater", "appliances > environment > water heater"),
        ("['footwear', 'womens footwear', 'ballerinas']", "footwear > womens footwear > ballerinas"),
        ('["Clothing >> Women\'s Clothing >> Tops"]', "clothing > women's clothing > tops"),
        ("Home > Kitchen >  Mugs", "home > kitchen > mugs"),
        ("Home/Kitchen", "home > kitchen"),
        ("  ", None),
        ("Garden Tools", "garden tools"),
    ],
)
def test_category_paths_have_one_spelling(raw: str, expected: str | None) -> None:
    assert category_path(raw) == expected


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("gbp", "GBP"),
        ("£", "GBP"),
        ("₹", "INR"),
        ("元", "CNY"),
        ("Rs.", "INR"),
        ("USD", "USD"),
        ("doubloons", None),
        ("", None),
    ],
)
def test_currency_codes(raw: str, code: str | None) -> None:
    assert currency_code(raw) == code


def test_clean_text() -> None:
    assert clean_text("  WHITE   HANGING\tHEART,  ") == "WHITE HANGING HEART"
    assert clean_text("ｆｕｌｌ　ｗｉｄｔｈ") == "full width"  # NFKC
    assert clean_text("bad\x00byte\udc80") == "badbyte\ufffd"
