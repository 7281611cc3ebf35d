"""A site mapping's code maps as a FHIR R4 ConceptMap (https://hl7.org/fhir/R4/conceptmap.html).

The mapping spec stays the source of truth: the ConceptMap is built from its `map:` tables, one
ConceptMap per mapping (id = the mapping's name, version = its version) and a group per source
column and target system. A site's codes have no code system of their own, so each column gets
a stable canonical: `{base}/site-code/{site}/{column}` (the column as the spec names it,
percent-encoded: `性别` becomes `%E6%80%A7%E5%88%AB`). The targets are the codings the adapter
writes (the catalogue's, with `local` resolved to the protocol's or the catalogue's CodeSystem;
R4's own systems for gender and the AdverseEvent codes), `equivalent` unless the map's entry says
otherwise (`{to: intravenous, equivalence: narrower, comment: ...}`: site D's combined route). The arm map (ResearchSubject.assignedArm,
a string, not a code) is not a code map and is left out.

A value outside a map is rejected with its row today, so no group has `unmapped`: R4's modes
(provided, fixed, other-map) would each claim a fallback the mapping does not have.
"""
from __future__ import annotations

import functools
import json
import pathlib
import urllib.parse
from typing import Any

from adapter.mapping.catalogue import FIXED_SYSTEMS, Catalogue
from adapter.mapping.fields import map_target
from adapter.mapping.spec import _FLAT, CODE_TABLES, KINDS, MappingSpec

__all__ = ["concept_map", "code_maps", "source_system", "target_coding"]

_REQUIRED = pathlib.Path(__file__).resolve().parent.parent / "fhir" / "data" / "required-valuesets.json"


@functools.cache
def _r4_displays() -> dict[tuple[str, str], str]:
    """Displays of the R4 required-binding codes (gender, outcome), from the shipped expansions."""
    sets = json.loads(_REQUIRED.read_text(encoding="utf-8"))
    return {(c["system"], c["code"]): c["display"] for vs in sets.values() for c in vs.get("contains", [])
            if c.get("display")}


def source_system(spec: MappingSpec, column: str) -> str:
    """The canonical of a site column's codes (see the module's docstring)."""
    return f"{spec.catalogue.base}/site-code/{spec.site}/{urllib.parse.quote(column, safe='')}"


def target_coding(catalogue: Catalogue, table: str, key: str) -> dict[str, str]:
    """The coding the adapter writes for a catalogue key of a code table."""
    entry = catalogue.codes(table)[key]
    if table in FIXED_SYSTEMS:
        coding = {"system": FIXED_SYSTEMS[table], "code": str(entry)}
        display = _r4_displays().get((coding["system"], coding["code"]))
        return {**coding, "display": display} if display else coding
    return catalogue.coding(entry["code"] if isinstance(entry, dict) and "code" in entry
                            and isinstance(entry["code"], dict) else entry)


def code_maps(spec: MappingSpec) -> list[tuple[str, str, dict[str, Any]]]:
    """(column, catalogue table, {site code: map entry}) of every code map, in rule order; an
    entry is the catalogue key, or {to: key, equivalence, comment}."""
    found = []
    for rule in spec.data["rules"]:
        kind = next(k for k in KINDS if k in rule)
        body = rule if kind in _FLAT else rule[kind]
        for (table_kind, field), table in CODE_TABLES.items():
            expr = body.get(field) if table_kind == kind and isinstance(body, dict) else None
            if isinstance(expr, dict) and "map" in expr:
                found.append((str(expr["field"]), table, {str(k): v for k, v in expr["map"].items()}))
    return found


def concept_map(spec: MappingSpec) -> dict[str, Any]:
    """The ConceptMap of a mapping's code maps (no group when it has none)."""
    base, name = spec.catalogue.base, spec.name
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    columns = []
    for column, table, table_map in code_maps(spec):
        columns.append(f"{column} ({table})")
        for code, entry in table_map.items():
            target = target_coding(spec.catalogue, table, map_target(entry))
            group = groups.setdefault((source_system(spec, column), target["system"]), {
                "source": source_system(spec, column), "target": target["system"], "element": []})
            if any(e["code"] == code for e in group["element"]):
                continue  # the same column mapped by two rules: one element
            element_target = {"code": target["code"]}
            if target.get("display"):
                element_target["display"] = target["display"]
            # equivalent unless the spec says otherwise (a site code the catalogue has no key for)
            element_target["equivalence"] = entry.get("equivalence", "equivalent") if isinstance(entry, dict) \
                else "equivalent"
            if isinstance(entry, dict) and entry.get("comment"):
                element_target["comment"] = entry["comment"]
            group["element"].append({"code": code, "target": [element_target]})
    title = spec.data["mapping"].get("title", name)
    made: dict[str, Any] = {
        "resourceType": "ConceptMap", "id": name, "url": f"{base}/ConceptMap/{name}", "version": spec.version,
        "name": "".join(p[:1].upper() + p[1:] for p in name.replace("_", "-").split("-") if p),
        "title": f"{title}: code maps", "status": "active", "publisher": "fhir-adapter",
        "description": (
            f"The code maps of the site mapping {name} {spec.version} ({pathlib.Path(spec.path).name}) for "
            f"{spec.site}, built from the mapping spec, which stays their source: one group per source column "
            f"and target system; a column's source system is {base}/site-code/{spec.site}/{{column, "
            f"percent-encoded}}. Columns: {', '.join(columns) or 'none'}. A value outside a group's elements "
            "is not mapped to anything: the mapping rejects its cell (no unmapped fallback).")}
    if groups:
        made["group"] = list(groups.values())
    return made
