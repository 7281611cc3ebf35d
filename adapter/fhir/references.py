"""The literal references of a resource (https://hl7.org/fhir/R4/references.html#literal), each
with the FHIRPath of its element, and which of them name a resource this server must hold.

References are found through the R4 schema, not by their shape: `Expression.reference` is a
uri, and a `reference` key in an extension's value is a Reference only where R4 says so.
"""
from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from adapter.fhir.definitions import SERVED_TYPES, r4_schema, resource_types

__all__ = ["Target", "Invalid", "reference_elements", "targets", "service_base"]

# The service base of the request being served (a function: most requests never need it), so
# that an absolute URL on this server is checked like the relative reference it stands for.
service_base: ContextVar[Callable[[], str] | None] = ContextVar("service_base", default=None)

_RELATIVE = re.compile(r"([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/([A-Za-z0-9\-.]{1,64}))?")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")


@dataclass(frozen=True)
class Target:
    """A reference to a resource of a served type: it must exist here."""

    expression: str  # e.g. Observation.subject.reference
    reference: str
    type: str
    id: str
    version: int | None


@dataclass(frozen=True)
class Invalid:
    expression: str
    reference: str
    reason: str


def _target(prop: dict[str, Any]) -> str | None:
    ref = prop.get("items", prop).get("$ref", "")
    return ref.rsplit("/", 1)[-1] or None


@functools.cache
def _children(definition: str) -> tuple[tuple[str, str], ...]:
    """(property, type) of a definition's properties that may hold a Reference somewhere."""
    return tuple((name, kind) for name, prop in r4_schema()["definitions"].get(definition, {})
                 .get("properties", {}).items()
                 if (kind := _target(prop)) and _may_hold(kind))


@functools.cache
def _child_kinds(definition: str) -> dict[str, tuple[int, str]]:
    """_children by property name: (its place among them, its type)."""
    return {name: (i, kind) for i, (name, kind) in enumerate(_children(definition))}


@functools.cache
def _holders() -> frozenset[str]:
    """Definitions from which a Reference can be reached (a fixed point over the schema)."""
    defs = r4_schema()["definitions"]
    edges = {name: {kind for prop in d.get("properties", {}).values() if (kind := _target(prop))}
             for name, d in defs.items()}
    holders, grown = {"Reference", "ResourceList"}, True
    while grown:
        grown = False
        for name, kinds in edges.items():
            if name not in holders and kinds & holders:
                holders.add(name)
                grown = True
    return frozenset(holders)


def _may_hold(definition: str) -> bool:
    return definition in _holders()


def reference_elements(resource: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(FHIRPath, value) of every Reference.reference in a resource, contained ones included.

    Examples:
        >>> sorted(reference_elements({"resourceType": "Observation", "subject": {"reference": "Patient/1"},
        ...        "performer": [{"display": "x"}, {"reference": "Practitioner/2"}]}))
        [('Observation.performer[1].reference', 'Practitioner/2'), ('Observation.subject.reference', 'Patient/1')]
    """
    yield from _walk(resource, str(resource.get("resourceType")), str(resource.get("resourceType")))


def _walk(node: Any, definition: str, path: str) -> Iterator[tuple[str, str]]:
    if not isinstance(node, dict):
        return
    if definition == "ResourceList":  # a contained resource: its own type's elements
        definition = str(node.get("resourceType"))
    if definition == "Reference" and isinstance(node.get("reference"), str):
        yield f"{path}.reference", node["reference"]
    kinds = _child_kinds(definition)
    present = [name for name in node if name in kinds]  # the node's few elements, not all its definition's
    if len(present) > 1:
        present.sort(key=lambda name: kinds[name][0])  # in the definition's order, as before
    for name in present:
        kind, value = kinds[name][1], node[name]
        if isinstance(value, list):
            for i, item in enumerate(value):
                yield from _walk(item, kind, f"{path}.{name}[{i}]")
        elif value is not None:
            yield from _walk(value, kind, f"{path}.{name}")


def targets(resource: dict[str, Any]) -> tuple[list[Target], list[Invalid]]:
    """The references that must resolve here, and those that are no valid reference at all.

    Not checked: `#contained`, `urn:uuid:`/`urn:oid:` (a transaction has rewritten its own),
    absolute URLs of other servers, and types R4 has but this server does not serve.
    """
    found, invalid = [], []
    base = service_base.get()
    for expression, value in reference_elements(resource):
        relative = value
        if value.startswith("#"):
            continue
        if _SCHEME.match(value):
            own = base() + "/" if base is not None else None
            if own is None or not value.startswith(own):
                continue
            relative = value[len(own):]
        match = _RELATIVE.fullmatch(relative)
        if match is None or match.group(1) not in resource_types():
            invalid.append(Invalid(expression, value, f"{value!r} is not a valid reference: expected Type/id "
                                   "with an R4 resource type, an absolute URL, #id or urn:uuid:"))
            continue
        rtype, rid, version = match.groups()
        if rtype in SERVED_TYPES:
            found.append(Target(expression, value, rtype, rid, int(version) if version and version.isdigit()
                                else None if version is None else -1))
    return found, invalid
