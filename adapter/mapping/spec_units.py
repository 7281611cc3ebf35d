"""The units of a rule's values, worked out when the spec is loaded: the factor from a source
unit (`unit:`) into the catalogue's, and from an arithmetic value's unit into the unit the
field is stored in; a conversion UCUM cannot do (or annotations that do not match) is a problem
of the spec, never of a row."""
from __future__ import annotations

import decimal
from typing import Any

from adapter.fhir.units import UnitError, factor
from adapter.mapping.arithmetic import is_arithmetic, unit_of
from adapter.yamlspec import Lines

__all__ = ["derived_factors", "source_factors", "TARGET_UNITS"]


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
