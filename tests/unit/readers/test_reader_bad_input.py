"""Bad input thrown at every reader: it may only yield records or raise ``InputFileError``.

In a file mixing good and bad lines every good line yields its Drafts and every bad line one
Problem with a reason, counted exactly; a file that is not the claimed format raises
``InputFileError`` naming the path.
"""

from __future__ import annotations

import gzip
import io
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shelfwise.core.errors import InputFileError
from shelfwise.data.readers import FORMATS, ReadOptions
from shelfwise.data.readers.base import FIELD_TOO_LARGE, INVALID_UTF8, MALFORMED, Draft, Problem
from shelfwise.data.readers.flipkart import COLUMNS as FLIPKART_COLUMNS
from shelfwise.data.readers.flipkart import COLUMNS_1K as FLIPKART_1K_COLUMNS
from shelfwise.data.readers.online_retail import COLUMNS as RETAIL_COLUMNS
from shelfwise.data.readers.platforms import (
    GOOGLE_REQUIRED,
    MAGENTO_PRODUCT_COLUMNS,
    SHOPIFY_ORDER_COLUMNS,
    SHOPIFY_PRODUCT_COLUMNS,
    WOO_ORDER_COLUMNS,
)
from shelfwise.data.readers.rees46 import COLUMNS as REES46_COLUMNS

LIMIT = 8192  # field_size_limit used throughout
OPTS = ReadOptions(field_size_limit=LIMIT)
HUGE = LIMIT + 1808
READER_REASONS = {MALFORMED, INVALID_UTF8, FIELD_TOO_LARGE}
FUZZ = settings(
    max_examples=50,
    database=None,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
_files = count()

# --- what a line can be ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    data: bytes
    drafts: int = 0
    problems: int = 0


# Safe cell text: letters and digits of any script, a few symbols; no delimiter, quote or newline.
_ALPHA = st.characters(
    whitelist_categories=("L", "N"), whitelist_characters=".-+€é", blacklist_characters="_"
)
TOKEN = st.text(_ALPHA, min_size=1, max_size=10)
ODD_VALUES = st.sampled_from(
    ["NaN", "nan", "inf", "-inf", "Infinity", "1e309", "-1", "", "abc", "0x1F", "  spaced  ", "12.5.3", "∞"]
)
CELL = st.one_of(st.text(st.one_of(_ALPHA, st.just(" ")), max_size=12), ODD_VALUES)
SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)


@dataclass(frozen=True)
class Profile:
    """How to write good and bad lines for one format."""

    header: str | None
    good: Callable[[st.DrawFn], Line]
    bad: tuple[Callable[[st.DrawFn], Line], ...]


def _csv_profile(
    columns: tuple[str, ...] | None,
    width: int,
    delimiter: str = ",",
    fixed: dict[int, st.SearchStrategy] | None = None,
) -> Profile:
    fixed = fixed or {}

    def cells(draw: st.DrawFn) -> list[str]:
        return [draw(fixed.get(i, CELL)) for i in range(width)]

    def good(draw: st.DrawFn) -> Line:
        return Line(delimiter.join(cells(draw)).encode(), drafts=1)

    def wrong_count(draw: st.DrawFn) -> Line:
        n = draw(st.one_of(st.integers(1, width - 1), st.integers(width + 1, width + 3)))
        return Line(delimiter.join(draw(TOKEN) for _ in range(n)).encode(), problems=1)

    def latin1(draw: st.DrawFn) -> Line:
        row = [c.encode() for c in cells(draw)]
        row[draw(st.integers(0, width - 1))] = "café crème".encode("latin-1")
        return Line(delimiter.encode().join(row), problems=1)

    def huge(draw: st.DrawFn) -> Line:
        row = cells(draw)
        row[draw(st.integers(0, width - 1))] = "x" * HUGE
        return Line(delimiter.join(row).encode(), problems=1)

    def stray_quote(draw: st.DrawFn) -> Line:
        row = cells(draw)
        row[draw(st.integers(0, width - 1))] = '"quoted"tail'
        return Line(delimiter.join(row).encode(), problems=1)

    header = delimiter.join(columns) if columns else None
    return Profile(header, good, (wrong_count, latin1, huge, stray_quote))


