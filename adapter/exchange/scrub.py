"""What a policy's `keep` keeps of an element, decided by its FHIR datatype (datatypes.py), at
any depth: codes, numbers, booleans, identifiers (as pseudonyms), references (without their
display), quantities (their unit only as its code), codings (their display only when it is the
code system's own), and dates, shifted by the child's offset. Free text never: `string`,
`markdown`, Annotation, Attachment, Signature, Narrative, a Reference's display, a
CodeableConcept's text, a name, an address or a contact point, and no extension the policy does
not name. Whatever a mapping or a site's user writes later into a kept resource cannot leave by
omission: a new element is judged by its type.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from adapter.fhir.datatypes import DATES, FREE_TEXT, PRIMITIVES, QUANTITIES, element_type, required

__all__ = ["Scrubbing", "scrub", "typed", "fill_required", "WITHHELD"]

# What stands in for an element R4 requires whose content was free text (a Provenance agent's
# `who` that only had a display): the resource stays valid, and says nothing.
WITHHELD = "withheld under the exchange policy"

_QUANTITY_PARTS = ("value", "comparator", "system", "code")


@dataclass(frozen=True)
class Scrubbing:
    """What scrubbing needs to know of the site and the child: how to shift a date, what an
    identifier becomes, the code systems' own displays, the extensions the policy keeps."""

    shift: Callable[[str], str | None]
    identifier: Callable[[dict[str, Any]], dict[str, Any] | None]
    known_display: Callable[[str, str], str | None]
    extensions: frozenset[str]


def typed(owner: str, key: str) -> str | None:
    """The datatype of `key` in `owner`; a key of a primitive's extension (`_birthDate`) is its
    own kind, dropped: it holds extensions and ids, never the value."""
    if key.startswith("_"):
        return None
    return element_type(owner, key)


def scrub(value: Any, kind: str | None, ctx: Scrubbing) -> Any:
    """`value`, of datatype `kind`, as it may leave (None: not at all)."""
    if kind is None or kind in FREE_TEXT or kind in ("Resource", "ResourceList"):
        return None
    if isinstance(value, list):
        items = [scrub(item, kind, ctx) for item in value]
        return [i for i in items if i not in (None, {}, [])] or None
    if kind in DATES:
        return ctx.shift(value) if isinstance(value, str) else None
    if kind in PRIMITIVES:
        return value if not isinstance(value, (dict, list)) else None
    if not isinstance(value, dict):
        return None
    special = _SPECIAL.get(kind)
    if special is not None:
        return special(value, ctx)
    return _walk(value, kind, ctx)


def _walk(value: dict[str, Any], kind: str, ctx: Scrubbing) -> dict[str, Any] | None:
    out = {}
    for key, item in value.items():
        kept = scrub(item, typed(kind, key), ctx)
        if kept not in (None, {}, []):
            out[key] = kept
    return fill_required(kind, value, out) or None


def fill_required(kind: str, source: dict[str, Any], out: dict[str, Any]) -> dict[str, Any]:
    """`out`, with what R4 requires of `kind` and `source` had but scrubbing took (free text)
    standing as WITHHELD, so that what leaves stays valid."""
    for key in required(kind):
        if key in out or key not in source or key == "resourceType":
            continue
        inner = element_type(kind, key)
        stand_in: Any = {"Reference": {"display": WITHHELD}, "CodeableConcept": {"text": WITHHELD}}.get(
            inner or "", WITHHELD if inner in ("string", "markdown") else None)
        if stand_in is not None:
            out[key] = [stand_in] if isinstance(source[key], list) else stand_in
    return out


def _coding(value: dict[str, Any], ctx: Scrubbing) -> dict[str, Any] | None:
    out = {k: value[k] for k in ("system", "version", "code", "userSelected") if k in value}
    display = value.get("display")
    system, code = value.get("system"), value.get("code")
    if isinstance(display, str) and isinstance(system, str) and isinstance(code, str) \
            and ctx.known_display(system, code) == display:
        out["display"] = display
    return out or None


def _codeable(value: dict[str, Any], ctx: Scrubbing) -> dict[str, Any] | None:
    codings = value.get("coding")
    kept = [c for c in (_coding(c, ctx) for c in codings if isinstance(c, dict)) if c] \
        if isinstance(codings, list) else []
    return {"coding": kept} if kept else None


def _reference(value: dict[str, Any], ctx: Scrubbing) -> dict[str, Any] | None:
    out: dict[str, Any] = {k: value[k] for k in ("reference", "type") if isinstance(value.get(k), str)}
    if isinstance(value.get("identifier"), dict):
        identifier = ctx.identifier(value["identifier"])
        if identifier:
            out["identifier"] = identifier
    return out or None


def _identifier(value: dict[str, Any], ctx: Scrubbing) -> dict[str, Any] | None:
    return ctx.identifier(value)


def _quantity(value: dict[str, Any], ctx: Scrubbing) -> dict[str, Any] | None:
    out = {k: value[k] for k in _QUANTITY_PARTS if k in value and not isinstance(value[k], (dict, list))}
    if isinstance(value.get("unit"), str) and value.get("unit") == value.get("code"):
        out["unit"] = value["unit"]  # the unit as its code says it: no one's words
    return out or None


def _extension(value: dict[str, Any], ctx: Scrubbing) -> dict[str, Any] | None:
    url = value.get("url")
    if not isinstance(url, str) or url not in ctx.extensions:
        return None
    kept = _walk({k: v for k, v in value.items() if k != "url"}, "Extension", ctx)
    return {"url": url, **(kept or {})} if kept else None


def _meta(value: dict[str, Any], ctx: Scrubbing) -> dict[str, Any] | None:
    """meta.lastUpdated stays true, unshifted: Bulk Data's `_since` is made of it, and it says
    when the site's store wrote the resource, not when anything happened to the child."""
    out = _walk({k: v for k, v in value.items() if k != "lastUpdated"}, "Meta", ctx) or {}
    if isinstance(value.get("lastUpdated"), str):
        out["lastUpdated"] = value["lastUpdated"]
    return out or None


_SPECIAL: dict[str, Callable[[dict[str, Any], Scrubbing], dict[str, Any] | None]] = {
    "Coding": _coding, "CodeableConcept": _codeable, "Reference": _reference, "Identifier": _identifier,
    "Extension": _extension, "Meta": _meta, **{q: _quantity for q in QUANTITIES},
}
