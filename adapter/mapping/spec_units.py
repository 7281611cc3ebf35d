"""The units of a rule's values, worked out when the spec is loaded: the factor from a source
unit (`unit:`) into the catalogue's, and from an arithmetic value's unit into the unit the
field is stored in; a conversion UCUM cannot do (or annotations that do not match) is a problem
of the spec, never of a row."""
from __future__ import annotations

import decimal
import re
from typing import Any

from adapter.fhir.units import UnitError, factor
from adapter.mapping.arithmetic import is_arithmetic, operation, unit_of
from adapter.yamlspec import Lines

__all__ = ["derived_factors", "source_factors", "value_problems", "TARGET_UNITS"]


# The unit a numeric field is stored in, where it is not a plain number.
TARGET_UNITS = {("injection", "cells_million"): "10*6"}


def derived_factors(kind: str, fields: dict[str, Any], concept: dict[str, Any] | None, lines: Lines,
             at: tuple[Any, ...], problems: list[str], source_unit: bool) -> dict[str, decimal.Decimal]:
    """Per field with an arithmetic expression (or a unit of its own), the factor from the unit
    the expression works out to into the unit the field is stored in; a mismatch is a problem."""
    found = {}
    for name, expr in fields.items():
        if not isinstance(expr, dict) or not (is_arithmetic(expr) or "unit" in expr) or name == "unit":
            continue
        if "const" in expr and "unit" not in expr:
            continue
        where = lines.problem(at + (name,), "")
        errors: list[str] = []
        unit = unit_of(expr, errors)
        problems.extend(where + error for error in errors)
        if errors:
            continue
        if kind == "observation" and concept is not None:
            target = concept.get("unit", "1") if name == "value" else \
                concept.get("components", {}).get(name, {}).get("unit", "1")
            if source_unit:
                problems.append(where + "the unit comes from the expression: drop the rule's `unit:`")
                continue
        else:
            target = TARGET_UNITS.get((kind, name), "1")
        try:
            found[name] = unit.factor_to(target)
        except UnitError as exc:
            problems.append(where + f"{exc} (the {kind}'s {name} is in {target})")
    return found


def source_factors(rule: dict[str, Any], concept: dict[str, Any], lines: Lines, at: tuple[Any, ...],
             problems: list[str]) -> dict[str, decimal.Decimal] | None:
    unit = rule.get("unit")
    if unit is None:
        return None
    if "unit" not in concept:
        problems.append(lines.problem(at + ("unit",), f"{rule['observation']} has no unit"))
        return None
    spellings = {unit: unit} if isinstance(unit, str) else unit["units"]
    found = {}
    for spelling, ucum in spellings.items():
        try:
            found[spelling] = factor(ucum, concept["unit"])
        except UnitError as exc:
            where = at + ("unit",) if isinstance(unit, str) else at + ("unit", "units", spelling)
            problems.append(lines.problem(where, str(exc)))
    return found


def value_problems(kind: str, rule: dict[str, Any], fields: dict[str, Any], concept: dict[str, Any] | None,
                   lines: Lines, at: tuple[Any, ...]) -> list[str]:
    """Values a spec may not write, refused before any row is read: a measurement looked up in
    another visit (it would be stored as this visit's), arithmetic into a coded concept, a
    constant that is no finite number or divides by zero, an observation made per document."""
    found = []
    if kind in ("observation", "instrument") and rule.get("per") == "document":
        found.append(lines.problem(at + ("per",), "an observation is of a visit: not `per: document`"))
    for name, expr in fields.items():
        where = at + (name,)
        if kind in ("observation", "instrument") and isinstance(expr, dict) and (
                "from_visit" in expr or "latest" in expr):
            found.append(lines.problem(where, "a value looked up in another visit would be stored as this visit's "
                                       "measurement: use it inside arithmetic (a dose x a weight), or read this "
                                       "visit's own field"))
        if kind == "observation" and concept is not None and concept.get("value") == "coded" and is_arithmetic(expr):
            found.append(lines.problem(where, "a coded concept takes a code, not arithmetic"))
        found += [lines.problem(where, message) for message in _constant_problems(expr)]
        found += [lines.problem(where + ("pattern",), message) for message in _pattern_problems(expr)]
    return found


def _pattern_problems(expr: Any) -> list[str]:
    """A unit-bearing pattern must compile, hold the number in (?P<value>...), and its unit group
    go with `units` (whose spellings UCUM must convert into the expression's `unit`)."""
    if not isinstance(expr, dict) or "pattern" not in expr:
        return []
    try:
        pattern = re.compile(expr["pattern"])
    except re.error as exc:
        return [f"not a regular expression: {exc}"]
    found = []
    if "value" not in pattern.groupindex:
        found.append("no group (?P<value>...) for the number")
    if ("unit" in pattern.groupindex) != ("units" in expr):
        found.append("a (?P<unit>...) group and `units:` go together")
    for spelling, ucum in expr.get("units", {}).items():
        try:
            factor(ucum, expr["unit"])
        except UnitError as exc:
            found.append(f"units.{spelling}: {exc}")
    return found


def _constant_problems(expr: Any, divisor: bool = False, operand: bool = False) -> list[str]:
    """A constant that is an operand of arithmetic (or has a unit) must be a finite number, and
    no divisor may be zero; a constant elsewhere (a route's `const: IT`) is text."""
    if not isinstance(expr, dict):
        return []
    if "const" in expr and ("unit" in expr or divisor or operand):
        value = expr["const"]
        try:
            number = decimal.Decimal(str(value)) if not isinstance(value, bool) else None
        except decimal.InvalidOperation:
            number = None
        if number is None or not number.is_finite():
            return [f"{value!r} is no finite number"]
        return ["a ratio over zero, whatever the row"] if divisor and number == 0 else []
    if is_arithmetic(expr):
        op = operation(expr)
        return [m for i, part in enumerate(expr[op])
                for m in _constant_problems(part, op == "ratio" and i == 1, operand=True)]
    return []