def _json_lines(draw: st.DrawFn, value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=draw(st.booleans())).encode()


def _jsonl_common_bad(required: dict[str, Any]) -> tuple[Callable[[st.DrawFn], Line], ...]:
    def not_json(draw: st.DrawFn) -> Line:
        return Line(
            draw(st.sampled_from([b"{broken", b'{"a": }', b"nul", b"{'single': 1}", b"[1, 2"])), problems=1
        )

    def not_object(draw: st.DrawFn) -> Line:
        value = draw(st.one_of(st.lists(st.integers(), max_size=3), st.text(max_size=5), st.integers()))
        return Line(json.dumps(value).encode(), problems=1)

    def latin1(draw: st.DrawFn) -> Line:
        return Line(
            json.dumps({**required, "note": "CAFE"}).encode().replace(b"CAFE", b"caf\xe9"), problems=1
        )

    def huge(draw: st.DrawFn) -> Line:
        return Line(json.dumps({**required, "note": "x" * HUGE}).encode(), problems=1)

    def huge_int(draw: st.DrawFn) -> Line:  # more digits than int() accepts by default
        return Line(b'{"n": ' + b"7" * 4400 + b"}", problems=1)

    return not_json, not_object, latin1, huge, huge_int


def _otto_profile() -> Profile:
    event = st.fixed_dictionaries({"aid": SCALAR, "ts": SCALAR, "type": SCALAR})
    good_event = st.fixed_dictionaries(
        {
            "aid": st.integers(0, 10**7),
            "ts": st.integers(0, 2 * 10**12),
            "type": st.sampled_from(["clicks", "carts"]),
        }
    )
    session = st.integers(0, 10**9)

    def good(draw: st.DrawFn) -> Line:
        events = draw(st.lists(st.one_of(event, good_event), max_size=6))
        return Line(_json_lines(draw, {"session": draw(session), "events": events}), drafts=len(events))

    def no_events(draw: st.DrawFn) -> Line:
        return Line(json.dumps({"session": draw(session)}).encode(), problems=1)

    def events_not_list(draw: st.DrawFn) -> Line:
        value = draw(st.one_of(st.text(max_size=3), st.integers(), st.just({"aid": 1})))
        return Line(json.dumps({"session": draw(session), "events": value}).encode(), problems=1)

    def no_session(draw: st.DrawFn) -> Line:
        return Line(json.dumps({"events": draw(st.lists(good_event, max_size=2))}).encode(), problems=1)

    def bad_event(draw: st.DrawFn) -> Line:
        events: list[Any] = draw(st.lists(good_event, max_size=4))
        poison = draw(st.one_of(st.integers(), st.just([1]), st.just({"aid": [1, 2], "ts": 1, "type": "x"})))
        events.insert(draw(st.integers(0, len(events))), poison)
        return Line(json.dumps({"session": draw(session), "events": events}).encode(), len(events) - 1, 1)

    common = _jsonl_common_bad({"session": 1, "events": []})
    return Profile(None, good, (no_events, events_not_list, no_session, bad_event, *common))


