from __future__ import annotations

import json
from collections import Counter

from shelfwise.data.readers import FORMATS, ReadOptions
from shelfwise.data.readers.base import MALFORMED


def test_otto_fixture_counts_and_fields(dataset_file, read_all) -> None:
    path = dataset_file("otto")
    drafts, problems = read_all("otto", path)
    assert len(drafts) == 862
    assert problems == []
    assert Counter(d.fields["type"] for d in drafts) == {"clicks": 800, "carts": 52, "orders": 10}
    assert len({d.fields["session_id"] for d in drafts}) == 20
    assert len({d.fields["item_id"] for d in drafts}) == 510
    assert min(int(d.fields["ts"]) for d in drafts) == 1_659_304_800_025
    assert max(int(d.fields["ts"]) for d in drafts) == 1_661_723_997_885

    first = drafts[0]
    assert first.line_no == 1
    assert first.fields == {
        "user_id": "0",
        "session_id": "0",
        "item_id": "1517085",
        "type": "clicks",
        "ts": "1659304800025",
        "context": {"position": 0},
    }
    assert json.loads(first.raw) == {
        "session": 0,
        "event": {"aid": 1517085, "ts": 1659304800025, "type": "clicks"},
    }
    # every event of a session carries the session's line number
    assert {d.line_no for d in drafts} == set(range(1, 21))


def test_otto_format() -> None:
    fmt = FORMATS["otto"]
    assert fmt.time.unit == "ms"
    assert fmt.redistributable and fmt.licence.startswith("CC BY 4.0")
    assert "no user" in fmt.notes.lower()


def test_otto_limit_counts_events_not_lines(dataset_file, read_all) -> None:
    drafts, problems = read_all("otto", dataset_file("otto"), ReadOptions(limit=5))
    assert len(drafts) == 5 and problems == []


def test_otto_bad_sessions(tmp_path, read_all) -> None:
    path = tmp_path / "s.jsonl"
    lines = [
        {"session": 1, "events": [{"aid": 5, "ts": 1659304800025, "type": "clicks"}]},
        {"session": 2},
        {"session": 3, "events": {"aid": 5}},
        {
            "session": 4,
            "events": [7, {"aid": [1, 2], "ts": 1, "type": "carts"}, {"aid": 9, "ts": 2, "type": "x"}],
        },
        [1, 2],
    ]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    drafts, problems = read_all("otto", path)
    assert [(d.line_no, d.fields["item_id"]) for d in drafts] == [(1, "5"), (4, "9")]
    assert [(p.line_no, p.reason) for p in problems] == [
        (2, MALFORMED),
        (3, MALFORMED),
        (4, MALFORMED),
        (4, MALFORMED),
        (5, MALFORMED),
    ]
