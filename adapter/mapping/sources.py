"""Reading site exports as a stream of source rows, each knowing where it came from.

A row is a mapping from column name (or top-level key, for JSON documents) to value, with the
file and the line where it starts, so that every rejection can point at it. Nothing is read
into memory beyond the current row.
"""
from __future__ import annotations

import csv
import decimal
import json
import pathlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from adapter.errors import AdapterError

__all__ = ["SourceRow", "SourceError", "SourceFileError", "read_csv", "read_ndjson", "read_json", "MAX_LINE", "MAX_DOCUMENT"]

# One physical line of a CSV or NDJSON export, read at most this far: a 1 GiB line was refused
# (by csv's field limit) only once it had been read whole, 2.2 GB at the peak. A row of a site's
# export is a few KB.
MAX_LINE = 1 << 20  # characters (CSV) or bytes (NDJSON)
MAX_DOCUMENT = 64 << 20  # bytes of a JSON document, which is parsed whole


@dataclass(frozen=True)
class SourceRow:
    file: str
    line: int  # the line the row starts on; a CSV header is line 1
    values: dict[str, Any]
    # what identifies the record (engine.unique_key), once the run has worked it out for the
    # duplicate check: the Provenance reuses it rather than reading the row a second time
    key: tuple[str, ...] | None = None
    table: str = ""  # the mapping's table it belongs to (tables.py): "" for a source of one table
    # a workbook's: field -> (the header as the site wrote it, `sheet!A1`), before any reshaping
    places: dict[str, tuple[str, str]] | None = None
    sheet: str = ""  # a workbook's: the sheet it is a row of (`line` is the sheet's row number)


class SourceFileError(AdapterError):
    """A source file that cannot be read as the mapping says (a workbook that is none, a sheet or
    a header that is not there): one error, before anything of the ingest is stored."""

    status, code = 422, "invalid"


@dataclass(frozen=True)
class SourceError:
    """A row that could not even be read (bad encoding, bad JSON, wrong number of fields)."""

    file: str
    line: int
    reason: str
    sheet: str = ""


def read_csv(path: str | pathlib.Path, encoding: str = "utf-8", delimiter: str = ",") -> Iterator[SourceRow | SourceError]:
    """Rows of a delimited file with a header line, in order.

    A field may span lines (quoted newlines): the row's line is the one it starts on. A row
    with more fields than the header is an error, not silently cut. Undecodable bytes or broken
    quoting end the file with an error at the row where they start (what follows cannot be
    trusted to split into the same rows).
    """
    file = str(path)
    with open(path, encoding=encoding, newline="", errors="strict") as handle:
        lines = _Lines(handle)
        reader = csv.reader(lines, delimiter=delimiter)
        header: list[str] | None = None
        start = 1
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                return
            except (UnicodeDecodeError, csv.Error, _LineTooLong, _NotText) as exc:
                reason = f"not {encoding}: {exc.reason}" if isinstance(exc, UnicodeDecodeError) \
                    else f"malformed CSV: {exc}" if isinstance(exc, csv.Error) else str(exc)
                yield SourceError(file, start, reason)
                return
            if header is None:
                header = [h.lstrip("\ufeff") for h in fields]
            elif len(fields) > len(header):
                yield SourceError(file, start, f"{len(fields)} fields, but the header has {len(header)}")
            elif len(fields) < len(header) and lines.at_end and lines.cut:
                # a short last row without its line end: a file cut off in the middle of a row
                # (a copy or an export that stopped), not a row whose last cells are empty
                yield SourceError(file, start, f"the last row is cut off: {len(fields)} of {len(header)} fields "
                                  "and no line end (a truncated file?)")
            elif fields:  # a blank line holds no row
                yield SourceRow(file, start, dict(zip(header, fields + [""] * (len(header) - len(fields)),
                                                      strict=True)))
            start = reader.line_num + 1


class _LineTooLong(AdapterError, ValueError):
    def __init__(self) -> None:
        super().__init__(f"a line longer than {MAX_LINE:,} characters: not read further")


