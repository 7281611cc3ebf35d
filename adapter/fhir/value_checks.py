"""The checks of values that only the R4B models make: a date that is no calendar day
(`2026-02-30`, which the R4 schema's pattern lets pass) and a base64Binary that does not decode;
and the integer ranges (integers.range_problem, at known places).

The shape-cached validator skips the models for a shape it has seen valid, so it makes these
checks itself, at the places `value_locations` found (once per shape) in the resource: the
elements whose R4 type is date, dateTime, instant, base64Binary or one of the three integers,
at any depth, contained resources included (the integers found once per shape, not walked for
on every resource: that walk was 6% of a pull's CPU). Found by a differential test of the
cached path against `validate` on every primitive of the R4 examples
(tests/test_shape_validation.py).
"""
from __future__ import annotations

import base64
import calendar
import re
from typing import Any

from adapter.fhir.datatypes import element_type
from adapter.fhir.integers import range_problem
from adapter.fhir.outcomes import Issue

__all__ = ["value_locations", "value_issues", "Location"]

Location = tuple[tuple[Any, ...], str]  # (names and indices, the element's R4 type)
_DATES = frozenset({"date", "dateTime", "instant"})
_INTEGERS = frozenset({"integer", "unsignedInt", "positiveInt"})
_CONTAINED = "ResourceList"
_DAY = re.compile(r"^(\d{4})-(\d{2})(?:-(\d{2}))?")


def value_locations(rtype: str, resource: dict[str, Any]) -> tuple[Location, ...]:
    """Where in this resource (and in resources of its shape) the models check a value.

    Examples:
        >>> value_locations("Observation", {"effectivePeriod": {"start": "2026-01-01"}, "status": "final"})
        ((('effectivePeriod', 'start'), 'dateTime'),)
    """
    found: list[Location] = []
    _walk(rtype, resource, (), found)
    return tuple(found)


def _walk(owner: str, node: dict[str, Any], loc: tuple[Any, ...], found: list[Location]) -> None:
    for key, value in node.items():
        kind = element_type(owner, key)
        if kind is None:
            continue
        many = isinstance(value, list)
        for index, item in enumerate(value if many else (value,)):
            where = (*loc, key, index) if many else (*loc, key)
            if (kind in _DATES or kind == "base64Binary") and isinstance(item, str) or (
                    kind in _INTEGERS and type(item) is int):
                found.append((where, kind))
            elif isinstance(item, dict):
                inner = item.get("resourceType") if kind == _CONTAINED else kind
                if isinstance(inner, str) and inner[:1].isupper():
                    _walk(inner, item, where, found)


def value_issues(rtype: str, resource: dict[str, Any], locations: tuple[Location, ...],
                 expression: Any) -> list[Issue]:
    """An issue per value at `locations` that is no calendar date, no base64, or an integer out
    of its type's range."""
    issues = []
    for loc, kind in locations:
        value: Any = resource
        for part in loc:
            value = value[part]
        if kind in _INTEGERS:
            if problem := range_problem(kind, value):
                issues.append(Issue("value", problem, expression(rtype, loc)))
        elif problem := _date_problem(value) if kind in _DATES else _base64_problem(value):
            where = expression(rtype, loc)
            issues.append(Issue("value", f"{where}: {problem} (value {value!r})", where))
    return issues


def _date_problem(value: str) -> str | None:
    """The day of a date that the pattern let through, against the calendar (a leap second,
    `23:59:60`, is the models' business and passes there too)."""
    match = _DAY.match(value)
    if match and match.group(3) and not 1 <= int(match.group(3)) <= _days_in(int(match.group(1)), int(match.group(2))):
        return "no such day in the calendar"
    return None


def _days_in(year: int, month: int) -> int:
    return calendar.monthrange(max(year, 1), month)[1] if 1 <= month <= 12 else 0


def _base64_problem(value: str) -> str | None:
    try:
        base64.b64decode(value.encode("utf-8"))
    except ValueError as exc:  # binascii.Error: the models' own test (pydantic's Base64Bytes)
        return f"not base64 ({exc})"
    return None
