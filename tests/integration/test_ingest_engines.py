"""The batch ingest engine against the row-by-row reference: the same events, catalogue stubs,
users, quarantined records (field, reason, detail, the record as kept) and report, on both stores.

Real data (a slice of each events dataset the readers support) and a dirty file of our own: bad
times, blank required fields, negative and fractional quantities, full-width and padded ids,
duplicates, contact details in free text, nested and oversized context, bytes that are not UTF-8,
broken rows, a shopper erased before the run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from shelfwise.core.settings import Settings
from shelfwise.data.privacy import Pseudonymizer
from shelfwise.data.readers import FORMATS, DatasetFormat, arrow_csv
from shelfwise.data.readers.locate import default_shared_root, find_dataset_file
from shelfwise.store import open_store
from shelfwise.store.ingest import ingest_events
from shelfwise.store.tables import events, items, metadata, quarantine, users
from tests.conftest import ONLINE_RETAIL, ROOT, TEST_KEY, head_lines

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
ERASED = "C-0001"  # a shopper of the dirty file, erased before either run


def _url(backend: str, tmp_path: Path, engine: str, request: pytest.FixtureRequest) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / engine}.db"
    url: str = request.getfixturevalue("pg_url")
    engine_ = sa.create_engine(sa.make_url(url).set(drivername="postgresql+psycopg"))
    with engine_.begin() as conn:  # the run's database, emptied before each engine's run
        present = set(sa.inspect(conn).get_table_names())
        names = [t.name for t in metadata.sorted_tables if t.name in present]
        if names:
            conn.exec_driver_sql(f"TRUNCATE {', '.join(names)} RESTART IDENTITY")
    engine_.dispose()
    return url


def _run(
    url: str, path: Path, fmt: DatasetFormat, settings: Settings, engine: str, **kw: Any
) -> dict[str, Any]:
    with open_store(url) as store:
        if kw.pop("erase", False):
            store.delete_user(Pseudonymizer(TEST_KEY.encode())(ERASED))
        report = ingest_events(store, path, fmt, settings, engine=engine, **kw).to_dict()
        q = [c for c in quarantine.c if c.name not in ("id", "created_at")]
        with store.engine.connect() as conn:  # type: ignore[attr-defined]
            state = {
                "events": sorted(tuple(r) for r in conn.execute(sa.select(events))),
                "items": sorted(tuple(r) for r in conn.execute(sa.select(items))),
                "users": sorted(tuple(r) for r in conn.execute(sa.select(users))),
                "quarantine": sorted(tuple(r) for r in conn.execute(sa.select(*q))),
            }
    for volatile in ("seconds", "records_per_second"):
        report.pop(volatile)
    return {"report": report, **state}


def _same(url_of: Any, path: Path, fmt: DatasetFormat, settings: Settings, **kw: Any) -> dict[str, Any]:
    rows = _run(url_of("rows"), path, fmt, settings, "rows", **kw)
    batch = _run(url_of("batch"), path, fmt, settings, "batch", **kw)
    for part in rows:
        assert batch[part] == rows[part], part
    return rows


# --- a dirty file of our own ---------------------------------------------------------------------

RETAIL_HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
RETAIL_LINES = [
    "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom",
    # the same line twice: one event, one duplicate
    "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom",
    "536366,８５１２３Ａ,full-width stock code,2,2010-12-01 08:28:00,1.85,１７８５０,United Kingdom",
    "536367,  85123A  , padded code ,3,2010-12-01 08:34:00,2.55, 17850 ,  United Kingdom  ",
    "536368,22633,HAND WARMER call +44 20 7946 0958 or a@b.co,6,2010-12-01 08:34:00,1.85,13047.0,France",
    "536369,22632,no time,6,,2.10,13047.0,France",
    "536370,22632,bad time,6,2010-13-45 99:00:00,2.10,13047.0,France",
    "536371,22632,before the shop,6,1990-01-01 00:00:00,2.10,13047.0,France",
    "536372,22632,in the future,6,2099-01-01 00:00:00,2.10,13047.0,France",
    "536373,22632,negative,-6,2010-12-01 09:00:00,2.10,13047.0,France",
    "C536374,22632,cancelled,-6,2010-12-01 09:01:00,2.10,13047.0,France",
    "536375,22632,fraction,1.5,2010-12-01 09:02:00,2.10,13047.0,France",
    "536376,22632,zero,0,2010-12-01 09:03:00,2.10,13047.0,France",
    "536377,22632,free,2,2010-12-01 09:04:00,0,13047.0,France",
    "536378,22632,no price,2,2010-12-01 09:05:00,,13047.0,France",
    "536379,22632,bad price,2,2010-12-01 09:06:00,abc,13047.0,France",
    "536380,22632,negative price,2,2010-12-01 09:07:00,-1.5,13047.0,France",
    "536381,22632,nan price,2,2010-12-01 09:08:00,nan,13047.0,France",
    "536382,,no code,2,2010-12-01 09:09:00,2.10,13047.0,France",
    "536383,POST,postage,1,2010-12-01 09:10:00,18.00,13047.0,France",
    "536384,22632,guest,1,2010-12-01 09:11:00,2.10,,Germany",
    "536385,22632,erased shopper,1,2010-12-01 09:12:00,2.10,C-0001,Germany",
    "536386,22632,erased shopper rejected,-1,2010-12-01 09:13:00,2.10,C-0001,Germany",
    "536387,22632,too few fields,1,2010-12-01 09:14:00",
    '536388,22632,"quoted, with a comma",1,2010-12-01 09:15:00,2.10,13047.0,Germany',
    '536389,22633,"spans\ntwo lines",1,2010-12-01 09:16:00,2.10,13047.0,Germany',
    "536390," + "X" * 300 + ",long code,1,2010-12-01 09:17:00,2.10,13047.0,Germany",
    "536391,22634,ctrl\x07chars\x1f,1,2010-12-01 09:18:00,2.10,1304\u200b7,Germany",
    '536392,22635,"bad "quote",1,2010-12-01 09:19:00,2.10,13047.0,Germany',
    "536393,22636,after the bad quote,1,2010-12-01 09:20:00,2.10,13047.0,Germany",
    "",
    "536394,22637,after a blank line,1,2010-12-01 09:21:00,2.10,13047.0,Germany",
]


def _dirty_file(path: Path, header: str, lines: list[str], tail: bytes) -> Path:
    """``header`` and ``lines`` as UTF-8, then ``tail`` as raw bytes (a line not in UTF-8, one after it)."""
    path.write_bytes((header + "\n".join(lines) + "\n").encode() + tail)
    return path


def _dirty_retail(tmp_path: Path) -> Path:
    return _dirty_file(
        tmp_path / "dirty_retail.csv",
        RETAIL_HEADER,
        RETAIL_LINES,
        b"536395,22638,latin-1 \xe9t\xe9,1,2010-12-01 09:22:00,2.10,13047.0,Germany\n"
        b"536396,22639,last,1,2010-12-01 09:23:00,2.10,13047.0,Germany\n",
    )


def _nest(depth: int) -> Any:
    return "deep" if depth == 0 else {f"l{depth}": _nest(depth - 1)}


JSONL_RECORDS: list[Any] = [
    {"user_id": "u1", "item_id": "i1", "type": "view", "ts": "2024-05-01T10:00:00Z"},
    {"user_id": "u1", "item_id": "i1", "type": "view", "ts": "2024-05-01T10:00:00Z"},  # duplicate
    {
        "user_id": "Ｕ１",
        "item_id": "ｉ１",
        "type": "purchase",
        "ts": "2024-05-01T10:01:00Z",
        "price": 3,
        "quantity": 2,
    },
    {"user_id": "u2", "item_id": "i2", "type": "pv", "ts": "2024-05-01T10:02:00+02:00"},
    {"user_id": "u2", "item_id": "i2", "type": "teleport", "ts": "2024-05-01T10:03:00Z"},
    {"user_id": "u2", "item_id": "i2", "ts": "2024-05-01T10:03:00Z"},
    {"user_id": "u2", "item_id": "i2", "type": "view", "ts": "yesterday"},
    {"user_id": "u2", "type": "view", "ts": "2024-05-01T10:04:00Z"},
    {"user_id": "u2", "type": "search", "ts": "2024-05-01T10:05:00Z", "context": {"query": "red mug"}},
    {"user_id": "u3", "item_id": "i3", "type": "cart", "ts": "2024-05-01T10:06:00Z", "quantity": True},
    {"user_id": "u3", "item_id": "i3", "type": "cart", "ts": "2024-05-01T10:06:00Z", "quantity": 1},
    {"user_id": "u3", "item_id": "i3", "type": "cart", "ts": "2024-05-01T10:07:00Z", "quantity": -2},
    {"user_id": "u3", "item_id": "i3", "type": "purchase", "ts": "2024-05-01T10:08:00Z", "price": -0.0},
    {"user_id": "u3", "item_id": "i3", "type": "purchase", "ts": "2024-05-01T10:08:00Z", "price": 0.0},
    {
        "user_id": "u3",
        "item_id": "i3",
        "type": "purchase",
        "ts": "2024-05-01T10:09:00Z",
        "price": 5,
        "currency": "€",
    },
    {
        "user_id": "u3",
        "item_id": "i3",
        "type": "purchase",
        "ts": "2024-05-01T10:09:00Z",
        "price": 5,
        "currency": "XYZ",
    },
    {"user_id": "u3", "item_id": "i3", "type": "rate", "ts": "2024-05-01T10:10:00Z", "value": "4.5"},
    {"user_id": "u3", "item_id": "i3", "type": "rate", "ts": "2024-05-01T10:10:00Z", "value": "five"},
    {
        "user_id": "u4",
        "item_id": "i4",
        "type": "view",
        "ts": "2024-05-01T10:11:00Z",
        "context": {
            "note": "mail me at x@y.org",
            "device": {"os": "ios", "tags": ["a", "+1 415 555 0100 12"]},
        },
    },
    {
        "user_id": "u4",
        "item_id": "i4",
        "type": "view",
        "ts": "2024-05-01T10:12:00Z",
        "context": {"d": _nest(10)},
    },
    {"user_id": "u4", "item_id": "i4", "type": "view", "ts": "2024-05-01T10:13:00Z", "context": "not json"},
    {"user_id": "u4", "item_id": "i4", "type": "view", "ts": "2024-05-01T10:14:00Z", "context": ["a list"]},
    {"user_id": "u4", "item_id": "i4", "type": "view", "ts": "2024-05-01T10:15:00Z", "context": {"n": 1}},
    {"user_id": "u4", "item_id": "i4", "type": "view", "ts": "2024-05-01T10:15:00Z", "context": {"n": True}},
    {"user_id": "u4", "item_id": "i4", "type": "view", "ts": "2024-05-01T10:16:00Z", "event_id": "given-1"},
    {"user_id": "u4", "item_id": "i4", "type": "view", "ts": "2024-05-01T10:17:00Z", "event_id": "given-1"},
    {"user_id": "u5" * 200, "item_id": "i5", "type": "view", "ts": "2024-05-01T10:18:00Z"},
    {"user_id": "   ", "item_id": "i5", "type": "view", "ts": "2024-05-01T10:19:00Z", "session_id": "s1"},
    {"user_id": "C-0001", "item_id": "i5", "type": "view", "ts": "2024-05-01T10:20:00Z"},
    {"user_id": "u6", "item_id": "i6", "type": "view", "ts": 1714557600},
    ["not", "an", "object"],
]


def _dirty_jsonl(tmp_path: Path) -> Path:
    path = tmp_path / "dirty.jsonl"
    lines = [json.dumps(r) for r in JSONL_RECORDS]
    lines.insert(5, '{"user_id": "u9", "broken json')
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("unknown_items", ["create", "quarantine"])
def test_dirty_retail_file_same_on_both_engines(
    backend: str, unknown_items: str, tmp_path: Path, settings: Settings, request: pytest.FixtureRequest
) -> None:
    path = _dirty_retail(tmp_path)
    state = _same(
        lambda e: _url(backend, tmp_path, e, request),
        path,
        FORMATS["online-retail"],
        settings,
        unknown_items=unknown_items,
        erase=True,
    )
    report = state["report"]
    assert report["erased"] == 2  # the erased shopper's accepted line and rejected line
    assert (
        report["accepted"] + report["duplicates"] + report["quarantined"] + report["erased"]
        == report["records"]
    )
    reasons = {r[6] for r in state["quarantine"]}  # the reference found these; the batch engine too
    expected = {"bad_timestamp", "missing_field", "malformed_record", "invalid_utf8"}
    # with no catalogue, every product line is an unknown item before its quantity is looked at
    expected.add("negative_quantity" if unknown_items == "create" else "unknown_item")
    assert expected <= reasons
    if unknown_items == "create":
        assert report["duplicates"] == 1 and report["pii_scrubbed"] >= 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_dirty_jsonl_same_on_both_engines(
    backend: str, tmp_path: Path, settings: Settings, request: pytest.FixtureRequest
) -> None:
    path = _dirty_jsonl(tmp_path)
    state = _same(lambda e: _url(backend, tmp_path, e, request), path, FORMATS["jsonl"], settings)
    fields = {r[5] for r in state["quarantine"]}
    assert {"type", "ts", "item_id", "quantity", "price", "currency", "value", "context", "user_id"} <= fields
    assert any(f and f.startswith("context.") for f in fields)  # a nested path named
    assert state["report"]["pii_scrubbed"] >= 2 and state["report"]["guest_events"] >= 1


# --- real data: a slice of every events dataset the readers support ---------------------------------

SLICES = {"online-retail": 20_000, "rees46": 5_000, "taobao": 5_000, "otto": 3_000, "amazon-beauty": 3_000}


@pytest.mark.shared_data
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(SLICES))
def test_shared_datasets_same_on_both_engines(
    name: str, backend: str, tmp_path: Path, settings: Settings, request: pytest.FixtureRequest
) -> None:
    fmt = FORMATS[name]
    path = (
        ONLINE_RETAIL
        if name == "online-retail"
        else find_dataset_file(fmt, repo_root=ROOT, shared_root=default_shared_root(ROOT))
    )
    if path is None:
        pytest.skip(f"{fmt.shared} is not in the shared data folder")
    state = _same(lambda e: _url(backend, tmp_path, e, request), path, fmt, settings, limit=SLICES[name])
    assert state["report"]["accepted"] > 0 and state["events"]


# --- the batch engine reads CSV with Arrow where it can: pieces cut small, so it reads most lines --


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("piece", [40, 300])
def test_dirty_retail_file_same_with_arrow_pieces(
    backend: str,
    piece: int,
    tmp_path: Path,
    settings: Settings,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(arrow_csv, "FIRST_PIECE", piece)
    monkeypatch.setattr(arrow_csv, "PIECE", piece)
    path = _dirty_retail(tmp_path)
    state = _same(
        lambda e: _url(backend, tmp_path, e, request),
        path,
        FORMATS["online-retail"],
        settings,
        unknown_items="create",
        erase=True,
    )
    assert {"malformed_record", "invalid_utf8", "bad_timestamp"} <= {r[6] for r in state["quarantine"]}


@pytest.mark.parametrize("backend", BACKENDS)
def test_online_retail_sample_same_read_by_arrow(
    backend: str,
    tmp_path: Path,
    settings: Settings,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A real file, whole (no ``limit``: the batch engine reads it with Arrow)."""
    monkeypatch.setattr(arrow_csv, "FIRST_PIECE", 1 << 12)
    monkeypatch.setattr(arrow_csv, "PIECE", 1 << 18)
    path = tmp_path / "retail_sample.csv"
    path.write_bytes(b"".join(head_lines(ONLINE_RETAIL, 20_001)))
    assert path.read_bytes().count(b'"') > 0  # quoted descriptions among them
    state = _same(lambda e: _url(backend, tmp_path, e, request), path, FORMATS["online-retail"], settings)
    assert state["report"]["accepted"] > 15_000 and state["report"]["quarantined"] > 0


