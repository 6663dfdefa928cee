from __future__ import annotations

import pytest

from shelfwise.data.readers import FORMATS
from shelfwise.data.readers.amazon import BASE_TS
from shelfwise.data.readers.base import MALFORMED


@pytest.mark.shared_data
def test_amazon_beauty_counts_and_fields(dataset_file, read_all) -> None:
    drafts, problems = read_all("amazon-beauty", dataset_file("amazon-beauty"))
    assert len(drafts) == 198_502
    assert problems == []
    assert len({d.fields["user_id"] for d in drafts}) == 22_363
    assert len({d.fields["item_id"] for d in drafts}) == 12_101
    assert {d.fields["type"] for d in drafts} == {"rate"}

    first = drafts[0]
    assert first.line_no == 1
    assert first.fields == {
        "user_id": "1",
        "session_id": None,
        "item_id": "1",
        "type": "rate",
        "ts": str(BASE_TS),
        "context": {"position": 0, "ts_synthetic": True},
    }
    # first line "1 1 2 3 4 5": positions give increasing synthetic seconds
    assert [(d.fields["item_id"], d.fields["ts"]) for d in drafts[:5]] == [
        (str(i + 1), str(BASE_TS + i)) for i in range(5)
    ]


def test_sequences_is_the_same_reader() -> None:
    assert FORMATS["sequences"].read is FORMATS["amazon-beauty"].read
    assert FORMATS["sequences"].title == "one user a line: user item item … in time order"
    assert FORMATS["amazon-beauty"].shared == "amazon_beauty/Beauty.txt"
    assert BASE_TS == 1_388_534_400
    assert FORMATS["amazon-beauty"].time.unit == "s"


def test_sequences_user_without_items_is_a_problem(tmp_path, read_all) -> None:
    path = tmp_path / "seq.txt"
    path.write_text("u1 a b\nu2\n\nu3\tc  d\n")
    drafts, problems = read_all("sequences", path)
    assert [(d.line_no, d.fields["user_id"], d.fields["item_id"]) for d in drafts] == [
        (1, "u1", "a"),
        (1, "u1", "b"),
        (4, "u3", "c"),
        (4, "u3", "d"),
    ]
    assert [(p.line_no, p.reason) for p in problems] == [(2, MALFORMED)]
