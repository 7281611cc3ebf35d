"""Values from other rows of the same record: a first pass over the export keeps, for each
record, every visit's date and the few fields that rules look up (`from_visit`, `latest`), so
that a dose row can read the weight of the screening row.

Only the looked-up fields are kept (a few bytes a visit), never whole rows: the mapping pass
still streams. With no lookup in the spec there is no first pass.
"""
from __future__ import annotations

import pathlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from adapter.mapping.engine import _root_scope, _scopes, _visit, read_source
from adapter.mapping.fields import Problem, date_of, text_of
from adapter.mapping.sources import SourceError
from adapter.mapping.spec import MappingSpec

__all__ = ["Visit", "record_histories"]


@dataclass(frozen=True)
class Visit:
    visit: str
    date: str | None  # FHIR date; None when the row has none (or a bad one)
    line: int
    values: dict[str, Any]  # the looked-up fields this visit has a value for


def record_histories(spec: MappingSpec, files: Iterable[str | pathlib.Path]) -> dict[str, list[Visit]]:
    """Per record key, its visits (rows that cannot be read, or whose visit is unknown, are
    left out: the mapping pass rejects them)."""
    histories: dict[str, list[Visit]] = {}
    if not spec.looked_up:
        return histories
    for path in files:
        for row in read_source(spec, path):
            if isinstance(row, SourceError):
                continue
            root = _root_scope(spec, row)
            record = text_of(root.get(spec.source["record_key"]).raw).strip()
            if not record:
                continue
            try:
                scopes = list(_scopes(spec, root))
            except Problem:
                continue
            for scope in scopes:
                try:
                    visit = _visit(spec, scope)
                except Problem:
                    continue
                day = scope.get(spec.source["visit_date"])
                try:
                    date = None if day.empty else date_of(day, spec.source["date_formats"])
                except Problem:
                    date = None
                values = {name: got.raw for name in spec.looked_up if not (got := scope.get(name)).empty}
                histories.setdefault(record, []).append(Visit(visit, date, row.line, values))
    return histories