# --- the plain CSV events format in columns (issue 19: a shop's own export, read by Arrow) ---------

CSV_HEADER = "event_id,type,ts,user_id,session_id,item_id,quantity,price,currency,context\n"
CSV_LINES = [
    "e1,view,2024-05-01T10:00:00Z,u1,s1,i1,1,,,",
    "e1,view,2024-05-01T10:00:00Z,u1,s1,i1,1,,,",  # the same id again: one duplicate
    "e2,purchase,2024-05-01T10:01:00Z,Ｕ１,s1,ｉ１,2,3.50,EUR,",
    "e3,pv,2024-05-01T10:02:00+02:00,u2,s2,i2,1,,,",
    "e4,teleport,2024-05-01T10:03:00Z,u2,s2,i2,1,,,",
    "e5,,2024-05-01T10:03:00Z,u2,s2,i2,1,,,",
    "e6,view,yesterday,u2,s2,i2,1,,,",
    "e7,view,2024-05-01T10:04:00Z,u2,s2,,1,,,",
    'e8,search,2024-05-01T10:05:00Z,u2,s2,,1,,,"{""query"": ""red mug""}"',
    'e9,view,2024-05-01T10:05:30Z,u2,s2,i2,1,,,"{""note"": ""mail me at x@y.org""}"',
    "e10,view,2024-05-01T10:06:00Z,u3,s3,i3,1,,,not json",
    'e11,view,2024-05-01T10:06:30Z,u3,s3,i3,1,,,"[1, 2]"',
    "e12,cart,2024-05-01T10:07:00Z,u3,s3,i3,-2,,,",
    "e13,purchase,2024-05-01T10:08:00Z,u3,s3,i3,1,0,EUR,",
    "e14,purchase,2024-05-01T10:09:00Z,u3,s3,i3,1,5,XYZ,",
    "e15,view,2024-05-01T10:10:00Z,   ,s4,i4,1,,,",
    "e16,view,2024-05-01T10:11:00Z,C-0001,s5,i5,1,,,",
    "e17,view,2024-05-01T10:12:00Z,u6,s6,i6",  # too few fields
    "e18,view,2024-05-01T10:13:00Z,u6,s6,i6,1,,,,extra",  # too many
    '"e19",view,2024-05-01T10:14:00Z,u6,"s6, quoted",i6,1,,,',
    'e20,view,2024-05-01T10:15:00Z,u6,"spans\ntwo lines",i6,1,,,',
    "",
    "   ,view,2024-05-01T10:16:00Z,u7,s7,i7,1,,,",
    "e22,view,2024-05-01T10:17:00Z,u7,s7," + "X" * 300 + ",1,,,",
]


