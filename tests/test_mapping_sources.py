"""Reading site exports: rows know their file and line; numbers and dates parse or say why."""
from __future__ import annotations

import csv
import decimal
import tracemalloc

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapter.mapping.sources import MAX_DOCUMENT, MAX_LINE, SourceError, SourceRow, read_csv, read_json, read_ndjson
from adapter.mapping.values import parse_date, parse_decimal
from conftest import ROOT

SITES = ROOT / "fixtures" / "sites"


def test_site_a_rows_carry_their_lines():
    rows = list(read_csv(SITES / "site-a" / "export.csv"))
    assert all(isinstance(r, SourceRow) for r in rows)
    assert rows[0].line == 2 and rows[0].values["redcap_event_name"] == "screening_arm_1"
    expected = {int(r["row"]): r for r in csv.DictReader((SITES / "site-a" / "expected-rejections.csv").open())}
    by_line = {r.line: r for r in rows}
    for line, rejection in expected.items():
        assert by_line[line].values[rejection["column"]] == rejection["value"]


def test_site_c_reads_as_gb18030_with_semicolons():
    rows = list(read_csv(SITES / "site-c" / "export.csv", encoding="gb18030", delimiter=";"))
    assert rows[0].values["访视"] == "基线"
    assert parse_decimal(rows[0].values["体重(kg)"], ",") > 5
    wrong = list(read_csv(SITES / "site-c" / "export.csv"))  # as UTF-8: reported, not garbled
    assert isinstance(wrong[-1], SourceError) and "not utf-8" in wrong[-1].reason


def test_site_b_documents_carry_their_lines():
    rows = list(read_ndjson(SITES / "site-b" / "export.ndjson"))
    assert [r.line for r in rows] == list(range(1, len(rows) + 1))
    assert rows[0].values["patient"]["id"] == "B0001"


def test_quoted_newlines_blank_lines_and_extra_fields(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text('id,note\n1,"two\nlines"\n\n2,ok\n3,a,b\n4\n', encoding="utf-8")
    rows = list(read_csv(path))
    assert [(type(r).__name__, r.line) for r in rows] == [
        ("SourceRow", 2), ("SourceRow", 5), ("SourceError", 6), ("SourceRow", 7)]
    assert rows[0].values["note"] == "two\nlines" and rows[3].values == {"id": "4", "note": ""}


def test_bad_ndjson_lines_are_errors_with_their_line(tmp_path):
    path = tmp_path / "x.ndjson"
    path.write_bytes(b'{"a": 1}\n\n{oops\n[1]\n{"b": 2}\n')
    rows = list(read_ndjson(path))
    assert [(type(r).__name__, r.line) for r in rows] == [
        ("SourceRow", 1), ("SourceError", 3), ("SourceError", 4), ("SourceRow", 5)]


@given(st.decimals(allow_nan=False, allow_infinity=False, places=3, min_value=-10**6, max_value=10**6))
def test_decimal_commas_round_trip(value):
    text = f"{value:f}"
    assert parse_decimal(text) == value
    assert parse_decimal(text.replace(".", ","), ",") == value


@pytest.mark.parametrize("text,mark", [("6.30", ","), ("1,2,3", ","), ("abc", "."), ("", "."),
                                       ("1e400000", "."), ("NaN", "."), ("6,3", ".")])
def test_bad_numbers_say_why(text, mark):
    with pytest.raises(ValueError):
        parse_decimal(text, mark)


@pytest.mark.parametrize("text,formats,expected", [
    ("2025-02-28", ["%Y-%m-%d"], "2025-02-28"), ("29/02/2024", ["%d/%m/%Y"], "2024-02-29"),
    ("2025/03/01", ["%Y-%m-%d", "%Y/%m/%d"], "2025-03-01"),
])
def test_dates(text, formats, expected):
    assert parse_date(text, formats) == expected


@pytest.mark.parametrize("text,formats", [("2025-02-30", ["%Y-%m-%d"]), ("31/02/2025", ["%d/%m/%Y"]),
                                          ("2025/13/01", ["%Y/%m/%d"]), ("", ["%Y-%m-%d"])])
def test_impossible_dates_are_refused(text, formats):
    with pytest.raises(ValueError, match="not a valid date"):
        parse_date(text, formats)


def test_decimals_keep_their_digits():
    assert str(parse_decimal("18,30", ",")) == "18.30"
    assert isinstance(parse_decimal("1"), decimal.Decimal)


def test_a_cut_off_last_row_is_a_rejection_not_a_short_row(tmp_path):
    """A file truncated mid-row stored its last row as partly accepted; a last line without its
    line end and with fewer cells than the header is refused (one with them all, or a short row
    that ends its line, is a row as before)."""
    for text, last in (("a,b,c\n1,2,3\n4,5", "cut"), ("a,b,c\n1,2,3\n4,5\n", "row"), ("a,b,c\n1,2,3\n4,5,6", "row"),
                       ('a,b,c\n1,2,3\n4,"5\nfive', "cut")):
        path = tmp_path / "export.csv"
        path.write_text(text)
        *_, row = read_csv(path)
        if last == "cut":
            assert isinstance(row, SourceError) and row.line == 3 and "cut off: 2 of 3 fields" in row.reason, text
        else:
            assert isinstance(row, SourceRow) and row.values["a"] == "4", text


def test_a_file_of_nul_bytes_says_what_it_is(tmp_path):
    path = tmp_path / "export.csv"
    path.write_bytes(b"\x00" * 4096)
    assert [(r.line, r.reason[:30]) for r in read_csv(path)] == [(1, "the file holds NUL bytes: no t")]
    path.write_bytes(b"a,b\n1,2\n3,\x00\n")
    rows = list(read_csv(path))
    assert isinstance(rows[0], SourceRow) and isinstance(rows[1], SourceError) and rows[1].line == 3


@pytest.mark.parametrize("reader, line", [(read_csv, b"record,x\n1,"), (read_ndjson, b'{"a":"')])
def test_a_long_line_is_refused_without_reading_it_whole(tmp_path, reader, line):
    """A 1 GiB line was refused only once read whole (2.2 GB at the peak): now at MAX_LINE."""
    path = tmp_path / "export"
    with path.open("wb") as out:
        out.write(line)
        for _ in range(64):
            out.write(b"x" * (1 << 20))
        out.write(b'"}\n' if reader is read_ndjson else b"\n")
        out.write(b'{"a":1}\n' if reader is read_ndjson else b"2,y\n")
    tracemalloc.start()
    try:
        rows = list(reader(path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * MAX_LINE, peak  # the 64 MB line is never held
    assert isinstance(rows[0], SourceError) and "longer than 1,048,576" in rows[0].reason
    if reader is read_ndjson:  # NDJSON lines stand alone: the next one is read
        assert isinstance(rows[1], SourceRow) and rows[1].line == 2


def test_a_json_document_past_its_bound_is_refused_unread(tmp_path):
    path = tmp_path / "export.json"
    with path.open("wb") as out:
        out.truncate(MAX_DOCUMENT + 1)
    (error,) = read_json(path)
    assert "at most" in error.reason
