"""Excel workbooks as sources: a sheet by name, its header on a given row (a merged banner
above it is common), merged cells read as their value, every cell knowing its A1 place.

The reader is python-calamine (Rust's calamine): it reads .xlsx, .xlsm, .xls and .ods, and
read the fifth synthetic site's workbook ~8x faster than openpyxl here (bench/workbooks.py);
openpyxl, pure Python and equally maintained, writes the fixtures and checks them in the tests.

A workbook is checked whole before a row is mapped, and a bad one is one `WorkbookError`,
nothing stored: not a workbook (a CSV renamed), an .xls where the mapping says xlsx, a
corrupted or password-protected file, one past the bounds (a zip bomb: sheets, uncompressed
bytes, cells), a sheet or a header the mapping names that is not there (each one said).
"""
from __future__ import annotations

import datetime
import decimal
import pathlib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from adapter.mapping.sources import SourceFileError

__all__ = ["WorkbookError", "Sheet", "open_sheets", "cell_name", "column_letters", "headers", "data_rows", "MAX_SHEETS",
           "MAX_UNCOMPRESSED", "MAX_CELLS"]

# Bounds a workbook is held to before its sheets are read (a zip bomb expands 1 MB into GBs):
# a site's export is a few sheets and a few MB; these leave room for 100 times that.
MAX_SHEETS = 100
MAX_UNCOMPRESSED = 512 << 20  # bytes of all the zip's parts, as their headers declare them
MAX_CELLS = 20_000_000  # cells of one sheet's used range (rows x columns)
MAX_RATIO = 200  # uncompressed / compressed of one part: shared strings reach ~20, a bomb 1000s

_ZIP = b"PK\x03\x04"
_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # Compound File Binary: .xls, or an encrypted .xlsx
_ENCRYPTED = "EncryptionInfo".encode("utf-16-le")


class WorkbookError(SourceFileError):
    """A workbook that cannot be read as the mapping says: nothing of it is mapped or stored."""


def column_letters(index: int) -> str:
    """A 0-based column index in A1 notation.

    Examples:
        >>> column_letters(0), column_letters(25), column_letters(27), column_letters(702)
        ('A', 'Z', 'AB', 'AAA')
    """
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def cell_name(sheet: str, row: int, column: int) -> str:
    """`随访!AB5`: the sheet and the cell (row 1-based, column 0-based), as Excel names it."""
    return f"{sheet}!{column_letters(column)}{row}"


@dataclass(frozen=True)
class Sheet:
    """One sheet read: its rows (1-based row number, values by column index)."""

    name: str
    rows: list[tuple[int, list[Any]]]


def _kind(path: pathlib.Path) -> str:
    with path.open("rb") as handle:
        head = handle.read(8)
        if head.startswith(_OLE):
            return "encrypted" if _ENCRYPTED in handle.read(1 << 20) else "xls"
    if head.startswith(_ZIP):
        return "zip"
    return "text" if head and all(b >= 9 for b in head.replace(b"\xef\xbb\xbf", b"")[:8]) else "other"


def _check_kind(path: pathlib.Path, fmt: str) -> None:
    kind = _kind(path)
    name = path.name
    if kind == "encrypted":
        raise WorkbookError(f"{name}: a password-protected workbook: save it without a password (the "
                            "adapter keeps no workbook passwords)")
    if fmt == "xlsx" and kind == "xls":
        raise WorkbookError(f"{name}: an Excel 97-2003 (.xls) workbook where the mapping says xlsx: "
                            "declare `format: xls`, or save it as .xlsx")
    if fmt == "xlsx" and kind != "zip":
        what = "text (a CSV renamed?)" if kind == "text" else "no workbook"
        raise WorkbookError(f"{name}: not an Excel workbook (.xlsx): it holds {what}")
    if fmt == "xls" and kind == "zip":
        raise WorkbookError(f"{name}: an .xlsx workbook where the mapping says xls: declare `format: xlsx`")
    if fmt == "xls" and kind != "xls":
        raise WorkbookError(f"{name}: not an Excel 97-2003 workbook (.xls)")
    if kind == "zip":
        _check_zip(path)


