"""Reading a mapping's field references out of a source row, and turning text into typed values.

A field is a column name (CSV, REDCap) or a dotted path into a JSON document, relative to the
current item (`date`, `labs.IgG.value`) or from the document root (`$.patient.id`). Every value
remembers where it came from (`label`: the column, or the concrete JSON path such as
`$.visits[2].date`), so that a problem names the exact place. Problems are raised as `Problem`.
"""
from __future__ import annotations

import datetime
import decimal
import functools
import re
from dataclasses import dataclass, field
from typing import Any

from adapter.errors import AdapterError
from adapter.fhir import units
from adapter.mapping.arithmetic import combine, is_arithmetic, operation
from adapter.mapping.values import parse_date, parse_decimal

__all__ = ["Problem", "Value", "Scope", "evaluate", "fields_of", "looked_up", "text_of", "any_index", "decimal_of",
           "date_of", "integer_of", "rounded", "map_target", "map_targets"]


class Problem(AdapterError):
    """A source value the mapping cannot accept: where it is, what it is, and why."""

    def __init__(self, column: str, value: Any, reason: str) -> None:
        super().__init__(reason)
        self.column, self.value, self.reason = column, text_of(value), reason


def map_targets(entry: Any) -> list[str]:
    """The catalogue keys a code map's entry maps to: one, or several (a list).

    Examples:
        >>> map_targets("male"), map_targets(["intravenous", "intrathecal"])
        (['male'], ['intravenous', 'intrathecal'])
    """
    return [str(k) for k in entry] if isinstance(entry, list) else [map_target(entry)]


def map_target(entry: Any) -> str:
    """The catalogue key a code map's entry maps to: the entry itself, or its `to`.

    Examples:
        >>> map_target("male"), map_target({"to": "intravenous", "equivalence": "narrower"})
        ('male', 'intravenous')
    """
    return str(entry["to"]) if isinstance(entry, dict) else str(entry)


def text_of(value: Any) -> str:
    """Source values as an engineer reads them in the file (JSON true -> "true", 1.50 -> "1.50")."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass(frozen=True)
class Value:
    raw: Any  # None when the source has nothing there
    label: str
    note: str = ""  # why it is empty, when that is not plain (a lookup that found nothing)

    @property
    def empty(self) -> bool:
        return self.raw is None or (isinstance(self.raw, str) and not self.raw.strip())


@dataclass
class Scope:
    """Where field references are read: a CSV row, or a JSON document and one of its items."""

    root: dict[str, Any]
    tabular: bool
    decimal_mark: str = "."
    item: Any = None  # the current JSON item (a visit, an adverse event), if any
    item_path: str = "$"
    bound: dict[str, Value] = field(default_factory=dict)  # for_each values by field name
    visit: str | None = None
    visit_date: str | None = None  # the visit's date, as a FHIR date
    seen: set[str] | None = None  # fields read, for coverage
    # the record's visits, with the fields other rows look up (lookups.py); empty when none are
    history: list[Any] = field(default_factory=list)
    reads: set[str] | None = None  # the cells (exact labels) one rule's builder read, when tracked
    place: tuple[str, int, str] | None = None  # file, line, item path of this visit (lookups' "here")
    table: Any = None  # the source's table the row is of (tables.Table)
    # a workbook's: label -> (the header as written, `sheet!A1`): what a rejection names
    cells: dict[str, tuple[str, str]] = field(default_factory=dict)

    def get(self, name: str) -> Value:
        if name in self.bound:
            return self.bound[name]
        if self.tabular:
            value = Value(self.root.get(name), name)
        elif name.startswith("$."):
            value = Value(_walk(self.root, name[2:]), name)
        else:
            base = self.item if self.item is not None else self.root
            value = Value(_walk(base, name), f"{self.item_path}.{name}")
        if self.reads is not None:
            self.reads.add(value.label)
        if self.seen is not None:
            self.seen.add(any_index(value.label))
        return value

    def child(self, item: Any, item_path: str, bound: dict[str, Value] | None = None) -> Scope:
        return Scope(self.root, self.tabular, self.decimal_mark, item, item_path,
                     {**self.bound, **(bound or {})}, self.visit, self.visit_date, self.seen, self.history,
                     self.reads, self.place, self.table, self.cells)


_ANY_INDEX = re.compile(r"\[\d+\]")


def any_index(label: str) -> str:
    """A field's label with its list positions as [*]: `visits[2].adl` -> `visits[*].adl`."""
    return _ANY_INDEX.sub("[*]", label)


