"""What a rule needs to know per row, worked out once when the spec is compiled.

`When`: a rule's `when:` as plain data (the visits it runs at, the fields it compares, the
fields it needs present), checked in the order the spec gives, as before.

`idle_columns`: for an observation rule of a CSV or REDCap export, the columns it reads. When
every one of them is empty in a row, the rule makes nothing there, rejects nothing and warns of
nothing (an observation needs its value; arithmetic over empty fields is empty; the dropped-value
warning needs a filled field): the engine then skips its builder and only records the columns
as read (coverage), which is what running it would have recorded. A flat export's row holds a
few forms, so most rules meet nothing but empty cells. Rules that look values up in other rows,
iterate (`for_each`), or read JSON are never skipped.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from adapter.mapping.fields import any_index, fields_of, looked_up, text_of

__all__ = ["When", "compile_when", "idle_columns", "seen_labels"]


@dataclass(frozen=True)
class When:
    visits: frozenset[str] | None
    equals: tuple[tuple[str, str], ...]
    present: tuple[str, ...]
    tables: frozenset[str] | None = None  # the source's tables the rule reads (None: its only one)

    def holds(self, scope: Any) -> bool:
        if self.tables is not None and (scope.table.name if scope.table is not None else "") not in self.tables:
            return False
        if self.visits is not None and scope.visit not in self.visits:
            return False
        for name, expected in self.equals:
            if text_of(scope.get(name).raw).strip() != expected:
                return False
        for name in self.present:
            if scope.get(name).empty:
                return False
        return True


def compile_when(rule: dict[str, Any], table: str | None = None) -> When | None:
    """`table`: the table a rule without `when: {table: ...}` reads (None: the source has one)."""
    when = rule.get("when") or {}
    if not when and table is None:
        return None
    visits = tables = None
    if "visit" in when:
        visits = frozenset(when["visit"] if isinstance(when["visit"], list) else [when["visit"]])
    if "table" in when:
        tables = frozenset(when["table"] if isinstance(when["table"], list) else [when["table"]])
    elif table is not None:
        tables = frozenset([table])
    return When(visits, tuple(when.get("equals", {}).items()), tuple(when.get("present", [])), tables)


def idle_columns(kind: str, rule: dict[str, Any], fields: dict[str, Any], tabular: bool) -> tuple[str, ...] | None:
    """The columns whose being all empty means the rule does nothing in a row; None: always run it.

    What running it reads when they are empty: the builder reads its value fields (or
    components) and the dropped-value check every field but `unit` and constants, each
    through `Scope.get`, which records the column as read."""
    if not tabular or kind != "observation" or "for_each" in rule:
        return None
    columns: list[str] = []
    for name, expr in fields.items():
        if name == "unit" or (isinstance(expr, dict) and "const" in expr):
            continue
        if looked_up(expr):
            return None
        columns += [c for c in fields_of(expr) if c not in columns]
    return tuple(columns) or None


def seen_labels(columns: tuple[str, ...] | None) -> frozenset[str]:
    """The labels coverage records for these columns (as Scope.get does)."""
    return frozenset(any_index(c) for c in columns or ())