def _magento_profile() -> Profile:
    """Magento 2 orders (REST ``GET /V1/orders``), one order a line, each line item one draft."""
    good_line = st.fixed_dictionaries(
        {
            "sku": st.text("ABCXYZ-019", min_size=1, max_size=8).filter(str.strip),
            "name": st.text(max_size=8),
            "qty_ordered": st.sampled_from([1.0, 2.0, "3.0000"]),
            "price": st.one_of(st.floats(0, 1000), st.just("9.99")),
            "parent_item_id": st.none(),
        }
    )
    state = st.sampled_from(["complete", "processing", "closed", "new", "holded"])

    def order(draw: st.DrawFn, items: Any) -> dict[str, Any]:
        return {
            "increment_id": str(draw(st.integers(1, 10**9))),
            "created_at": "2024-05-02 09:14:21",
            "state": draw(state),
            "customer_id": draw(st.one_of(st.none(), st.integers(1, 10**6))),
            "customer_email": "a@example.org",
            "items": items,
        }

    def good(draw: st.DrawFn) -> Line:
        items = draw(st.lists(good_line, min_size=1, max_size=4))
        return Line(_json_lines(draw, order(draw, items)), drafts=len(items))

    def no_number(draw: st.DrawFn) -> Line:
        value = order(draw, draw(st.lists(good_line, min_size=1, max_size=2)))
        del value["increment_id"]
        return Line(json.dumps(value).encode(), problems=1)

    def items_not_list(draw: st.DrawFn) -> Line:
        items = draw(st.one_of(st.text(max_size=3), st.integers(), st.just({"sku": "A"}), st.just([])))
        return Line(json.dumps(order(draw, items)).encode(), problems=1)

    def nested_time(draw: st.DrawFn) -> Line:
        value = order(draw, draw(st.lists(good_line, min_size=1, max_size=2)))
        value["created_at"] = draw(st.one_of(st.just([1]), st.just({"a": 1})))
        return Line(json.dumps(value).encode(), problems=1)

    def bad_line(draw: st.DrawFn) -> Line:
        items: list[Any] = draw(st.lists(good_line, max_size=3))
        poison = draw(st.one_of(st.integers(), st.just([1]), st.just({"sku": [1, 2], "price": 1})))
        items.insert(draw(st.integers(0, len(items))), poison)
        return Line(json.dumps(order(draw, items)).encode(), len(items) - 1, 1)

    common = _jsonl_common_bad({"increment_id": "1", "created_at": "2024-05-02", "state": "complete"})
    return Profile(None, good, (no_number, items_not_list, nested_time, bad_line, *common))


def _flat_jsonl_profile(required: tuple[str, ...], optional: tuple[str, ...], bag: str) -> Profile:
    def good(draw: st.DrawFn) -> Line:
        value: dict[str, Any] = {k: draw(SCALAR) for k in required}
        value.update(draw(st.dictionaries(st.sampled_from(optional), SCALAR, max_size=3)))
        if draw(st.booleans()):
            value[bag] = draw(st.dictionaries(st.text(max_size=4), SCALAR, max_size=3))
        return Line(_json_lines(draw, value), drafts=1)

    def lacks_required(draw: st.DrawFn) -> Line:
        value = {k: draw(SCALAR) for k in required}
        del value[draw(st.sampled_from(required))]
        return Line(json.dumps(value).encode(), problems=1)

    def nested(draw: st.DrawFn) -> Line:
        value: dict[str, Any] = {k: draw(SCALAR) for k in required}
        value[draw(st.sampled_from(required))] = draw(st.one_of(st.just([1]), st.just({"a": 1})))
        return Line(json.dumps(value).encode(), problems=1)

    def bag_not_object(draw: st.DrawFn) -> Line:
        value: dict[str, Any] = {k: draw(SCALAR) for k in required}
        value[bag] = draw(st.one_of(st.integers(), st.just([1]), st.just("not json")))
        return Line(json.dumps(value).encode(), problems=1)

    common = _jsonl_common_bad(dict.fromkeys(required, "x"))
    return Profile(None, good, (lacks_required, nested, bag_not_object, *common))


