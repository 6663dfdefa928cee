from __future__ import annotations

from shelfwise.data.readers import FORMATS


def test_wands_queries_counts_and_fields(dataset_file, read_all) -> None:
    drafts, problems = read_all("wands", dataset_file("wands"))
    assert len(drafts) == 480
    assert problems == []
    assert drafts[0].fields == {"query_id": "0", "text": "salon chair", "query_class": "Massage Chairs"}
    by_id = {d.fields["query_id"]: d.fields for d in drafts}
    assert by_id["2"]["query_class"] == "Kids Wall Décor"
    assert by_id["208"]["text"] == 'fawkes 36" blue vanity'  # CSV-quoted in the file
    assert by_id["197"]["query_class"] is None


def test_wands_format() -> None:
    fmt = FORMATS["wands"]
    assert fmt.kind == "queries"
    assert fmt.redistributable and fmt.licence.startswith("MIT")
    assert fmt.vendored == "data/wands/query.csv"
