"""FHIR integers written as JSON integers: `1.0`, `1e2` and `0e0` are decimals, which the R4
integer pattern (`-?([0]|([1-9][0-9]*))`) refuses, though the R4B models and the JSON Schema
(whose patterns apply to strings only) let them pass as whole numbers.

Bodies are parsed with integers as `int` and every other number as `Decimal` (jsonio), so an
integer element holding a `Decimal` was written as a decimal. The walk follows the R4 schema's
definitions and visits only the branches that can hold an integer element.
"""
from __future__ import annotations

import decimal
import functools
from collections.abc import Iterator
from typing import Any

from adapter.fhir.definitions import r4_schema
from adapter.fhir.outcomes import Issue

__all__ = ["integer_issues"]

_RESOURCE = "ResourceList"


def _is_integer(prop: dict[str, Any]) -> bool:
    return prop.get("type") == "number" and "pattern" in prop  # decimals have no pattern


def _ref(prop: dict[str, Any]) -> str | None:
    ref = prop.get("$ref") or prop.get("items", {}).get("$ref")
    return ref.rsplit("/", 1)[-1] if ref else None


@functools.cache
def _shape(definition: str) -> tuple[frozenset[str], dict[str, str]]:
    """(integer elements, complex children worth visiting) of one definition."""
    props = r4_schema()["definitions"].get(definition, {}).get("properties", {})
    integers = frozenset(n for n, p in props.items() if _is_integer(p) or _is_integer(p.get("items", {})))
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


def integer_issues(rtype: str, resource: dict[str, Any]) -> Iterator[Issue]:
    """An issue per integer element written as a decimal.

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
            elif name in children and isinstance(item, dict):
                child = children[name]
                if child == _RESOURCE:
                    named = item.get("resourceType")
                    child = named if isinstance(named, str) else ""
                if child:
                    yield from _walk(child, item, where)
