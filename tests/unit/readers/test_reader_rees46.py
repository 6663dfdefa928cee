from __future__ import annotations

from collections import Counter

import pytest

from shelfwise.data.readers import FORMATS
from shelfwise.data.readers.base import MALFORMED

pytestmark = pytest.mark.shared_data


def test_rees46_sample_counts_and_fields(dataset_file, read_all) -> None:
    drafts, problems = read_all("rees46", dataset_file("rees46"))
    # The README counts 17,435 lines; the file's last line is cut off mid-record (8 of 9 fields,
    # no session), so it is a Problem and 17,434 lines are events.
    assert len(drafts) == 17_434
    assert [(p.line_no, p.reason) for p in problems] == [(17_436, MALFORMED)]
    assert Counter(d.fields["type"] for d in drafts) == {"view": 17_055, "cart": 165, "purchase": 214}

    first = drafts[0]
    assert first.line_no == 2
    assert first.fields == {
        "user_id": "541312140",
        "session_id": "72d76fde-8bb3-4e00-8c23-a032dfed738c",
        "item_id": "44600062",
        "type": "view",
        "ts": "2019-10-01 00:00:00",
        "price": "35.79",
    }
    assert first.item == {
        "item_id": "44600062",
        "category": None,
        "brand": "shiseido",
        "price": "35.79",
        "attributes": {"category_id": "2103807459595387724"},
    }
    assert drafts[1].item is not None
    assert drafts[1].item["category"] == "appliances.environment.water_heater"
    assert all(not d.fields["ts"].endswith("UTC") for d in drafts)


def test_rees46_format() -> None:
    fmt = FORMATS["rees46"]
    assert fmt.kind == "events"
    assert fmt.currency == "USD"
    assert fmt.time.unit == "iso" and fmt.time.tz == "UTC"
    assert not fmt.redistributable and fmt.vendored is None
