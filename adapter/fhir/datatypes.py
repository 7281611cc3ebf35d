"""The FHIR datatype of every element, from the official R4 JSON Schema (adapter/fhir/data): what
an exchange policy's `keep` keeps is decided by it. A `string` can hold anything a person typed;
a `code` cannot.

The schema names most elements' types (`$ref`); a primitive written inline (`Observation.valueString`,
an element with its codes listed) is known by its pattern, which each primitive has its own of
(`string` and `markdown` share one: both free text).
"""
from __future__ import annotations

import functools
from typing import Any

from adapter.fhir.definitions import r4_schema

__all__ = ["element_type", "required", "FREE_TEXT", "DATES", "QUANTITIES", "PRIMITIVES"]

# Types whose values are, or hold, what a person wrote or is: never let out by a policy's `keep`
# of a whole resource or element, only by a rule naming the very element (with its reason).
FREE_TEXT = frozenset({"string", "markdown", "xhtml", "base64Binary", "Annotation", "Attachment", "Signature",
                       "Narrative", "HumanName", "Address", "ContactPoint"})
DATES = frozenset({"date", "dateTime", "instant"})
QUANTITIES = frozenset({"Quantity", "Age", "Duration", "Count", "Distance", "SimpleQuantity", "MoneyQuantity"})


@functools.cache
def _definitions() -> dict[str, Any]:
    return r4_schema()["definitions"]  # type: ignore[no-any-return]


@functools.cache
def _by_pattern() -> dict[str, str]:
    found: dict[str, str] = {}
    for name, definition in _definitions().items():
        if name[:1].islower() and "pattern" in definition:
            found.setdefault(definition["pattern"], name)
    found[_definitions()["string"]["pattern"]] = "string"  # markdown's pattern too: both free text
    return found


PRIMITIVES = frozenset({"base64Binary", "boolean", "canonical", "code", "date", "dateTime", "decimal", "id", "instant",
                        "integer", "markdown", "oid", "positiveInt", "string", "time", "unsignedInt", "uri", "url",
                        "uuid", "xhtml"})


@functools.cache
def element_type(owner: str, key: str) -> str | None:
    """The type of `key` in `owner` (a resource type, a datatype, or a backbone element such as
    Observation_Component); None when the schema has no such element."""
    properties = _definitions().get(owner, {}).get("properties", {})
    prop = properties.get(key)
    if prop is None:
        return None
    node = prop.get("items", prop)
    if "$ref" in node:
        return str(node["$ref"]).rsplit("/", 1)[-1]
    if "enum" in node:
        return "code"
    if "pattern" in node:
        return _by_pattern().get(node["pattern"], "string")  # an unknown pattern: taken for text
    if node.get("type") == "boolean":
        return "boolean"
    if node.get("type") == "number":
        return "decimal"
    return "string" if node.get("type") == "string" else None


@functools.cache
def required(kind: str) -> tuple[str, ...]:
    """The elements R4's schema requires of `kind` (a resource type, a datatype, a backbone)."""
    return tuple(_definitions().get(kind, {}).get("required", ()))