def _dirty_csv(tmp_path: Path) -> Path:
    return _dirty_file(
        tmp_path / "dirty.csv",
        CSV_HEADER,
        CSV_LINES,
        b"e23,view,2024-05-01T10:18:00Z,u8,s8,i8 \xe9,1,,,\ne24,view,2024-05-01T10:19:00Z,u8,s8,i8,1,,,\n",
    )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("piece", [None, 60, 400])
def test_dirty_csv_same_on_both_engines(
    backend: str,
    piece: int | None,
    tmp_path: Path,
    settings: Settings,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if piece is not None:
        monkeypatch.setattr(arrow_csv, "FIRST_PIECE", piece)
        monkeypatch.setattr(arrow_csv, "PIECE", piece)
    fmt = FORMATS["csv"]
    assert fmt.read_batches is not None  # read in columns (Arrow), not row by row
    path = _dirty_csv(tmp_path)
    state = _same(lambda e: _url(backend, tmp_path, e, request), path, fmt, settings, erase=True)
    report = state["report"]
    assert report["erased"] == 1 and report["duplicates"] == 1
    fields = {r[5] for r in state["quarantine"]}
    assert {"type", "ts", "item_id", "quantity", "price", "currency", "context"} <= fields
    reasons = {r[6] for r in state["quarantine"]}
    assert {"malformed_record", "invalid_utf8"} <= reasons


@pytest.mark.parametrize("batch_size", [7, 20_000])
def test_generated_shop_csv_same_on_both_engines(
    batch_size: int, tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``shelfwise generate``'s file (what ``bench_stream`` ingests), read by Arrow in small pieces."""
    from shelfwise.data.synthetic import ShopConfig, write_shop

    monkeypatch.setattr(arrow_csv, "PIECE", 1 << 12)
    path = tmp_path / "shop.csv"
    write_shop(ShopConfig(events=3_000, items=500, users=300, seed=19), path)
    settings = settings.model_copy(update={"ingest_batch_size": batch_size})
    state = _same(lambda e: f"sqlite:///{tmp_path / e}.db", path, FORMATS["csv"], settings)
    assert state["report"]["accepted"] > 2_500 and state["users"]


def test_a_failing_write_ends_the_read_ahead_thread_as_the_error_leaves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch engine reads and checks a batch or two ahead in a thread; when the store fails
    mid-run the error reaches the caller as it was, the batches before it are kept, and the thread
    is gone by then (not when the traceback is let go)."""
    import threading

    from shelfwise.store.sql import SqlStore

    settings = Settings(var_dir=tmp_path / "var", pseudonym_key=TEST_KEY, ingest_batch_size=500)
    path = tmp_path / "retail.csv"
    path.write_bytes(b"".join(head_lines(ONLINE_RETAIL, 5_001)))
    calls = {"n": 0}
    append = SqlStore.append_event_rows

    def failing(self: Any, *args: Any, **kw: Any) -> int:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full (injected)")
        return append(self, *args, **kw)

    monkeypatch.setattr(SqlStore, "append_event_rows", failing)
    with open_store(f"sqlite:///{tmp_path / 'fail.db'}") as store:
        with pytest.raises(OSError, match="disk full") as caught:
            ingest_events(store, path, FORMATS["online-retail"], settings, engine="batch")
        names = {t.name for t in threading.enumerate()}
        assert "shelfwise-ingest-check" not in names, names
        assert caught.value is not None  # the traceback still alive here
        monkeypatch.setattr(SqlStore, "append_event_rows", append)
        assert 0 < store.counts()["events"] <= 1_000  # the two batches written before the failure
