"""FHIR integers written as JSON integers: `1.0`, `1e2` and `0e0` are decimals, which the R4
integer pattern (`-?([0]|([1-9][0-9]*))`) refuses, though the R4B models and the JSON Schema
(whose patterns apply to strings only) let them pass as whole numbers.

Bodies are parsed with integers as `int` and every other number as `Decimal` (jsonio), so an
integer element holding a `Decimal` was written as a decimal. The walk follows the R4 schema's
definitions and visits only the branches that can hold an integer element.

Each integer element's range is checked here too (integer: 32-bit signed, unsignedInt from 0,
positiveInt from 1): a value, not a shape, so the shape-cached validator must not skip it.
"""
from __future__ import annotations

import decimal
import functools
from collections.abc import Iterator
from typing import Any

from adapter.fhir.definitions import r4_schema
from adapter.fhir.outcomes import Issue

__all__ = ["integer_issues", "range_problem"]

_RESOURCE = "ResourceList"


_MAX = 2 ** 31 - 1
# Each integer type's least value and name; the R4 schema tells them apart by their patterns only.
_NAMED = {"integer": (-_MAX - 1, "integer"), "unsignedInt": (0, "unsignedInt"), "positiveInt": (1, "positiveInt")}
_RANGES = {pattern: _NAMED[name] for pattern, name in (("^-?([0]|([1-9][0-9]*))$", "integer"),
                                                       ("^[0]|([1-9][0-9]*)$", "unsignedInt"),
                                                       ("^[1-9][0-9]*$", "positiveInt"))}


def _is_integer(prop: dict[str, Any]) -> bool:
    """An integer element, written out (a pattern: decimals have none inline) or by reference
    to one of the three integer types (Timing.repeat.count is a `$ref` to positiveInt)."""
    if prop.get("type") == "number" and "pattern" in prop:
        return prop["pattern"] in _RANGES  # a decimal written out has a pattern too (valueDecimal)
    return _ref(prop) in _NAMED


def _range(prop: dict[str, Any]) -> tuple[int, str]:
    named = _ref(prop)
    if named in _NAMED:
        return _NAMED[named]
    pattern = prop.get("pattern") or prop.get("items", {}).get("pattern")
    return _RANGES.get(pattern, (-_MAX - 1, "integer"))


def _ref(prop: dict[str, Any]) -> str | None:
    ref = prop.get("$ref") or prop.get("items", {}).get("$ref")
    return ref.rsplit("/", 1)[-1] if ref else None


@functools.cache
def _shape(definition: str) -> tuple[dict[str, tuple[int, str]], dict[str, str]]:
    """(integer elements with their lowest value and type, complex children worth visiting)."""
    props = r4_schema()["definitions"].get(definition, {}).get("properties", {})
    integers = {n: _range(p) for n, p in props.items() if _is_integer(p) or _is_integer(p.get("items", {}))}
    children = {n: ref for n, p in props.items() if (ref := _ref(p)) and _may_hold_integers(ref)}
    return integers, children


@functools.cache
def _may_hold_integers(definition: str, _seen: frozenset[str] = frozenset()) -> bool:
    if definition == _RESOURCE:
        return True
    if definition in _seen:
        return False
    props = r4_schema()["definitions"].get(definition, {}).get("properties", {})
    seen = _seen | {definition}
    return any(_is_integer(p) or _is_integer(p.get("items", {})) or
               ((ref := _ref(p)) is not None and _may_hold_integers(ref, seen)) for p in props.values())


def range_problem(kind: str, value: int) -> str | None:
    """Why `value` cannot be a FHIR `kind` (integer, unsignedInt, positiveInt), or None.

    Examples:
        >>> range_problem("positiveInt", 0)
        '0 is outside the range of a FHIR positiveInt (1 to 2147483647)'
    """
    low = _NAMED[kind][0]
    return None if low <= value <= _MAX else f"{value} is outside the range of a FHIR {kind} ({low} to {_MAX})"


def integer_issues(rtype: str, resource: dict[str, Any]) -> Iterator[Issue]:
    """An issue per integer element written as a decimal.

    Examples:
        >>> [i.expression for i in integer_issues("Patient", {"multipleBirthInteger": decimal.Decimal("1.0")})]
        ['Patient.multipleBirthInteger']
    """
    yield from _walk(rtype, resource, rtype)


def _walk(definition: str, node: dict[str, Any], path: str) -> Iterator[Issue]:
    integers, children = _shape(definition)
    for name, value in node.items():
        items = value if isinstance(value, list) else [value]
        many = isinstance(value, list)
        for i, item in enumerate(items):
            where = f"{path}.{name}[{i}]" if many else f"{path}.{name}"
            if name in integers and isinstance(item, decimal.Decimal):
                yield Issue("value", f"{item} is not a FHIR integer: write it without a decimal point "
                            "or exponent", where)
            elif name in integers and isinstance(item, int) and not isinstance(item, bool) and \
                    (problem := range_problem(integers[name][1], item)):
                yield Issue("value", problem, where)
            elif name in children and isinstance(item, dict):
                child = children[name]
                if child == _RESOURCE:
                    named = item.get("resourceType")
                    child = named if isinstance(named, str) else ""
                if child:
                    yield from _walk(child, item, where)
