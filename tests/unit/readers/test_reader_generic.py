from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from shelfwise.core.errors import ConfigError, InputFileError
from shelfwise.data.readers import FORMATS, ReadOptions
from shelfwise.data.readers.base import INVALID_UTF8, MALFORMED, Draft
from shelfwise.data.readers.generic import ColumnMapping, make_generic_format


def _read(fmt, path, opts: ReadOptions | None = None):
    records = list(fmt.read(path, opts or ReadOptions()))
    return [r for r in records if isinstance(r, Draft)], [r for r in records if not isinstance(r, Draft)]


def test_identity_formats_are_registered() -> None:
    for name, kind in [
        ("csv", "events"),
        ("jsonl", "events"),
        ("parquet", "events"),
        ("csv-items", "items"),
        ("jsonl-items", "items"),
        ("parquet-items", "items"),
    ]:
        assert FORMATS[name].kind == kind


def test_csv_identity(tmp_path) -> None:
    path = tmp_path / "e.csv"
    path.write_text("ts,type,item_id,user_id,price,extra\n2024-01-01T00:00:00,view,i1,u1,,x\n")
    drafts, problems = _read(FORMATS["csv"], path)
    assert problems == []
    assert drafts[0].fields == {
        "user_id": "u1",
        "item_id": "i1",
        "type": "view",
        "ts": "2024-01-01T00:00:00",
        "price": None,
        "context": {},
    }


def test_csv_mapping_delimiter_context_and_time(tmp_path) -> None:
    mapping = ColumnMapping(
        columns={"user_id": "customer", "item_id": "sku", "type": "action", "ts": "when"},
        delimiter=";",
        ts_unit="ms",
        tz="Europe/Berlin",
        currency="EUR",
        context_columns=["device"],
    )
    fmt = make_generic_format("events", "csv", mapping, name="shop-export")
    assert fmt.name == "shop-export" and fmt.currency == "EUR"
    assert fmt.time.unit == "ms" and fmt.time.tz == "Europe/Berlin"
    path = tmp_path / "e.csv"
    path.write_text('customer;sku;action;when;device;price\nc1;s1;cart;1700000000000;mobile;"9,50"\nc2;s2\n')
    drafts, problems = _read(fmt, path)
    assert drafts[0].fields == {
        "user_id": "c1",
        "item_id": "s1",
        "type": "cart",
        "ts": "1700000000000",
        "price": "9,50",
        "context": {"device": "mobile"},
    }
    assert [(p.line_no, p.reason) for p in problems] == [(3, MALFORMED)]


def test_csv_header_lacking_required_columns_names_them(tmp_path) -> None:
    path = tmp_path / "e.csv"
    path.write_text("item_id,user_id\n1,2\n")
    with pytest.raises(InputFileError, match=r"lacks type, ts") as info:
        list(FORMATS["csv"].read(path, ReadOptions()))
    assert str(path) in str(info.value)
    with pytest.raises(InputFileError, match=r"lacks item_id"):
        list(FORMATS["csv-items"].read(_write(tmp_path / "i.csv", "sku,title\n1,a\n"), ReadOptions()))
    mapped = make_generic_format("events", "csv", ColumnMapping(columns={"user_id": "customer"}))
    with pytest.raises(InputFileError, match=r"lacks customer"):
        list(mapped.read(_write(tmp_path / "m.csv", "type,ts\nview,1\n"), ReadOptions()))


def _write(path, text: str):
    path.write_text(text)
    return path


def test_items_csv(tmp_path) -> None:
    path = _write(
        tmp_path / "i.csv", 'item_id,title,category,attributes,available\n1,Mug,a.b,"{""c"": 1}",no\n'
    )
    drafts, problems = _read(FORMATS["csv-items"], path)
    assert problems == []
    assert drafts[0].fields == {
        "item_id": "1",
        "title": "Mug",
        "category": "a.b",
        "attributes": {"c": 1},
        "available": "no",
    }


