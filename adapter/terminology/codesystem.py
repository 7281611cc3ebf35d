"""CodeSystem/$lookup, CodeSystem/$validate-code and CodeSystem/$subsumes
(https://hl7.org/fhir/R4/codesystem-operation-lookup.html, -validate-code.html, -subsumes.html),
over one CodeSystem resource the caller found (resolve.py).

An unknown code is a 404 for $lookup and $subsumes (there is nothing to answer about), and a
`result: false` for $validate-code (the question has an answer). A display that is neither the
concept's display nor one of its designations makes $validate-code answer false with a message,
as HAPI FHIR and the HL7 terminology server do: R4 leaves the choice to the server.
"""
from __future__ import annotations

from typing import Any

from adapter.fhir.outcomes import FhirError, Issue
from adapter.terminology.concepts import Concepts
from adapter.terminology.parameters import param, parameters, part

__all__ = ["lookup", "validate_code_in_system", "subsumes", "display_issue"]

_TOP_LEVEL = ("name", "version", "display")  # always answered: name and display are 1..1


def _held(index: Concepts) -> str:
    return "" if index.complete else \
        f" (this server holds only part of it: content {index.resource.get('content')})"


def _unknown(index: Concepts, code: str, expression: str) -> FhirError:
    return FhirError(404, [Issue("not-found", f"no code {code!r} in the CodeSystem {index.url}"
                                 + (f" version {index.version}" if index.version else "") + _held(index),
                                 expression)])


def _display(concept: dict[str, Any]) -> str:
    return str(concept.get("display") or concept["code"])


def display_issue(concept: dict[str, Any], display: str | None, system: str) -> str | None:
    """Why `display` is no display of the concept, or None when it is one (or none was given)."""
    if display is None:
        return None
    known = [concept.get("display")] + [d.get("value") for d in concept.get("designation") or []]
    if display in known:
        return None
    return (f"the display {display!r} is not a display of {system}#{concept['code']}: "
            f"it is {_display(concept)!r}")


def lookup(code_system: dict[str, Any], code: str, wanted: list[str], expression: str = "code") -> dict[str, Any]:
    """The concept's name, version, display, designations and properties. `wanted` (the
    `property` inputs) narrows the designations and properties to those named; empty: all."""
    index = Concepts.of(code_system)
    concept = index.get(code)
    if concept is None:
        raise _unknown(index, code, expression)
    asked = set(wanted)

    def shown(name: str) -> bool:
        return not asked or name in asked

    items: list[dict[str, Any] | None] = [
        param("name", "String", str(code_system.get("name") or code_system.get("title") or index.url)),
        param("version", "String", index.version) if index.version else None,
        param("display", "String", _display(concept)),
    ]
    if shown("designation"):
        for designation in concept.get("designation") or []:
            parts = [param("value", "String", designation.get("value", ""))]
            if designation.get("use"):
                parts.insert(0, param("use", "Coding", designation["use"]))
            if designation.get("language"):
                parts.insert(0, param("language", "Code", designation["language"]))
            items.append(part("designation", parts))
    if concept.get("definition") and shown("definition"):
        items.append(part("property", [param("code", "Code", "definition"),
                                       param("value", "String", concept["definition"])]))
    descriptions = {p.get("code"): p.get("description") for p in code_system.get("property") or []}
    for name, kind, value in index.properties(index.code(code) or code):
        if shown(name) and name not in _TOP_LEVEL:
            parts = [param("code", "Code", name), param("value", kind, value)]
            if descriptions.get(name):
                parts.append(param("description", "String", descriptions[name]))
            items.append(part("property", parts))
    return parameters(items)


def _validate_one(index: Concepts, coding: dict[str, Any], abstract: bool | None) -> tuple[bool, str | None, str | None]:
    if coding.get("system") not in (None, index.url):
        return False, f"{coding['system']}#{coding['code']} is not of the code system {index.url}", None
    if coding.get("version") and index.version and coding["version"] != index.version:
        return False, (f"the CodeSystem {index.url} held here is version {index.version}, "
                       f"not {coding['version']}"), None
    concept = index.get(coding["code"])
    if concept is None:
        return False, f"unknown code {coding['code']!r} in the CodeSystem {index.url}{_held(index)}", None
    if abstract is False and index.abstract(concept["code"]):
        return False, f"{index.url}#{concept['code']} is abstract: not for use where abstract=false", _display(concept)
    problem = display_issue(concept, coding.get("display"), index.url)
    return problem is None, problem, _display(concept)


def validate_code_in_system(code_system: dict[str, Any], codings: list[dict[str, Any]],
                            abstract: bool | None = None) -> tuple[bool, str | None, str | None]:
    """(result, message, display): whether the system defines the code of any of `codings` (a
    CodeableConcept's), with a display that is one of it (and not abstract when `abstract` is
    false); the messages of the others are kept."""
    index = Concepts.of(code_system)
    results = [_validate_one(index, c, abstract) for c in codings]
    valid = next((r for r in results if r[0]), None)
    if valid is not None:
        return valid
    return False, "; ".join(r[1] for r in results if r[1]) or None, next((r[2] for r in results if r[2]), None)


def subsumes(code_system: dict[str, Any], code_a: str, code_b: str,
             expressions: tuple[str, str] = ("codeA", "codeB")) -> dict[str, Any]:
    """equivalent | subsumes | subsumed-by | not-subsumed, from the concept hierarchy."""
    index = Concepts.of(code_system)
    a, b = index.code(code_a), index.code(code_b)
    if a is None:
        raise _unknown(index, code_a, expressions[0])
    if b is None:
        raise _unknown(index, code_b, expressions[1])
    if a == b:
        outcome = "equivalent"
    elif b in index.descendants(a):
        outcome = "subsumes"
    elif a in index.descendants(b):
        outcome = "subsumed-by"
    else:
        outcome = "not-subsumed"
    return parameters([param("outcome", "Code", outcome)])
