"""A mapping's source files as rows of its tables: CSV, REDCap, JSON and NDJSON as they are
read (sources.py), workbooks sheet by sheet, a wide sheet as one record per child and visit;
and the check of every file before anything of an ingest is stored (`check_files`).

A workbook row knows, for every field it holds, the header the site wrote and its cell
(`随访!AB5`), before any reshaping: a rejection names that cell, the one the site fixes.
"""
from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Iterable, Iterator
from typing import Any

from adapter.mapping.sources import SourceError, SourceFileError, SourceRow, read_csv, read_json, read_ndjson
from adapter.mapping.tables import WIDE_VISIT, Table
from adapter.mapping.workbooks import Sheet, cell_name, data_rows, headers, open_sheets

__all__ = ["read_rows", "check_files", "WORKBOOKS"]

WORKBOOKS = ("xlsx", "xls")
_CACHE: dict[tuple[Any, ...], tuple[Any, list[SourceRow | SourceError]]] = {}  # the last workbooks read


def _tables_of(spec: Any, path: str | pathlib.Path) -> list[Table]:
    tables = [t for t in spec.tables if t.takes(path)]
    if not tables:
        raise SourceFileError(f"{pathlib.Path(path).name}: no table of the mapping takes this file (their "
                              f"files: {', '.join(t.file or '*' for t in spec.tables)})")
    return tables


def read_rows(spec: Any, path: str | pathlib.Path) -> Iterator[SourceRow | SourceError]:
    """The rows of one file, each tagged with its table."""
    source = spec.source
    fmt = source["format"]
    if fmt in WORKBOOKS:
        yield from _workbook(spec, path)
        return
    tables = _tables_of(spec, path)
    encoding = source.get("encoding", "utf-8")
    rows = read_csv(path, encoding, source.get("delimiter", ",")) if fmt in ("csv", "redcap") else \
        read_json(path, encoding) if fmt == "json" else read_ndjson(path, encoding)
    name = tables[0].name
    for row in rows:
        yield dataclasses.replace(row, table=name) if name and isinstance(row, SourceRow) else row


def check_files(spec: Any, files: Iterable[str | pathlib.Path]) -> None:
    """Every file readable as the mapping says, or one SourceFileError: a workbook whole (its
    kind, bounds, sheets, headers), any other file's table."""
    for path in files:
        if spec.source["format"] in WORKBOOKS:
            _workbook(spec, path)
        else:
            _tables_of(spec, path)


def _workbook(spec: Any, path: str | pathlib.Path) -> list[SourceRow | SourceError]:
    """A workbook's rows, table by table (read once per file and spec: kept for the passes that
    follow, the lookups' and the quarantine's)."""
    stat = pathlib.Path(path).stat()
    key = (id(spec), str(path), stat.st_mtime_ns, stat.st_size)
    if key in _CACHE and _CACHE[key][0] is spec:
        return _CACHE[key][1]
    tables = _tables_of(spec, path)
    sheets = open_sheets(path, spec.source["format"], [t.sheet for t in tables])
    rows: list[SourceRow | SourceError] = []
    for table in tables:
        rows += _sheet_rows(spec, table, sheets[table.sheet], str(path))
    _CACHE.clear()
    _CACHE[key] = (spec, rows)
    return rows


def _sheet_rows(spec: Any, table: Table, sheet: Sheet, file: str) -> list[SourceRow | SourceError]:
    header = headers(sheet, table.header_row, pathlib.Path(file).name)
    shared, groups = _columns(table, header, sheet, file)
    _check_header(spec, table, sheet, file, header, shared, groups)
    out: list[SourceRow | SourceError] = []
    for number, cells in data_rows(sheet, table.header_row, table.skip_rows):
        values: dict[str, Any] = {}
        places: dict[str, tuple[str, str]] = {}
        for index, name in shared:
            values[name] = cells[index] if index < len(cells) else None
            places[name] = (name, cell_name(sheet.name, number, index))
        if table.wide is None:
            out.append(SourceRow(file, number, values, table=table.name, places=places, sheet=sheet.name))
            continue
        for label, fields in groups.items():
            own = {field: cells[index] if index < len(cells) else None for index, field, _ in fields}
            if all(v is None for v in own.values()):
                continue  # not seen at that visit (yet)
            record = {**values, **own, WIDE_VISIT: label}
            where = {**places, **{field: (column, cell_name(sheet.name, number, index))
                                  for index, field, column in fields},
                     WIDE_VISIT: (f"{label}_*", f"{sheet.name}!{number}:{number}")}
            out.append(SourceRow(file, number, record, table=table.name, places=where, sheet=sheet.name))
    return out


def _columns(table: Table, header: list[str], sheet: Sheet, file: str
             ) -> tuple[list[tuple[int, str]], dict[str, list[tuple[int, str, str]]]]:
    """The columns every record of a row shares, and (wide) each visit's group: (index, field,
    header as written)."""
    shared: list[tuple[int, str]] = []
    groups: dict[str, list[tuple[int, str, str]]] = {}
    wide = table.wide
    for index, name in enumerate(header):
        if not name:
            continue
        match = wide.pattern.fullmatch(name) if wide is not None else None
        if match is None:
            shared.append((index, name))
        else:
            groups.setdefault(match["visit"], []).append((index, match["field"], name))
    if wide is not None:
        fields = {field for group in groups.values() for _, field, _ in group}
        for _, name in shared:
            loose = wide.loose.fullmatch(name)
            if loose is not None and loose["field"] in fields:
                raise SourceFileError(f"{pathlib.Path(file).name}: sheet {sheet.name!r}: column {name!r} reads as "
                                      f"visit {loose['visit']!r}'s {loose['field']}, but {loose['visit']!r} is not in "
                                      f"wide.visits ({', '.join(wide.visits)}): declare it there")
    return shared, groups


def _check_header(spec: Any, table: Table, sheet: Sheet, file: str, header: list[str],
                  shared: list[tuple[int, str]], groups: dict[str, list[tuple[int, str, str]]]) -> None:
    """Every field the mapping reads in this table is a column (or, wide, a visit group's field)."""
    have = {name for _, name in shared} | {field for group in groups.values() for _, field, _ in group}
    if table.wide is not None:
        have.add(WIDE_VISIT)
    wanted = spec.table_fields.get(table.name, ())
    missing = [name for name in wanted if name not in have]
    if missing:
        shown = [h for h in header if h]
        raise SourceFileError(f"{pathlib.Path(file).name}: sheet {sheet.name!r} (header row {table.header_row}) has no "
                              f"column {', '.join(map(repr, missing))}: its columns are {', '.join(shown[:40])}"
                              + (" ..." if len(shown) > 40 else ""))
