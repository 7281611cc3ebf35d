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

import pathlib
import urllib.parse
from typing import Any

from adapter.fhir.ids import computable_name
from adapter.mapping.catalogue import FIXED_SYSTEMS, Catalogue
from adapter.mapping.fields import map_targets
from adapter.mapping.rules import CODE_TABLES
from adapter.mapping.spec import MappingSpec
from adapter.terminology.core import core_code_system

__all__ = ["concept_map", "code_maps", "source_system", "target_coding"]

def source_system(spec: MappingSpec, column: str) -> str:
    """The canonical of a site column's codes (see the module's docstring)."""
    return f"{spec.catalogue.base}/site-code/{spec.site}/{urllib.parse.quote(column, safe='')}"


def target_coding(catalogue: Catalogue, table: str, key: str) -> dict[str, str]:
    """The coding the adapter writes for a catalogue key of a code table."""
    entry = catalogue.codes(table)[key]
    if table in FIXED_SYSTEMS:
        coding = {"system": FIXED_SYSTEMS[table], "code": str(entry)}
        known = core_code_system(coding["system"])  # R4's displays, from the shipped value sets
        display = next((c.get("display") for c in (known or {}).get("concept", []) if c["code"] == coding["code"]), None)
        return {**coding, "display": display} if display else coding
    return catalogue.coding(entry["code"] if isinstance(entry, dict) and "code" in entry
                            and isinstance(entry["code"], dict) else entry)


def code_maps(spec: MappingSpec) -> list[tuple[str, str, dict[str, Any]]]:
    """(column, catalogue table, {site code: map entry}) of every code map, in rule order; an
    entry is the catalogue key, or {to: key, equivalence, comment}."""
    found = []
    for rule in spec.rules:
        for (table_kind, field), table in CODE_TABLES.items():
            expr = rule.fields.get(field) if table_kind == rule.kind else None
            if isinstance(expr, dict) and "map" in expr:
                found.append((str(expr["field"]), table, {str(k): v for k, v in expr["map"].items()}))
    return found


def _element_target(target: dict[str, str], entry: Any) -> dict[str, Any]:
    """A map entry's target: the coding, `equivalent` unless the entry says otherwise, and its
    comment (R4 asks one of narrower and inexact)."""
    said = entry if isinstance(entry, dict) else {
        "equivalence": "narrower", "comment": f"one of the {len(entry)} routes of a combined session: one "
        f"Procedure each ({' + '.join(entry)})"} if isinstance(entry, list) else {}
    made = {"code": target["code"], **({"display": target["display"]} if target.get("display") else {}),
            "equivalence": said.get("equivalence", "equivalent")}
    return made | ({"comment": said["comment"]} if said.get("comment") else {})


def concept_map(spec: MappingSpec) -> dict[str, Any]:
    """The ConceptMap of a mapping's code maps (no group when it has none)."""
    base, name = spec.catalogue.base, spec.name
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    columns: dict[str, None] = {}  # in order, each once (a column two rules map is one)
    for column, table, table_map in code_maps(spec):
        columns[f"{column} ({table})"] = None
        source = source_system(spec, column)
        for code, entry in table_map.items():
            for key in map_targets(entry):  # several: one resource each (a combined session's routes)
                target = target_coding(spec.catalogue, table, key)
                group = groups.setdefault((source, target["system"]), {"source": source, "target": target["system"],
                                                                       "element": []})
                mapped = _element_target(target, entry)
                element = next((e for e in group["element"] if e["code"] == code), None)
                if element is None:
                    group["element"].append({"code": code, "target": [mapped]})
                elif mapped not in element["target"]:  # two rules (two visits, say) map the code apart: both
                    element["target"].append(mapped)
    title = spec.data["mapping"].get("title", name)
    made: dict[str, Any] = {
        "resourceType": "ConceptMap", "id": name, "url": f"{base}/ConceptMap/{name}", "version": spec.version,
        "name": computable_name(name),
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
