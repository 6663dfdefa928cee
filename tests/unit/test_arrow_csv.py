"""The Arrow CSV path against the stdlib reader it stands in for: the same chunks (column names,
line numbers, rows, problems with the record as kept) on tricky files, with pieces small enough to
cut quoted records, CRLF pairs and multi-byte characters anywhere, and on a real file sample."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import pytest

from shelfwise.core.errors import InputFileError
from shelfwise.data.readers import arrow_csv
from shelfwise.data.readers.arrow_csv import CsvRows, arrow_piece, iter_csv_chunks_arrow
from shelfwise.data.readers.base import ReadOptions, iter_csv_chunks
from tests.conftest import ONLINE_RETAIL

HEADER = b"InvoiceNo,StockCode,Description,Quantity\n"
PLAIN = [b"5%d,85123A,WHITE HEART,%d\n" % (k, k) for k in range(40)]
TRICKY = [
    b'536388,22632,"quoted, with a comma",1\n',
    b'536389,22633,"spans\ntwo lines",1\n',
    b'536390,22634,"doubled ""quotes"" inside",2\n',
    b'536391,22635,"spans\r\nCRLF, too",3\n',
    b'536392,22636,"bad "quote",1\n',  # strict: ',' expected after '"'
    b'536393,22637,an inner"quote,1\n',  # a quote inside an unquoted field is text
    b"\n",  # blank
    b"   \n",  # whitespace only
    b"536394,too few,1\n",
    b"536395,22638,too,many,fields\n",
    b"536396,22639,latin-1 \xe9t\xe9,1\n",
    b"536397,22640,caf\xc3\xa9 \xe2\x82\xac ok,1\n",  # valid UTF-8
    b"536398,22641,\xef\xbb\xbfa BOM inside,1\n",
    b"536399,22642,lone\rcarriage,1\n",
    b"536400,22643,nul\x00byte,1\n",
    b"536401,,trailing,\n",
    b'536402,22644,"' + b"X" * 2000 + b'",1\n',  # over the field size limit below
    b'536403,22645,"unterminated,1\n',
]


def _norm(chunks: Any) -> list[Any]:
    return [
        (
            names,
            list(nums),
            [list(r) for r in rows],
            [(p.line_no, p.raw, p.field, p.reason, p.detail) for p in probs],
        )
        for names, nums, rows, probs in chunks
    ]


def _both(path: Path, size: int, *, limit: int = 1 << 20, **pieces: int) -> tuple[list[Any], list[Any]]:
    opts = ReadOptions(field_size_limit=limit)
    ref = _norm(iter_csv_chunks(path, opts, size, required=("InvoiceNo",)))
    new = list(iter_csv_chunks_arrow(path, opts, size, required=("InvoiceNo",), **pieces))
    return ref, _norm(new)


def _file(tmp_path: Path, body: bytes, *, gz: bool = False, name: str = "f.csv") -> Path:
    path = tmp_path / (name + (".gz" if gz else ""))
    path.write_bytes(gzip.compress(body) if gz else body)
    return path


# every tricky line, alone among plain lines and all together, at many cut points
CASES = [[line] for line in TRICKY] + [TRICKY]


@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("piece", [7, 64, 300, 1 << 22])
def test_same_chunks_as_the_stdlib_reader(case: int, piece: int, tmp_path: Path) -> None:
    body = HEADER + b"".join(PLAIN[:15]) + b"".join(CASES[case]) + b"".join(PLAIN[15:])
    path = _file(tmp_path, body)
    for size in (1, 4, 1000):
        ref, new = _both(path, size, limit=1024, piece=piece, first_piece=piece)
        assert new == ref, (case, piece, size)


@pytest.mark.parametrize(
    "body",
    [
        b"\xef\xbb\xbf" + HEADER + b"".join(PLAIN),  # a spreadsheet's BOM
        (HEADER + b"".join(PLAIN)).replace(b"\n", b"\r\n"),  # Windows line ends
        HEADER + b"".join(PLAIN).rstrip(b"\n"),  # no newline at the end
        HEADER + b"".join(PLAIN) + b'1,2,"open quote at the end',
        HEADER,  # a header and nothing else
        b"\n\n" + HEADER + b"".join(PLAIN),  # blank lines before the header
        b'"Invoice\nNo",StockCode,Description,Quantity\nInvoice\nNo\n' + b"".join(PLAIN),
    ],
)
@pytest.mark.parametrize("gz", [False, True])
def test_file_edges_same(body: bytes, gz: bool, tmp_path: Path) -> None:
    path = _file(tmp_path, body, gz=gz)
    for piece in (5, 100, 1 << 22):
        try:
            ref, new = _both(path, 3, piece=piece, first_piece=piece)
        except InputFileError:
            with pytest.raises(InputFileError):
                list(iter_csv_chunks_arrow(path, ReadOptions(), 3, required=("InvoiceNo",), piece=piece))
            continue
        assert new == ref


def test_plain_pieces_go_to_arrow_and_others_do_not() -> None:
    """The fast path is taken (else the parity above would hold trivially), and refused where it
    must be: a line that opens a quote, a bad byte, a carriage return, an over-long line."""
    plain = b"".join(PLAIN)
    seg = arrow_piece(plain + TRICKY[0] + TRICKY[2], 10, 4, ",", 1 << 20)
    assert seg is not None and seg.arrow and seg.nums[0] == 11 and len(seg) == len(PLAIN) + 2
    assert [c[-1].as_py() for c in seg.rows] == ["536390", "22634", 'doubled "quotes" inside', "2"]
    for bad in (TRICKY[1], TRICKY[4], TRICKY[10], TRICKY[13], TRICKY[17]):
        assert arrow_piece(plain + bad, 0, 4, ",", 1 << 20) is None, bad
    assert arrow_piece(plain, 0, 4, ",", 10) is None  # lines longer than the field size limit


def test_online_retail_sample_same(tmp_path: Path) -> None:
    with gzip.open(ONLINE_RETAIL, "rb") as fh:
        lines = [fh.readline() for _ in range(60_001)]
    body = b"".join(lines)
    assert body.count(b'"') > 0  # the sample has quoted descriptions
    path = _file(tmp_path, body, gz=True)
    opts = ReadOptions()
    ref = _norm(iter_csv_chunks(path, opts, 5000, required=("InvoiceNo",)))
    for piece in (1 << 16, 1 << 20):
        chunks = list(iter_csv_chunks_arrow(path, opts, 5000, required=("InvoiceNo",), piece=piece))
        assert sum(isinstance(c[2], CsvRows) for c in chunks) >= len(chunks) - 1  # Arrow read them
        assert _norm(chunks) == ref


def test_defaults_are_module_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = _file(tmp_path, HEADER + b"".join(PLAIN))
    chunks = list(iter_csv_chunks_arrow(path, ReadOptions(), 1000, required=("InvoiceNo",)))
    assert isinstance(chunks[0][2], list)  # all in the header's piece: the stdlib reader's
    monkeypatch.setattr(arrow_csv, "FIRST_PIECE", 50)  # the header alone
    monkeypatch.setattr(arrow_csv, "PIECE", 120)
    cut = list(iter_csv_chunks_arrow(path, ReadOptions(), 1000, required=("InvoiceNo",)))
    assert isinstance(cut[0][2], CsvRows)  # every row from Arrow
    assert _norm(cut) == _norm(chunks) == _both(path, 1000)[0]


@pytest.mark.parametrize("damage", ["cut", "flip"])
def test_broken_gzip_is_an_input_file_error(damage: str, tmp_path: Path) -> None:
    packed = bytearray(gzip.compress(HEADER + b"".join(PLAIN) * 50))
    if damage == "cut":
        packed = packed[: len(packed) // 2]
    else:
        for i in range(len(packed) // 2, len(packed) // 2 + 20):
            packed[i] ^= 0xFF
    path = _file(tmp_path, bytes(packed))
    with pytest.raises(InputFileError) as info:
        list(iter_csv_chunks_arrow(path, ReadOptions(), 100, required=("InvoiceNo",), piece=256))
    assert str(path) in str(info.value) and "unreadable after line" in str(info.value)
