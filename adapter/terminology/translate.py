"""ConceptMap/$translate (https://hl7.org/fhir/R4/conceptmap-operation-translate.html) over the
ConceptMaps the repository holds: the one named (url or instance), or every one whose groups
map from the code's system (to it, in reverse), held to `source`, `target` and `targetsystem`.

A code no element of a group maps takes the group's `unmapped` policy
(https://hl7.org/fhir/R4/conceptmap-definitions.html#ConceptMap.group.unmapped): `provided`
maps it to the same code in the target system (equivalence `equal`), `fixed` to the code the
map gives (equivalence `wider`: a catch-all is broader than what it catches), and `other-map`
to what the named ConceptMap says, followed once per map (a cycle ends there). In reverse the
map is read from target to source, equivalences turned round (wider/narrower,
subsumes/specializes), and `unmapped` does not apply: it speaks of source codes only.
`dependsOn` and `product` are not evaluated (the `dependency` input is refused as not supported).
A `version` of the code's system leaves out the groups that map another version of it
(sourceVersion; targetVersion in reverse); a group that names none maps every version.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from adapter.fhir import jsonio
from adapter.fhir.outcomes import bad_request
from adapter.fhir.search import parse_search
from adapter.store.repository import Repository
from adapter.terminology.parameters import coding, param, parameters, part
from adapter.terminology.resolve import find, resolve, split_canonical

__all__ = ["concept_maps", "translate"]

_MAPS = 100  # ConceptMaps looked at when none is named
_REVERSED = {"wider": "narrower", "narrower": "wider", "subsumes": "specializes", "specializes": "subsumes"}
_NO_MATCH = ("unmatched", "disjoint")


def _canonicals(cmap: dict[str, Any], side: str) -> set[str]:
    return {split_canonical(cmap[k], None)[0] for k in (f"{side}Uri", f"{side}Canonical") if isinstance(cmap.get(k), str)}


def concept_maps(repo: Repository, rid: str | None, url: str | None, version: str | None, system: str | None,
                 source: str | None, target: str | None, reverse: bool) -> list[dict[str, Any]]:
    """The maps to translate with: the one named, else the stored ones from (to) `system`."""
    if rid is not None or url:
        return [resolve(repo, "ConceptMap", rid, url, version)]
    if not system:
        raise bad_request("say which ConceptMap (url, or ConceptMap/[id]/$translate) or give the code's "
                          "system, to find the maps from it", "system", code="required")
    page = repo.search(parse_search("ConceptMap", [("target-system" if reverse else "source-system", system),
                                                   ("_count", str(_MAPS))]))
    maps = [jsonio.parse(e.data) for e in page.entries if e.data]
    return [m for m in maps if (not source or source in _canonicals(m, "source"))
            and (not target or target in _canonicals(m, "target"))]


def _match(equivalence: str, concept: dict[str, Any], map_url: str) -> dict[str, Any]:
    return part("match", [param("equivalence", "Code", equivalence), param("concept", "Coding", concept),
                          param("source", "Uri", map_url)])


def _other_version(group: dict[str, Any], side: str, version: str | None) -> bool:
    """Whether the group maps another version of the code's system than the one given."""
    held = group.get(f"{side}Version")
    return bool(version and held and held != version)


def _forward(repo: Repository, cmap: dict[str, Any], system: str | None, code: str, target_system: str | None,
             seen: frozenset[str], notes: list[str], version: str | None = None) -> list[dict[str, Any]]:
    url = str(cmap.get("url", ""))
    found: list[dict[str, Any]] = []
    for group in cmap.get("group") or []:
        source, target = group.get("source"), group.get("target")
        if (system and source != system) or (target_system and target != target_system) \
                or _other_version(group, "source", version):
            continue
        elements = [e for e in group.get("element") or [] if e.get("code") == code]
        for element in elements:
            for t in element.get("target") or []:
                if t.get("code"):
                    found.append(_match(t.get("equivalence", "equivalent"), coding(target, t["code"], t.get("display")), url))
                else:  # a target without a code says the code has no counterpart
                    found.append(part("match", [param("equivalence", "Code", t.get("equivalence", "unmatched")),
                                                param("source", "Uri", url)]))
        unmapped = group.get("unmapped")
        if elements or not isinstance(unmapped, dict):
            continue
        mode = unmapped.get("mode")
        if mode == "provided":
            found.append(_match("equal", coding(target, code), url))
        elif mode == "fixed" and unmapped.get("code"):
            found.append(_match("wider", coding(target, unmapped["code"], unmapped.get("display")), url))
        elif mode == "other-map" and unmapped.get("url"):
            other_url = split_canonical(str(unmapped["url"]), None)[0]
            other = None if other_url in seen else find(repo, "ConceptMap", unmapped["url"])
            if other_url in seen:
                notes.append(f"{url} sends unmapped codes to {other_url}, already followed: a cycle, not followed again")
            elif other is None:
                notes.append(f"{url} sends unmapped codes to {other_url}, which is not on this server")
            else:
                found += _forward(repo, other, system, code, target_system, seen | {other_url}, notes, version)
    return found


def _backward(cmap: dict[str, Any], system: str | None, code: str, target_system: str | None,
              version: str | None = None) -> list[dict[str, Any]]:
    url = str(cmap.get("url", ""))
    found = []
    for group in cmap.get("group") or []:
        source, target = group.get("source"), group.get("target")
        if (system and target != system) or (target_system and source != target_system) \
                or _other_version(group, "target", version):
            continue
        for element in group.get("element") or []:
            for t in element.get("target") or []:
                if t.get("code") == code and element.get("code"):
                    equivalence = t.get("equivalence", "equivalent")
                    found.append(_match(_REVERSED.get(equivalence, equivalence),
                                        coding(source, element["code"], element.get("display")), url))
    return found


def translate(repo: Repository, maps_for: Callable[[str | None], list[dict[str, Any]]],
              codings: list[dict[str, Any]], target_system: str | None = None, reverse: bool = False) -> dict[str, Any]:
    """result (any match that is not unmatched or disjoint), message, and every match, of one
    or more codings (a CodeableConcept's), each through the maps `maps_for` its system gives."""
    notes: list[str] = []
    found: list[dict[str, Any]] = []
    for given in codings:
        system, code, version = given.get("system"), given["code"], given.get("version")
        maps = maps_for(system)
        these: list[dict[str, Any]] = []
        for cmap in maps:
            if reverse:
                these += _backward(cmap, system, code, target_system, version)
            else:
                these += _forward(repo, cmap, system, code, target_system,
                                  frozenset({split_canonical(str(cmap.get("url", "")), None)[0]}), notes, version)
        if not any(p["part"][0]["valueCode"] not in _NO_MATCH for p in these):
            where = f"{system}#{code}" if system else code
            notes.insert(0, f"no mapping of {where}" + (" (in reverse)" if reverse else "")
                         + f" in {', '.join(str(m.get('url')) for m in maps) or 'any ConceptMap on this server'}")
        found += these
    result = any(p["part"][0]["valueCode"] not in _NO_MATCH for p in found)
    return parameters([param("result", "Boolean", result),
                       param("message", "String", "; ".join(notes)) if notes else None, *found])