def test_jsonl(tmp_path) -> None:
    lines = [
        {"type": "view", "ts": 1700000000, "item_id": 5, "price": 1.5, "context": {"q": "mug"}},
        [1, 2],
        {"type": "view"},
        {"type": "view", "ts": [1]},
        {"type": "view", "ts": 1, "context": 3},
        {"type": "view", "ts": float("nan"), "user_id": True},
    ]
    path = _write(tmp_path / "e.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n")
    drafts, problems = _read(FORMATS["jsonl"], path)
    assert drafts[0].fields == {
        "item_id": "5",
        "type": "view",
        "ts": "1700000000",
        "price": "1.5",
        "context": {"q": "mug"},
    }
    assert drafts[1].fields["ts"] == "nan" and drafts[1].fields["user_id"] == "true"
    assert [(p.line_no, p.field, p.reason) for p in problems] == [
        (2, None, MALFORMED),
        (3, "ts", MALFORMED),
        (4, "ts", MALFORMED),
        (5, "context", MALFORMED),
    ]


def test_jsonl_first_record_decides_the_format(tmp_path) -> None:
    path = _write(tmp_path / "e.jsonl", '{"session": 1, "events": []}\n')
    with pytest.raises(InputFileError, match=r"lacks type, ts") as info:
        list(FORMATS["jsonl"].read(path, ReadOptions()))
    assert str(path) in str(info.value)
    path = _write(tmp_path / "a.jsonl", "[1, 2]\n")
    with pytest.raises(InputFileError, match="not a JSON object"):
        list(FORMATS["jsonl-items"].read(path, ReadOptions()))


def test_parquet(tmp_path) -> None:
    path = tmp_path / "e.parquet"
    table = pa.table(
        {
            "type": ["view", "buy"],
            "ts": pa.array([1700000000000, None], pa.int64()),
            "item_id": ["a", "b"],
            "price": [1.25, float("inf")],
            "context": ['{"q": "x"}', None],
        }
    )
    pq.write_table(table, path)
    fmt = make_generic_format("events", "parquet", ColumnMapping(ts_unit="ms"))
    drafts, problems = _read(fmt, path)
    assert problems == []
    assert drafts[0].fields == {
        "type": "view",
        "ts": "1700000000000",
        "item_id": "a",
        "price": "1.25",
        "context": {"q": "x"},
    }
    assert drafts[1].fields["ts"] is None and drafts[1].fields["price"] == "inf"
    assert len(_read(fmt, path, ReadOptions(limit=1))[0]) == 1


def test_parquet_lacking_columns(tmp_path) -> None:
    path = tmp_path / "i.parquet"
    pq.write_table(pa.table({"sku": ["a"]}), path)
    with pytest.raises(InputFileError, match="lack item_id") as info:
        list(FORMATS["parquet-items"].read(path, ReadOptions()))
    assert str(path) in str(info.value)


def test_mapping_is_checked() -> None:
    with pytest.raises(ValidationError):
        ColumnMapping(colums={"user_id": "x"})  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        ColumnMapping(tz="Mars/Olympus")
    with pytest.raises(ValidationError):
        ColumnMapping(delimiter=";;")
    with pytest.raises(ConfigError, match="title"):
        make_generic_format("events", "csv", ColumnMapping(columns={"title": "name"}))
    with pytest.raises(ConfigError):
        make_generic_format("queries", "csv", ColumnMapping())


def test_invalid_utf8_row_is_a_problem(tmp_path) -> None:
    path = tmp_path / "e.csv"
    path.write_bytes(b"type,ts\nview,1\nview,caf\xe9\nview,2\n")
    drafts, problems = _read(FORMATS["csv"], path)
    assert len(drafts) == 2 and [(p.line_no, p.reason) for p in problems] == [(3, INVALID_UTF8)]


def test_jsonl_mapping_and_absent_optional_keys(tmp_path) -> None:
    mapping = ColumnMapping(columns={"user_id": "customer", "type": "event"}, context_columns=["page"])
    fmt = make_generic_format("events", "jsonl", mapping)
    path = _write(
        tmp_path / "e.jsonl",
        '{"event": "view", "ts": 1}\n{"event": "buy", "ts": 2, "customer": 7, "page": "/x"}\n',
    )
    drafts, problems = _read(fmt, path)
    assert problems == []
    assert drafts[0].fields == {"type": "view", "ts": "1", "context": {}}  # absent keys stay absent
    assert drafts[1].fields == {"user_id": "7", "type": "buy", "ts": "2", "context": {"page": "/x"}}
