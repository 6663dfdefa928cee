from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from shelfwise.data.privacy import Pseudonymizer, scrub_pii


def test_pseudonyms_are_stable_keyed_and_not_the_raw_id() -> None:
    a, b = Pseudonymizer(b"k" * 32), Pseudonymizer(b"j" * 32)
    assert a("17850") == a("17850") == Pseudonymizer(b"k" * 32)("17850")
    assert a("17850") != a("17851")
    assert a("17850") != b("17850")
    assert "17850" not in a("17850") and len(a("17850")) == 32


def test_contact_details_are_scrubbed() -> None:
    text, n = scrub_pii("mail jane.doe+shop@example.co.uk or call +44 20 7946 0958 today")
    assert text == "mail [email] or call [phone] today" and n == 2
    assert scrub_pii("ring 0049-30-1234567")[0] == "ring [phone]"


def test_product_text_is_left_alone() -> None:
    for text in (
        "WHITE HANGING HEART T-LIGHT HOLDER 85123A",
        "price 2.55 GBP",
        "size 10x20 cm",
        "pack of 12",
        "ean 4006381333931x",
    ):
        assert scrub_pii(text) == (text, 0)


@given(
    st.from_regex(r"[a-z]{1,10}(\.[a-z]{1,5})?@[a-z]{2,10}\.(com|org|de)", fullmatch=True),
    st.text(max_size=30),
)
def test_no_email_survives(email: str, noise: str) -> None:
    text, _ = scrub_pii(f"{noise} {email} {noise}")
    assert email not in text