def _check_zip(path: pathlib.Path) -> None:
    """The bounds, from the zip's directory alone: nothing is expanded to check them."""
    try:
        with zipfile.ZipFile(path) as archive:
            parts = archive.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise WorkbookError(f"{path.name}: a corrupted workbook (not a readable zip: {exc})") from None
    total = sum(p.file_size for p in parts)
    sheets = sum(1 for p in parts if p.filename.startswith("xl/worksheets/") and p.filename.endswith(".xml"))
    if total > MAX_UNCOMPRESSED:
        raise WorkbookError(f"{path.name}: {total:,} bytes uncompressed, over the {MAX_UNCOMPRESSED:,} a "
                            "workbook may hold here (a zip bomb, or split the export)")
    if sheets > MAX_SHEETS:
        raise WorkbookError(f"{path.name}: {sheets} sheets, over the {MAX_SHEETS} a workbook may hold here")
    for part in parts:
        if part.compress_size and part.file_size > 1 << 20 and part.file_size / part.compress_size > MAX_RATIO:
            raise WorkbookError(f"{path.name}: {part.filename} expands {part.file_size / part.compress_size:,.0f}"
                                f" times (over {MAX_RATIO}): a zip bomb?")


def _value(raw: Any) -> Any:
    """A cell as the engine reads it: text as typed, whole numbers as int, other numbers as the
    Decimal of the shortest float that prints them (36.5, not 36.49999...), dates as dates."""
    if isinstance(raw, str):
        return raw if raw.strip() else None
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, float):
        return int(raw) if raw.is_integer() and abs(raw) < 1e15 else decimal.Decimal(repr(raw))
    if isinstance(raw, (int, datetime.date, datetime.time, datetime.timedelta)):
        return raw
    return None if raw is None else str(raw)


def _merged(sheet: Any, rows: list[list[Any]], top: int, left: int) -> None:
    """A merged range's value (held by its first cell) in every cell of it."""
    for (r1, c1), (r2, c2) in sheet.merged_cell_ranges or []:
        first_row, first_col = r1 - top, c1 - left
        if not (0 <= first_row < len(rows) and 0 <= first_col < len(rows[first_row])):
            continue
        value = rows[first_row][first_col]
        for r in range(max(r1 - top, 0), min(r2 - top + 1, len(rows))):
            for c in range(max(c1 - left, 0), min(c2 - left + 1, len(rows[r]))):
                rows[r][c] = value


def open_sheets(path: str | pathlib.Path, fmt: str, names: list[str | None]) -> dict[str | None, Sheet]:
    """The named sheets of a workbook (None: the first), each row with its 1-based row number;
    WorkbookError when the file is no such workbook, passes the bounds, or lacks a sheet (all
    the missing named)."""
    from python_calamine import CalamineError, CalamineWorkbook, PasswordError
    path = pathlib.Path(path)
    _check_kind(path, fmt)
    try:
        book = CalamineWorkbook.from_path(str(path))
    except PasswordError:
        raise WorkbookError(f"{path.name}: a password-protected workbook: save it without a password") from None
    except (CalamineError, OSError, ValueError) as exc:
        raise WorkbookError(f"{path.name}: a corrupted workbook ({type(exc).__name__}: {exc})") from None
    with book:
        missing = [n for n in names if n is not None and n not in book.sheet_names]
        if missing:
            raise WorkbookError(f"{path.name}: no sheet {', '.join(map(repr, missing))} (its sheets: "
                                f"{', '.join(book.sheet_names)})")
        if len(book.sheet_names) > MAX_SHEETS:
            raise WorkbookError(f"{path.name}: {len(book.sheet_names)} sheets, over {MAX_SHEETS}")
        out: dict[str | None, Sheet] = {}
        for asked in dict.fromkeys(names):
            name = asked if asked is not None else book.sheet_names[0]
            try:
                sheet = book.get_sheet_by_name(name)
                if sheet.height * sheet.width > MAX_CELLS:
                    raise WorkbookError(f"{path.name}: sheet {name!r} spans {sheet.height:,} x {sheet.width:,} "
                                        f"cells, over the {MAX_CELLS:,} one sheet may hold here")
                grid = [[_value(v) for v in row] for row in sheet.to_python(skip_empty_area=False)]
            except (CalamineError, ValueError) as exc:
                raise WorkbookError(f"{path.name}: sheet {name!r} cannot be read ({exc})") from None
            _merged(sheet, grid, 0, 0)
            out[asked] = Sheet(name, [(number, row) for number, row in enumerate(grid, 1)])
    return out


def headers(sheet: Sheet, header_row: int, file: str) -> list[str]:
    """The header row's texts (a merged header holds its value in every column it spans)."""
    row = next((cells for number, cells in sheet.rows if number == header_row), None)
    if row is None:
        raise WorkbookError(f"{file}: sheet {sheet.name!r} has no row {header_row} (header_row): "
                            f"it has {len(sheet.rows)} rows")
    return ["" if v is None else str(v).strip() for v in row]


def data_rows(sheet: Sheet, header_row: int, skip_rows: int) -> Iterator[tuple[int, list[Any]]]:
    """The rows below the header (and the `skip_rows` right under it), blank rows left out."""
    for number, cells in sheet.rows:
        if number > header_row + skip_rows and any(v is not None for v in cells):
            yield number, cells