class _NotText(AdapterError, ValueError):
    pass


class _Lines:
    """The lines of a text file for csv.reader: none read past MAX_LINE (_LineTooLong), none
    holding NUL (_NotText: no text file holds it; a file of NUL bytes read as one empty header),
    and one read ahead, to tell the last line and whether it ended (`cut`)."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle
        self._ahead = self._read()
        self.cut = False  # the last line was read and had no line end: the file may be truncated

    def _read(self) -> str | ValueError:
        """The next line, or the error to raise when the reader asks for it (not before: the
        row read ahead of it is still whole)."""
        try:
            line: str = self._handle.readline(MAX_LINE + 1)
        except UnicodeDecodeError as exc:
            return exc
        if len(line) > MAX_LINE and not line.endswith(("\n", "\r")):
            return _LineTooLong()
        if "\x00" in line:
            return _NotText("the file holds NUL bytes: no text file does (a binary file, or one in UTF-16 "
                            "or UTF-32 where the mapping says otherwise)")
        return line

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = self._ahead
        if isinstance(line, ValueError):
            raise line
        if not line:
            raise StopIteration
        self._ahead = self._read()
        self.cut = self._ahead == "" and not line.endswith(("\n", "\r"))
        return line

    @property
    def at_end(self) -> bool:
        return self._ahead == ""


def _skip_line(handle: Any) -> None:
    while (chunk := handle.readline(MAX_LINE)) and not chunk.endswith(b"\n"):
        pass


def read_ndjson(path: str | pathlib.Path, encoding: str = "utf-8") -> Iterator[SourceRow | SourceError]:
    """One JSON object per line; blank lines are skipped, anything else is an error row (a line
    past MAX_LINE bytes too, read no further than that)."""
    file = str(path)
    with open(path, "rb") as handle:
        number = 0
        while raw := handle.readline(MAX_LINE + 1):
            number += 1
            if len(raw) > MAX_LINE and not raw.endswith(b"\n"):
                _skip_line(handle)
                yield SourceError(file, number, f"a line longer than {MAX_LINE:,} bytes: not read further")
                continue
            if not raw.strip():
                continue
            try:
                document = json.loads(raw.decode(encoding), parse_float=decimal.Decimal)  # digits as written
            except UnicodeDecodeError as exc:
                yield SourceError(file, number, f"not {encoding}: {exc.reason}")
                continue
            except json.JSONDecodeError as exc:
                yield SourceError(file, number, f"malformed JSON: {exc.msg} at column {exc.colno}")
                continue
            if not isinstance(document, dict):
                yield SourceError(file, number, "a line must hold one JSON object")
                continue
            yield SourceRow(file, number, document)


def read_json(path: str | pathlib.Path, encoding: str = "utf-8") -> Iterator[SourceRow | SourceError]:
    """A JSON document holding an array of records (or one record); a row is the position of
    the record in the array (1-based). The document is parsed whole: for large exports, NDJSON
    streams."""
    file = str(path)
    if (size := pathlib.Path(path).stat().st_size) > MAX_DOCUMENT:
        yield SourceError(file, 1, f"a JSON document of {size:,} bytes; at most {MAX_DOCUMENT:,} are parsed "
                          "whole (export NDJSON, one record a line, for more)")
        return
    try:
        document = json.loads(pathlib.Path(path).read_bytes().decode(encoding), parse_float=decimal.Decimal)
    except UnicodeDecodeError as exc:
        yield SourceError(file, 1, f"not {encoding}: {exc.reason}")
        return
    except json.JSONDecodeError as exc:
        yield SourceError(file, exc.lineno, f"malformed JSON: {exc.msg} at column {exc.colno}")
        return
    for number, record in enumerate(document if isinstance(document, list) else [document], 1):
        if isinstance(record, dict):
            yield SourceRow(file, number, record)
        else:
            yield SourceError(file, number, "each record must be a JSON object")