def _sequences_profile() -> Profile:
    def good(draw: st.DrawFn) -> Line:
        tokens = draw(st.lists(TOKEN, min_size=2, max_size=9))
        return Line(" ".join(tokens).encode(), drafts=len(tokens) - 1)

    def user_only(draw: st.DrawFn) -> Line:
        return Line(draw(TOKEN).encode(), problems=1)

    def latin1(draw: st.DrawFn) -> Line:
        return Line(b"u1 caf\xe9 i2", problems=1)

    def huge(draw: st.DrawFn) -> Line:
        return Line(("u " + " ".join(["item"] * (HUGE // 5))).encode(), problems=1)

    return Profile(None, good, (user_only, latin1, huge))


_PAID = st.sampled_from(["paid", "refunded", "pending", "completed", "on-hold"])
_STOCK = st.builds(lambda n: f"I{n}", st.integers(0, 99_999))
EVENTS_CSV = ("type", "ts", "item_id", "user_id", "price", "quantity")
ITEMS_CSV = ("item_id", "title", "price", "category", "brand")
PROFILES: dict[str, Profile] = {
    "online-retail": _csv_profile(RETAIL_COLUMNS, 8, fixed={1: _STOCK}),
    "rees46": _csv_profile(REES46_COLUMNS, 9),
    "taobao": _csv_profile(None, 5),
    "flipkart": _csv_profile(FLIPKART_COLUMNS, 9),
    "flipkart-1k": _csv_profile(FLIPKART_1K_COLUMNS, 16),
    "wands": _csv_profile(("query_id", "query", "query_class"), 3, "\t"),
    "csv": _csv_profile(EVENTS_CSV, len(EVENTS_CSV)),
    "csv-items": _csv_profile(ITEMS_CSV, len(ITEMS_CSV)),
    "otto": _otto_profile(),
    "jsonl": _flat_jsonl_profile(("type", "ts"), ("item_id", "user_id", "price", "quantity"), "context"),
    "jsonl-items": _flat_jsonl_profile(("item_id",), ("title", "price", "brand", "available"), "attributes"),
    # platform exports: the status column holds a status the reader maps (an unknown one is a Problem
    # by design), the line's name or SKU is never blank (a line that names no product is a Problem)
    "shopify-orders": _csv_profile(SHOPIFY_ORDER_COLUMNS, 9, fixed={2: _PAID, 5: TOKEN}),
    "shopify-products": _csv_profile(SHOPIFY_PRODUCT_COLUMNS, 5, fixed={3: TOKEN}),
    "woocommerce-orders": _csv_profile(WOO_ORDER_COLUMNS, 6, fixed={2: _PAID, 3: TOKEN}),
    "magento-products": _csv_profile(MAGENTO_PRODUCT_COLUMNS, 5, fixed={1: st.just("")}),
    "google-merchant": _csv_profile(GOOGLE_REQUIRED, 3, "\t"),
    "magento": _magento_profile(),
    "amazon-beauty": _sequences_profile(),
    "sequences": _sequences_profile(),
}
PARQUET = ("parquet", "parquet-items")


def test_every_format_is_covered() -> None:
    assert set(FORMATS) == set(PROFILES) | set(PARQUET)


# --- helpers -----------------------------------------------------------------------------------


def _write(tmp_path: Path, data: bytes, suffix: str = ".dat") -> Path:
    path = tmp_path / f"input-{next(_files)}{suffix}"
    path.write_bytes(data)
    return path


def _consume(name: str, path: Path, opts: ReadOptions = OPTS) -> tuple[list[Draft], list[Problem]]:
    drafts: list[Draft] = []
    problems: list[Problem] = []
    for rec in FORMATS[name].read(path, opts):
        if isinstance(rec, Draft):
            drafts.append(rec)
        else:
            assert isinstance(rec, Problem)
            problems.append(rec)
    return drafts, problems


def _read_or_reject(name: str, path: Path) -> None:
    """Only records or InputFileError (naming the path) may come out."""
    try:
        _, problems = _consume(name, path)
    except InputFileError as exc:
        assert str(path) in str(exc)
        return
    assert all(p.reason for p in problems)


# cells a valid line of a platform export must hold: a status the reader maps, the default store view
_SAMPLE_CELLS: dict[str, dict[int, str]] = {
    "shopify-orders": {2: "paid", 3: "2024-01-01 10:00:00 +0100"},
    "woocommerce-orders": {2: "completed"},
    "magento-products": {1: ""},
}


def _sample(name: str, lines: int = 60) -> bytes:
    """A valid file of the format, deterministic."""
    if name in PARQUET:
        cols = ("type", "ts", "item_id") if FORMATS[name].kind == "events" else ("item_id", "title", "price")
        buf = io.BytesIO()
        pq.write_table(pa.table({c: [f"{c}{i}" for i in range(lines)] for c in cols}), buf)
        return buf.getvalue()
    rows: list[str]
    if name == "otto":
        rows = [
            json.dumps({"session": i, "events": [{"aid": i, "ts": 1659304800025 + i, "type": "clicks"}]})
            for i in range(lines)
        ]
    elif name == "jsonl":
        rows = [json.dumps({"type": "view", "ts": i, "item_id": f"i{i}"}) for i in range(lines)]
    elif name == "magento":
        rows = [
            json.dumps(
                {
                    "increment_id": f"{i:09d}",
                    "created_at": "2024-05-02 09:14:21",
                    "state": "complete",
                    "customer_id": i,
                    "items": [{"sku": f"S{i}", "name": f"n{i}", "qty_ordered": 1.0, "price": 2.5}],
                }
            )
            for i in range(lines)
        ]
    elif name == "jsonl-items":
        rows = [json.dumps({"item_id": f"i{i}", "title": f"t{i}"}) for i in range(lines)]
    elif name in ("amazon-beauty", "sequences"):
        rows = [f"u{i} a{i} b{i}" for i in range(lines)]
    else:
        header = PROFILES[name].header
        sep = "\t" if name in ("wands", "google-merchant") else ","
        width = len(header.split(sep)) if header else 5
        rows = [header] if header else []
        fixed = _SAMPLE_CELLS.get(name, {})
        rows += [sep.join(fixed.get(c, f"I{i}") for c in range(width)) for i in range(lines)]
    return ("\n".join(rows) + "\n").encode()


# --- mixed good and bad lines ------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PROFILES))
@FUZZ
@given(data=st.data())
def test_mixed_good_and_bad_lines_are_counted_exactly(name: str, tmp_path: Path, data: st.DataObject) -> None:
    profile = PROFILES[name]
    draw = data.draw
    kinds = st.one_of(
        st.just(profile.good),
        st.sampled_from(profile.bad),
        st.just(lambda _draw: Line(b"")),  # blank lines are skipped
    )
    first = profile.good(draw)  # the first record decides the format, so it is good
    makers = draw(st.lists(kinds, max_size=20))
    lines = [first] + [make(draw) for make in makers]
    eol = draw(st.sampled_from([b"\n", b"\r\n"]))
    head = [profile.header.encode()] if profile.header else []
    content = draw(st.sampled_from([b"", b"\xef\xbb\xbf"])) + eol.join(head + [ln.data for ln in lines]) + eol
    if draw(st.booleans()):
        content = gzip.compress(content)
    path = _write(tmp_path, content)

    drafts, problems = _consume(name, path)

    assert len(drafts) == sum(ln.drafts for ln in lines)
    offset = len(head) + 1
    expected = sorted(i + offset for i, ln in enumerate(lines) for _ in range(ln.problems))
    assert sorted(p.line_no for p in problems) == expected
    assert all(p.reason in READER_REASONS for p in problems)


def test_the_kinds_of_problem(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        b"type,ts,item_id\nview,1,a\nview,1\nview,caf\xe9,b\nview,"
        + b"9" * HUGE
        + b',c\nview,"1"x,d\nview,2,e\n',
    )
    drafts, problems = _consume("csv", path)
    assert len(drafts) == 2
    assert [(p.line_no, p.reason) for p in problems] == [
        (3, MALFORMED),
        (4, INVALID_UTF8),
        (5, FIELD_TOO_LARGE),
        (6, MALFORMED),
    ]


def test_nan_and_inf_text_are_left_to_the_quality_gate(tmp_path: Path) -> None:
    path = _write(tmp_path, b"type,ts,item_id,price,quantity\nview,NaN,a,inf,-Infinity\n")
    (draft,), problems = _consume("csv", path)
    assert problems == []
    assert (draft.fields["ts"], draft.fields["price"], draft.fields["quantity"]) == (
        "NaN",
        "inf",
        "-Infinity",
    )


# --- files that are not the format -------------------------------------------------------------

ALL = sorted(FORMATS)
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10\x00\x00\x00\x10\x08\x06\x00\x00\x00\x1f\xf3\xffa"
OTTO_LINE = b'{"session":0,"events":[{"aid":1517085,"ts":1659304800025,"type":"clicks"}]}\n'
CSV_TEXT = b"event_time,event_type,product_id\n2019-10-01 00:00:00 UTC,view,44600062\n"


def _foreign(name: str) -> bytes:
    """A file of some other format."""
    if name in ("otto", "jsonl", "jsonl-items", "magento") or name in PARQUET:
        return CSV_TEXT
    return OTTO_LINE


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\n  \n\r\n", id="blank"),
        pytest.param(PNG + bytes(range(256)) * 4, id="png"),
        pytest.param(gzip.compress(b""), id="empty-gzip"),
        pytest.param(b"\x1f\x8b\x08\x00garbage", id="bad-gzip"),
    ],
)
@pytest.mark.parametrize("name", ALL)
def test_not_the_format_raises_input_file_error(name: str, content: bytes, tmp_path: Path) -> None:
    path = _write(tmp_path, content)
    with pytest.raises(InputFileError) as info:
        _consume(name, path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("name", ALL)
def test_another_format_raises_input_file_error(name: str, tmp_path: Path) -> None:
    path = _write(tmp_path, _foreign(name))
    with pytest.raises(InputFileError) as info:
        _consume(name, path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("name", ALL)
def test_gzip_cut_short_raises_input_file_error(name: str, tmp_path: Path) -> None:
    packed = gzip.compress(_sample(name, 400))
    path = _write(tmp_path, packed[: len(packed) // 2])
    with pytest.raises(InputFileError) as info:
        _consume(name, path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("name", ALL)
def test_corrupt_gzip_raises_input_file_error(name: str, tmp_path: Path) -> None:
    packed = bytearray(gzip.compress(_sample(name, 400)))
    for i in range(20, 40):
        packed[i] ^= 0xFF
    path = _write(tmp_path, bytes(packed))
    with pytest.raises(InputFileError) as info:
        _consume(name, path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("name", ALL)
def test_sample_reads_cleanly(name: str, tmp_path: Path) -> None:
    drafts, problems = _consume(name, _write(tmp_path, _sample(name)))
    assert drafts and problems == []


# The real files of other formats, given to each reader. A file whose header is a superset of
# another format's (the 16-column Flipkart subset read as the 9-column sample) is that format too.
_REAL = {
    "online-retail": "online_retail/online_retail.csv.gz",
    "rees46": "rees46_sample/events.csv",
    "taobao": "taobao_sample/UserBehavior.csv",
    "otto": "otto_fixture/train.jsonl",
    "amazon-beauty": "amazon_beauty/Beauty.txt",
    "flipkart": "flipkart_products/flipkart_com-ecommerce_sample.csv.gz",
    "flipkart-1k": "flipkart_1k/products.csv",
    "wands": "wands_queries/query.csv",
}
_SAME = {("flipkart", "flipkart-1k"), ("sequences", "amazon-beauty")}


_CROSS = [
    (name, source)
    for name in ALL
    for source in sorted(_REAL)
    if name != source and (name, source) not in _SAME
]


@pytest.mark.shared_data
@pytest.mark.parametrize(("name", "source"), _CROSS)
def test_real_files_of_other_formats_are_rejected(name: str, source: str, dataset_file) -> None:
    path = dataset_file(source)
    with pytest.raises(InputFileError) as info:
        _consume(name, path, ReadOptions(limit=50))
    assert str(path) in str(info.value)


# --- fuzz: arbitrary and damaged bytes ---------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
@FUZZ
@given(content=st.one_of(st.binary(max_size=400), st.binary(max_size=200).map(lambda b: b"\x1f\x8b" + b)))
def test_arbitrary_bytes_yield_records_or_input_file_error(name: str, content: bytes, tmp_path: Path) -> None:
    _read_or_reject(name, _write(tmp_path, content))


@pytest.mark.parametrize("name", ALL)
@FUZZ
@given(data=st.data())
def test_damaged_files_yield_records_or_input_file_error(
    name: str, tmp_path: Path, data: st.DataObject
) -> None:
    content = bytearray(_sample(name, 30))
    if data.draw(st.booleans()):
        content = bytearray(gzip.compress(bytes(content)))
    for _ in range(data.draw(st.integers(1, 8))):
        i = data.draw(st.integers(0, len(content) - 1))
        content[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(1, len(content)))
    _read_or_reject(name, _write(tmp_path, bytes(content[:cut])))


# --- parquet with odd values -------------------------------------------------------------------


def test_parquet_odd_values(tmp_path: Path) -> None:
    path = tmp_path / "odd.parquet"
    table = pa.table(
        {
            "type": ["view", None, "buy"],
            "ts": [{"a": 1}, {"a": 2}, None],  # a struct where a time belongs
            "item_id": ["a", "b", None],
            "price": [float("nan"), float("inf"), -1.0],
        }
    )
    pq.write_table(table, path)
    drafts, problems = _consume("parquet", path)
    assert [(p.line_no, p.field, p.reason) for p in problems] == [(1, "ts", MALFORMED), (2, "ts", MALFORMED)]
    assert len(drafts) == 1 and drafts[0].fields["ts"] is None and drafts[0].fields["price"] == "-1.0"


def test_parquet_bytes_that_are_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bytes.parquet"
    pq.write_table(pa.table({"type": ["view", "view"], "ts": [1, 2], "item_id": [b"\xff", b"ok"]}), path)
    drafts, problems = _consume("parquet", path)
    assert [(p.line_no, p.reason) for p in problems] == [(1, INVALID_UTF8)]
    assert drafts[0].fields["item_id"] == "ok"


def _patched(path: Path, old: bytes, new: bytes) -> Path:
    """The Parquet file at ``path`` with every ``old`` replaced by ``new`` (same length): bytes a
    writer would refuse, as a damaged or foreign file holds them."""
    data = path.read_bytes()
    assert old in data and len(old) == len(new)
    path.write_bytes(data.replace(old, new))
    return path


def test_parquet_text_columns_and_names_that_are_not_utf8(tmp_path: Path) -> None:
    """A string column whose bytes are not UTF-8 (the file says text, pyarrow cannot decode it):
    that record is quarantined naming the field and the others go in; column names that are not
    UTF-8 make the file unreadable, said in one error naming it (found by the damaged-file fuzz)."""
    path = tmp_path / "text.parquet"
    table = pa.table({"type": ["view", "view", "view"], "ts": [1, 2, 3], "item_id": ["QQQQ", "ok", "fine"]})
    pq.write_table(table, path, compression="NONE", use_dictionary=False, write_statistics=False)
    drafts, problems = _consume("parquet", _patched(path, b"QQQQ", b"\x80QQQ"))
    assert [(p.line_no, p.field, p.reason) for p in problems] == [(1, "item_id", INVALID_UTF8)]
    assert [d.fields["item_id"] for d in drafts] == ["ok", "fine"]
    named = tmp_path / "names.parquet"
    pq.write_table(
        pa.table({"type": ["view"], "ts": [1], "item_id": ["a"], "zzzz": ["b"]}),
        named,
        compression="NONE",
        write_statistics=False,
    )
    with pytest.raises(InputFileError) as info:
        _consume("parquet", _patched(named, b"zzzz", b"\x80zzz"))
    assert str(named) in str(info.value)


# --- streaming ---------------------------------------------------------------------------------


def test_limit_returns_early_on_the_big_file(dataset_file) -> None:
    path = dataset_file("online-retail")
    seen: list[int] = []
    start = time.perf_counter()
    records = list(
        FORMATS["online-retail"].read(
            path, ReadOptions(limit=10, progress=lambda done, _t: seen.append(done))
        )
    )
    elapsed = time.perf_counter() - start
    assert len(records) == 10
    assert elapsed < 1.0  # the whole file takes several seconds
    assert max(seen, default=0) < 1 << 20  # well under 1 MiB of its 7.6 MB read


@pytest.mark.parametrize("name", ["csv", "jsonl", "otto", "sequences", "taobao"])
def test_limit_counts_problems_too(name: str, tmp_path: Path) -> None:
    bad = {
        "csv": b'"x"y,1\n',
        "jsonl": b"{broken\n",
        "otto": b'{"session": 1}\n',
        "sequences": b"lonely\n",
        "taobao": b'"x"y,1,2,3,4\n',
    }[name]
    lines = _sample(name, 3).splitlines(keepends=True)
    head = lines[:1] if name == "csv" else []
    body = lines[len(head) :]
    path = _write(tmp_path, b"".join(head + body[:1] + [bad] * 6 + body[1:]))
    records = list(FORMATS[name].read(path, ReadOptions(limit=4)))
    assert len(records) == 4
    assert isinstance(records[0], Draft) and isinstance(records[-1], Problem)
