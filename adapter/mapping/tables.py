"""The tables a mapping reads: one per sheet of a workbook, or per kind of file, each with its
header row, its visit and visit date, and what identifies a row; a wide layout (visits as
column groups on one row: `基线_日期`, `第6月_ADL`) declared as data and turned into one record
per child and visit before the rules run, so that every rule kind works on it unchanged.

A source without `tables:` is one table, the source itself. Rules read the first table unless
their `when: {table: ...}` names others; a lookup (`from_visit`, `latest`) with `table:` reads
another table's rows of the same child (a join).
"""
from __future__ import annotations

import fnmatch
import pathlib
import re
from dataclasses import dataclass
from typing import Any

from adapter.yamlspec import Lines

__all__ = ["Table", "Wide", "compile_tables", "WIDE_VISIT", "VISIT_KEY", "table_sources"]

# The field of a reshaped record holding its visit's label (基线): no header is written so.
WIDE_VISIT = "{visit}"
VISIT_KEY = re.compile(r"^(baseline|injection-(\d+|\{[^}]+\})|month-(\d+|\{[^}]+\}))$")


@dataclass(frozen=True)
class Wide:
    """Visits as column groups: `pattern` tells a group's column (visit label, field) from the
    others, which every record of the row shares."""

    pattern: re.Pattern[str]  # the declared visits only: (?P<visit>基线|第6月)_(?P<field>.+)
    loose: re.Pattern[str]  # any visit label: to tell a group of an undeclared visit
    visits: dict[str, str]  # visit label -> visit key (baseline, month-6)


@dataclass(frozen=True)
class Table:
    name: str
    at: tuple[Any, ...]  # where the spec declares it, for problems: ("source",) or ("source", "tables", i)
    record_key: str
    visit_field: str
    visits: tuple[tuple[re.Pattern[str], str], ...]
    visit_matches: tuple[str, ...]  # as written, for the rejection of an unknown visit
    visit_date: str | None  # None: the table's rows are not dated visits (an adverse-event sheet)
    unique: tuple[str, ...]
    sheet: str | None = None
    file: str | None = None  # a glob the file's name matches (several kinds of file in one ingest)
    header_row: int = 1
    skip_rows: int = 0
    wide: Wide | None = None

    def takes(self, path: str | pathlib.Path) -> bool:
        return self.file is None or fnmatch.fnmatch(pathlib.Path(path).name, self.file)


def _wide(declared: dict[str, Any]) -> Wide:
    labels = sorted(declared["visits"], key=len, reverse=True)  # 第12月 before 第1月
    template = re.escape(declared.get("columns", "{visit}_{field}"))
    template = template.replace(re.escape("{field}"), "(?P<field>.+)")
    pattern = template.replace(re.escape("{visit}"), f"(?P<visit>{'|'.join(map(re.escape, labels))})")
    loose = template.replace(re.escape("{visit}"), "(?P<visit>.+?)")
    return Wide(re.compile(pattern), re.compile(loose), dict(declared["visits"]))


def _visits(visit: dict[str, Any], lines: Lines, at: tuple[Any, ...], problems: list[str]
            ) -> tuple[tuple[re.Pattern[str], str], ...]:
    found = []
    for i, value in enumerate(visit["values"]):
        where = at + ("visit", "values", i)
        try:
            pattern = re.compile(value["match"])
        except re.error as exc:
            problems.append(lines.problem(where + ("match",), f"not a regular expression: {exc}"))
        else:
            found.append((pattern, value["visit"]))
            missing = [g for g in re.findall(r"\{(\d+)\}", value["visit"]) if int(g) > pattern.groups]
            if missing:
                problems.append(lines.problem(where + ("visit",), f"{{{missing[0]}}}: the match has {pattern.groups} "
                                              "group(s)"))
        if not VISIT_KEY.match(value["visit"]):
            problems.append(lines.problem(where + ("visit",), "a visit is baseline, injection-N or month-N (N may be "
                                          "{1} or {field})"))
    return tuple(found)


def compile_tables(source: dict[str, Any], lines: Lines, problems: list[str]) -> tuple[Table, ...]:
    """The source's tables (`tables:`, each taking what it does not say from the source), or
    the source as its one table."""
    declared = source.get("tables") or [{}]
    out = []
    for i, entry in enumerate(declared):
        at = ("source", "tables", i) if "tables" in source else ("source",)
        merged = {**{k: v for k, v in source.items() if k != "tables"}, **entry}
        wide = _wide(merged["wide"]) if "wide" in merged else None
        visit: dict[str, Any]
        if wide is not None:
            visit = {"field": WIDE_VISIT, "values": [{"match": re.escape(label), "visit": key}
                                                     for label, key in wide.visits.items()]}
            for label, key in wide.visits.items():
                if not VISIT_KEY.match(key) or "{" in key:
                    problems.append(lines.problem(at + ("wide", "visits", label), f"{key!r} is not a visit "
                                                  "(baseline, injection-N or month-N)"))
        elif "visit" in merged:
            visit = merged["visit"]
        else:
            problems.append(lines.problem(at, "no visit: give `visit:` (or `wide:`)"))
            visit = {"field": "", "values": []}
        name = (entry.get("name") or entry.get("sheet") or entry.get("file") or f"table-{i + 1}") \
            if "tables" in source else ""
        if "sheet" in merged and source["format"] not in ("xlsx", "xls"):
            problems.append(lines.problem(at + ("sheet",), f"a sheet, but the source is {source['format']}"))
        record_key = merged["record_key"]
        unique = tuple(merged.get("unique") or [record_key, visit["field"]])
        out.append(Table(name, at, record_key, visit["field"], _visits(visit, lines, at, problems) if wide is None
                         else tuple((re.compile(v["match"]), v["visit"]) for v in visit["values"]),
                         tuple(v["match"] for v in visit["values"]), merged.get("visit_date"), unique,
                         merged.get("sheet"), entry.get("file"), merged.get("header_row", 1),
                         merged.get("skip_rows", 0), wide))
    names = [t.name for t in out]
    for i, name in enumerate(names):
        if name in names[:i]:
            problems.append(lines.problem(out[i].at, f"a second table named {name!r} (give `name:`)"))
    return tuple(out)


def table_sources(source: dict[str, Any]) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    """(where, the table's own keys over the source's) of each table, as compile_tables reads them."""
    if "tables" not in source:
        return [(("source",), source)]
    base = {k: v for k, v in source.items() if k != "tables"}
    return [(("source", "tables", i), {**base, **entry}) for i, entry in enumerate(source["tables"])]
