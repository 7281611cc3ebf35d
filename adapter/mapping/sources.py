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

__all__ = ["SourceRow", "SourceError", "read_csv", "read_ndjson", "read_json"]


@dataclass(frozen=True)
class SourceRow:
    file: str
    line: int  # the line the row starts on; a CSV header is line 1
    values: dict[str, Any]
    # what identifies the record (engine.unique_key), once the run has worked it out for the
    # duplicate check: the Provenance reuses it rather than reading the row a second time
    key: tuple[str, ...] | None = None


@dataclass(frozen=True)
class SourceError:
    """A row that could not even be read (bad encoding, bad JSON, wrong number of fields)."""

    file: str
    line: int
    reason: str


def read_csv(path: str | pathlib.Path, encoding: str = "utf-8", delimiter: str = ",") -> Iterator[SourceRow | SourceError]:
    """Rows of a delimited file with a header line, in order.

    A field may span lines (quoted newlines): the row's line is the one it starts on. A row
    with more fields than the header is an error, not silently cut. Undecodable bytes or broken
    quoting end the file with an error at the row where they start (what follows cannot be
    trusted to split into the same rows).
    """
    file = str(path)
    with open(path, encoding=encoding, newline="", errors="strict") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        header: list[str] | None = None
        start = 1
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                return
            except (UnicodeDecodeError, csv.Error) as exc:
                reason = f"not {encoding}: {exc.reason}" if isinstance(exc, UnicodeDecodeError) \
                    else f"malformed CSV: {exc}"
                yield SourceError(file, start, reason)
                return
            if header is None:
                header = [h.lstrip("\ufeff") for h in fields]
            elif len(fields) > len(header):
                yield SourceError(file, start, f"{len(fields)} fields, but the header has {len(header)}")
            elif fields:  # a blank line holds no row
                yield SourceRow(file, start, dict(zip(header, fields + [""] * (len(header) - len(fields)),
                                                      strict=True)))
            start = reader.line_num + 1


def read_ndjson(path: str | pathlib.Path, encoding: str = "utf-8") -> Iterator[SourceRow | SourceError]:
    """One JSON object per line; blank lines are skipped, anything else is an error row."""
    file = str(path)
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, 1):
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
