"""Values from other rows of the same record: a first pass over the export keeps, for each
record, every visit's date and the few fields that rules look up (`from_visit`, `latest`), so
that a dose row can read the weight of the screening row.

Only the looked-up fields are kept (a few bytes a visit), never whole rows: the mapping pass
still streams. With no lookup in the spec there is no first pass. What the mapping pass rejects
never feeds a lookup: a duplicate row, a visit with an unknown visit or a bad date, and a value
that the observation rule reading the same field rejects (a weight of 500 kg).
"""
from __future__ import annotations

import pathlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from adapter.mapping.scopes import read_source, root_scope, unique_key, visit_of, visit_scopes
from adapter.mapping.context import Context
from adapter.mapping.fields import Problem, Scope, Value, date_of, text_of
from adapter.mapping.resources import stored_number
from adapter.mapping.reading import WORKBOOKS
from adapter.mapping.sources import SourceError
from adapter.mapping.spec import MappingSpec, Rule

__all__ = ["Visit", "record_histories"]


@dataclass(frozen=True)
class Visit:
    visit: str
    date: str | None  # FHIR date; None when the row has none
    order: int  # place in the export(s), for ties on a date
    place: tuple[str, int, str]  # file, line, JSON item path: which row (and visit) it is
    values: dict[str, Any]  # the looked-up fields this visit has an accepted value for
    table: str = ""  # the source's table the row is of: a lookup reads its own table's, or the one it names
    cells: dict[str, tuple[str, str]] | None = None  # a workbook's: field -> (header, `sheet!A1`)


def record_histories(spec: MappingSpec, files: Iterable[str | pathlib.Path]) -> dict[str, list[Visit]]:
    """Per record key, its visits (rows that cannot be read, duplicates, and visits whose visit
    or date the mapping pass rejects are left out)."""
    histories: dict[str, list[Visit]] = {}
    if not spec.looked_up:
        return histories
    checks = _checks(spec)
    seen: set[tuple[str, ...]] = set()
    order = 0
    for path in files:
        for row in read_source(spec, path):
            if isinstance(row, SourceError):
                continue
            identity = unique_key(spec, row)
            if identity in seen:
                continue  # a duplicate: the mapping pass rejects it
            seen.add(identity)
            root = root_scope(spec, row)
            table = root.table
            record = text_of(root.get(table.record_key).raw).strip()
            if not record:
                continue
            try:
                scopes = list(visit_scopes(spec, root))
            except Problem:
                continue
            for scope in scopes:
                try:
                    visit = visit_of(spec, scope)
                    day = scope.get(table.visit_date) if table.visit_date else Value(None, "")
                    date = None if day.empty else date_of(day, spec.source["date_formats"],
                                                          spec.source["format"] in WORKBOOKS)
                except Problem:
                    continue  # an unknown visit or a bad date: the visit is rejected
                values, cells = {}, {}
                for name in spec.looked_up:
                    got = scope.get(name)
                    if not got.empty and all(check(got, scope) for check in checks.get(name, [])):
                        values[name] = got.raw
                        if got.label in root.cells:
                            cells[name] = root.cells[got.label]
                order += 1
                histories.setdefault(record, []).append(
                    Visit(visit, date, order, (row.file, row.line, scope.item_path), values, table.name, cells))
    return histories


def _checks(spec: MappingSpec) -> dict[str, list[Any]]:
    """Per looked-up field, the checks of the observation rules that read it as their value
    (the body-weight rule's 2-150 kg for `weight_kg`): the number that rule would store, unit
    conversion and rounding included (resources.stored_number)."""
    found: dict[str, list[Any]] = {}
    for rule in spec.rules:
        expr = rule.fields.get("value") if rule.kind == "observation" else None
        name = expr if isinstance(expr, str) else expr.get("field") if isinstance(expr, dict) and \
            set(expr) <= {"field", "unit"} else None
        if name not in spec.looked_up or rule.concept is None or "check" not in rule.concept:
            continue

        def check(value: Value, scope: Scope, rule: Rule = rule) -> bool:
            try:
                stored_number(Context(spec, b"", "", scope), rule, value)
            except Problem:
                return False
            return True
        found.setdefault(name, []).append(check)
    return found
