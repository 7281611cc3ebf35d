"""Free text in what left a site, found by datatype: the check before anything leaves (check.py)
and the centre's verification of what arrives (arrival.py) both look for it, whatever the
site's policy said, so that a site whose policy or software lets a string through is caught.

A `string`, `markdown`, Annotation, Attachment, Signature or Narrative anywhere, a Reference's
display, a CodeableConcept's text, and an extension the policy does not list: each a finding,
unless the policy keeps that very element by a rule with its reason.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from adapter.exchange.anonymity import AGE_AT_ENROLMENT
from adapter.fhir.datatypes import FREE_TEXT, QUANTITIES
from adapter.exchange.scrub import WITHHELD, typed

__all__ = ["free_text_findings"]

# Strings by type that no person writes into: a code system's version, an identifier's value (a
# pseudonym, or a lot number the policy names: the identifier scan checks those), a coding's
# display (the scrubber keeps only the code system's own).
_STRUCTURAL = frozenset({("Coding", "version"), ("Coding", "display"), ("Identifier", "value"),
                         ("Meta", "versionId"), ("Meta", "source"), ("Reference", "reference")})


def free_text_findings(resource: dict[str, Any], extensions: frozenset[str],
                       allowed: frozenset[str] = frozenset()) -> Iterator[tuple[str, str]]:
    """(element path, what it is) of each piece of free text; `allowed`: element paths a rule
    keeps on purpose (Type.element...), `extensions`: the urls that may leave."""
    rtype = str(resource.get("resourceType", ""))
    yield from _walk(resource, rtype, rtype, rtype, extensions, allowed)


def _walk(node: Any, kind: str, where: str, rule_path: str, extensions: frozenset[str],
          allowed: frozenset[str]) -> Iterator[tuple[str, str]]:
    if isinstance(node, list):
        for i, item in enumerate(node):
            yield from _walk(item, kind, f"{where}[{i}]", rule_path, extensions, allowed)
        return
    if rule_path in allowed:
        return
    if kind in FREE_TEXT and node != WITHHELD:
        yield where, f"free text ({kind})"
        return
    if not isinstance(node, dict):
        return
    if kind in ("Resource", "ResourceList") and isinstance(node.get("resourceType"), str):
        kind = node["resourceType"]
    if kind == "Extension" and node.get("url") not in extensions and node.get("url") != AGE_AT_ENROLMENT:
        yield where, f"an extension the policy does not let out ({node.get('url')})"
        return
    for key, value in node.items():
        if (kind, key) in _STRUCTURAL or (kind in QUANTITIES and key == "unit" and value == node.get("code")):
            continue  # a string by type, but no one's words: a version, a pseudonym, a unit's code
        if key in ("display", "text") and value == WITHHELD:
            continue
        if key == "display" and kind == "Reference":
            yield f"{where}.display", "a reference's display (a name, often)"
        elif key == "text" and kind == "CodeableConcept":
            yield f"{where}.text", "a concept's text (what someone typed)"
        elif not key.startswith("_"):
            inner = typed(kind, key)
            if inner is not None:
                yield from _walk(value, inner, f"{where}.{key}", f"{rule_path}.{key}", extensions, allowed)
