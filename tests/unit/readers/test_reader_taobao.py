from __future__ import annotations

from collections import Counter

import pytest

from shelfwise.data.readers import FORMATS, ReadOptions

pytestmark = pytest.mark.shared_data


def test_taobao_sample_counts_and_fields(dataset_file, read_all) -> None:
    drafts, problems = read_all("taobao", dataset_file("taobao"))
    assert len(drafts) == 4_321
    assert problems == []
    assert Counter(d.fields["type"] for d in drafts) == {"pv": 3_926, "cart": 190, "fav": 128, "buy": 77}
    assert len({d.fields["user_id"] for d in drafts}) == 43

    first = drafts[0]
    assert first.line_no == 1
    assert first.raw == "1,2268318,2520377,pv,1511544070"
    assert first.fields == {"user_id": "1", "item_id": "2268318", "type": "pv", "ts": "1511544070"}
    assert first.item == {"item_id": "2268318", "attributes": {"category_id": "2520377"}}


def test_taobao_format() -> None:
    fmt = FORMATS["taobao"]
    assert fmt.time.unit == "s"
    assert not fmt.redistributable and fmt.shared == "taobao_sample/UserBehavior.csv"


def test_taobao_skips_a_header_someone_added(tmp_path, read_all) -> None:
    path = tmp_path / "ub.csv"
    path.write_text("user_id,item_id,category_id,behavior,timestamp\n7,8,9,buy,1511544070\n")
    drafts, problems = read_all("taobao", path, ReadOptions())
    assert [d.fields["item_id"] for d in drafts] == ["8"] and problems == []