def _walk(node: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def evaluate(expr: Any, scope: Scope) -> Value:
    """The value an expression of the spec (see mapping.schema.json, $defs/value) denotes here."""
    if isinstance(expr, str):
        return scope.get(expr)
    if "const" in expr:
        return Value(expr["const"], "(constant)")
    if is_arithmetic(expr):
        return _arithmetic(expr, scope)
    value = _look_up(expr, scope) if "from_visit" in expr or "latest" in expr else scope.get(expr["field"])
    if value.empty:
        return value
    if "split" in expr:
        parts = text_of(value.raw).split(expr["split"])
        if expr["part"] >= len(parts):
            raise Problem(value.label, value.raw, f"expected {expr['part'] + 1} parts separated by "
                          f"{expr['split']!r}")
        value = Value(parts[expr["part"]].strip(), value.label)
    if "pattern" in expr:
        value = _patterned(expr, value, scope.decimal_mark)
    if "map" in expr:
        key = text_of(value.raw).strip()
        if key not in expr["map"]:
            raise Problem(value.label, value.raw, f"unknown code {key!r} (expected "
                          f"{', '.join(map(repr, expr['map']))})")
        entry = expr["map"][key]
        value = Value([str(k) for k in entry] if isinstance(entry, list) else map_target(entry), value.label)
    return value


@functools.lru_cache(maxsize=64)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _patterned(expr: dict[str, Any], value: Value, decimal_mark: str) -> Value:
    """A number written with its unit in one cell ("35×10^6", "18 x10^6"): the declared
    pattern's `value` group as a number; its `unit` group, through `units`, converted into the
    expression's `unit`. A cell that does not match is rejected, naming the pattern."""
    text = text_of(value.raw).strip()
    match = _compiled(expr["pattern"]).fullmatch(text)
    if match is None:
        raise Problem(value.label, value.raw, f"not in the declared form (pattern {expr['pattern']})")
    try:
        number = parse_decimal(match["value"], decimal_mark)
    except ValueError as exc:
        raise Problem(value.label, value.raw, str(exc)) from None
    if "units" in expr:
        spelling = (match["unit"] or "").strip()
        if spelling not in expr["units"]:
            raise Problem(value.label, value.raw, f"unknown unit {spelling!r} (expected {' or '.join(expr['units'])})")
        number *= units.factor(expr["units"][spelling], expr["unit"])
    return Value(number, value.label)


def _arithmetic(expr: dict[str, Any], scope: Scope) -> Value:
    op = operation(expr)
    values = [evaluate(part, scope) for part in expr[op]]
    shown = [v.label for v in values] if len(values) <= 4 else [values[0].label, "...", values[-1].label]
    label = f"{op}({', '.join(shown)})"
    read = [v for part, v in zip(expr[op], values, strict=True) if fields_of(part)]  # constants aside
    if all(v.empty for v in read):
        return Value(None, label)  # nothing to derive it from: the rule makes nothing
    missing = [v for v in values if v.empty]
    if missing:
        why = f" ({missing[0].note})" if missing[0].note else ""
        raise Problem(missing[0].label, "", f"needed for {label}, but empty{why}")
    numbers = [decimal_of(v, scope.decimal_mark) for v in values]
    try:
        result = combine(op, numbers)
    except (ZeroDivisionError, decimal.InvalidOperation):
        # named by the expression, not the divisor's cell: a 0 is a fine value for other rules
        raise Problem(label, values[-1].raw, "a ratio over zero") from None
    if "round" in expr:
        result = rounded(result, expr["round"])
    return Value(result, label)


def rounded(number: decimal.Decimal, places: int) -> decimal.Decimal:
    try:
        return number.quantize(decimal.Decimal(1).scaleb(-places), rounding=decimal.ROUND_HALF_UP)
    except decimal.InvalidOperation:  # more digits than the context's precision: nothing to round
        return number


def _look_up(expr: dict[str, Any], scope: Scope) -> Value:
    """A field from another row (or visit) of the same record: the `from_visit` one's, or the
    latest at or before this visit's date (this row included, and preferred on the same day)."""
    name = expr["field"]
    table = expr.get("table", scope.table.name if scope.table is not None else "")
    if "table" not in expr:
        scope.get(name)  # read: counted as used by coverage (a joined table's field is read there)
    found = [v for v in scope.history if name in v.values and v.table == table]
    if "from_visit" in expr:
        found = [v for v in found if v.visit == expr["from_visit"]]
        where = f"at {expr['from_visit']}"
    else:
        day = scope.visit_date
        found = [v for v in found if day is not None and v.date is not None and v.date <= day]
        where = f"latest at or before {day or 'the visit date'}"
    if not found:
        shown = name if "table" not in expr else f"{name} ({table})"
        return Value(None, shown, f"{where}: none in the record")
    visit = max(found, key=lambda v: (v.date or "", v.place == scope.place, v.order))
    if visit.cells and name in visit.cells:  # a workbook's: a rejection names the joined cell itself
        header, cell = visit.cells[name]
        label = f"{header} ({cell})"
        scope.cells.setdefault(label, (header, cell))
        return Value(visit.values[name], label)
    return Value(visit.values[name], f"{name} (line {visit.place[1]}, {visit.visit})")


def decimal_of(value: Value, decimal_mark: str) -> decimal.Decimal:
    if isinstance(value.raw, bool):
        raise Problem(value.label, value.raw, "not a number")
    if isinstance(value.raw, (int, decimal.Decimal)):
        return decimal.Decimal(value.raw)
    if isinstance(value.raw, float):
        return decimal.Decimal(repr(value.raw))
    try:
        return parse_decimal(text_of(value.raw), decimal_mark)
    except ValueError as exc:
        raise Problem(value.label, value.raw, str(exc)) from None


def date_of(value: Value, formats: list[str], serials: bool = False) -> str:
    """`serials`: a workbook's, where a number in a date field is Excel's serial day."""
    try:
        return parse_date(value.raw if isinstance(value.raw, (datetime.date, int, decimal.Decimal)) else
                          text_of(value.raw), formats, serials)
    except ValueError as exc:
        raise Problem(value.label, value.raw, str(exc)) from None


def integer_of(value: Value, decimal_mark: str, reason: str = "not a whole number") -> int:
    number = decimal_of(value, decimal_mark)
    if number != number.to_integral_value():
        raise Problem(value.label, value.raw, reason)
    return int(number)


def fields_of(expr: Any) -> list[str]:
    """The source fields an expression reads (for `mapping check` and coverage)."""
    if isinstance(expr, str):
        return [expr]
    if isinstance(expr, dict):
        if is_arithmetic(expr):
            return [name for part in expr[operation(expr)] for name in fields_of(part)]
        if "field" in expr:
            return [expr["field"]]
    return []


def looked_up(expr: Any) -> list[str]:
    """The fields an expression reads from other rows of the record (`from_visit`, `latest`)."""
    if isinstance(expr, dict):
        if is_arithmetic(expr):
            return [name for part in expr[operation(expr)] for name in looked_up(part)]
        if "from_visit" in expr or "latest" in expr:
            return [expr["field"]]
    return []
