"""The clinical catalogue (mappings/sites/catalogue.yaml): the codes, units and checks that
site mappings map into, with `local` codes resolved against the protocol's own CodeSystem, or,
for codes the protocol does not define, against the catalogue's own (its `local_codes`, body
sites, codes given with a display, and the item codes of its instruments): a concept a site
needs is added in this one file."""
from __future__ import annotations

import functools
import pathlib
from dataclasses import dataclass, field
from typing import Any

from adapter.fhir.units import UnitError, check_unit
from adapter.mapping.reference import load_reference
from adapter.protocol.spec import LOCAL, load_spec
from adapter.yamlspec import Lines, SpecError, load_checked, package_schema

__all__ = ["Catalogue", "load_catalogue", "catalogue_resources", "item_code", "items_code", "FIXED_SYSTEMS"]

_HL7 = "http://terminology.hl7.org/CodeSystem/"
# Code tables whose entries are bare codes of one R4 code system: the resources are written with
# these systems (resources.py) and the ConceptMaps name them as targets (concept_maps.py).
FIXED_SYSTEMS = {"gender": "http://hl7.org/fhir/administrative-gender",
                 "seriousness": _HL7 + "adverse-event-seriousness",
                 "causality": _HL7 + "adverse-event-causality-assess",
                 "outcome": _HL7 + "adverse-event-outcome"}


@dataclass(frozen=True)
class Catalogue:
    path: str
    data: dict[str, Any]
    local_system: str
    local_codes: dict[str, str]  # code -> display, from the protocol spec
    activities: dict[str, str]  # activity key -> ActivityDefinition canonical (url|version)
    lines: Lines
    own_codes: dict[str, str] = field(default_factory=dict)  # code -> display, the catalogue's own
    version: str = "1.0.0"  # the protocol's: the catalogue's CodeSystem goes with it

    @property
    def own_system(self) -> str:
        return f"{self.base}/CodeSystem/{self.study}-catalogue"
    arms: tuple[str, ...] = ()  # the protocol's arm keys (ResearchSubject.assignedArm)
    sites: dict[str, str] = field(default_factory=dict)  # the protocol's site codes -> Organization name
    # one site's own local codes (its mapping's catalogue_extension, site_local.py), and the site
    site_codes: dict[str, str] = field(default_factory=dict)
    site: str = ""

    @property
    def site_system(self) -> str:
        return f"{self.base}/CodeSystem/{self.study}-{self.site}-local"

    @property
    def base(self) -> str:
        return str(self.data["catalogue"]["base"])

    @property
    def study(self) -> str:
        return str(self.data["catalogue"]["study"])

    def observation(self, key: str) -> dict[str, Any]:
        return self.data["observations"][key]  # type: ignore[no-any-return]

    def codes(self, table: str) -> dict[str, Any]:
        return self.data["codes"][table]  # type: ignore[no-any-return]

    def coding(self, coding: dict[str, Any]) -> dict[str, Any]:
        """A catalogue coding as FHIR: `local` becomes the protocol CodeSystem (or the catalogue's
        own, for a code the protocol does not define), with its display."""
        if coding["system"] != LOCAL:
            return dict(coding)
        code = coding["code"]
        if code in self.local_codes:
            return {"system": self.local_system, "code": code, "display": coding.get("display") or self.local_codes[code]}
        if code not in self.own_codes and code in self.site_codes:  # a site's own concept (site_local.py)
            return {"system": self.site_system, "code": code, "display": coding.get("display") or self.site_codes[code]}
        return {"system": self.own_system, "code": code, "display": coding.get("display") or self.own_codes[code]}

    def instrument(self, key: str) -> dict[str, Any]:
        return self.data["instruments"][key]  # type: ignore[no-any-return]

    def item_numbers(self, key: str) -> range:
        """The item numbers of an instrument (GMFM-88: 1-88); none for an unknown one."""
        spans = self.data.get("instruments", {}).get(key, {}).get("dimensions", {}).values()
        return range(1, max((last for _, last in spans), default=0) + 1)


def item_code(instrument: str, n: int) -> str:
    return f"{instrument}-item-{n}"


def items_code(dimension: str) -> str:
    """The code of the Observation that keeps a dimension's item scores."""
    return f"{dimension}-items"


def _own_codes(data: dict[str, Any], protocol: dict[str, str]) -> dict[str, str]:
    """The local codes the catalogue defines itself, with their displays."""
    own = dict(data.get("local_codes", {}))
    own.update({k: text for k, text in data["body_sites"].items() if k not in protocol})
    for obs in data["observations"].values():
        code = obs["code"]
        if code["system"] == LOCAL and code["code"] not in protocol and "display" in code:
            own.setdefault(code["code"], code["display"])
    for key, instrument in data.get("instruments", {}).items():
        last = max(span[1] for span in instrument["dimensions"].values())
        own.update({item_code(key, n): f"{instrument['title']} item {n}" for n in range(1, last + 1)})
        for dimension in instrument["dimensions"]:
            named = data["observations"].get(dimension, {}).get("code", {}).get("display") or protocol.get(dimension)
            own[items_code(dimension)] = f"{(named or dimension).replace(' (%)', '')}: item scores"
    return {k: v for k, v in own.items() if k not in protocol}


def catalogue_resources(catalogue: Catalogue) -> list[dict[str, Any]]:
    """The catalogue's own CodeSystem (and its ValueSet), written with every ingest so that the
    codes the data carries are served."""
    cid = f"{catalogue.study}-catalogue"
    common = {"version": catalogue.version, "status": "active", "name": "".join(
        part.capitalize() for part in cid.split("-")), "publisher": "fhir-adapter"}
    site: list[dict[str, Any]] = []
    if catalogue.site_codes:  # one site's own concepts: a CodeSystem of the site, not the shared one
        sid = f"{catalogue.study}-{catalogue.site}-local"
        site = [{"resourceType": "CodeSystem", "id": sid, "url": catalogue.site_system, **common,
                 "name": "".join(part.capitalize() for part in sid.split("-")),
                 "title": f"Local codes of site {catalogue.site}'s mapping", "content": "complete",
                 "caseSensitive": True, "concept": [{"code": code, "display": display}
                                                    for code, display in catalogue.site_codes.items()]}]
    return [*site,
        {"resourceType": "CodeSystem", "id": cid, "url": catalogue.own_system, **common,
         "title": "Local codes of the site mapping catalogue", "content": "complete", "caseSensitive": True,
         "valueSet": f"{catalogue.base}/ValueSet/{cid}",
         "concept": [{"code": code, "display": display} for code, display in catalogue.own_codes.items()]},
        {"resourceType": "ValueSet", "id": cid, "url": f"{catalogue.base}/ValueSet/{cid}", **common,
         "title": "All local codes of the site mapping catalogue",
         "compose": {"include": [{"system": catalogue.own_system, "version": catalogue.version}]}}]


def _codings(data: dict[str, Any]) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    found: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    for key, obs in data["observations"].items():
        found.append((("observations", key, "code"), obs["code"]))
        found += [(("observations", key, "codes", k), c) for k, c in obs.get("codes", {}).items()]
        found += [(("observations", key, "components", k, "code"), c["code"])
                  for k, c in obs.get("components", {}).items()]
    for table in ("cp-type", "gmfcs", "adverse-event"):
        found += [(("codes", table, k), c) for k, c in data["codes"][table].items()]
    found += [(("codes", "route", k, "code"), r["code"]) for k, r in data["codes"]["route"].items()]
    found += [(("body_sites", k), {"system": LOCAL, "code": k}) for k in data["body_sites"]]
    return found


def _unreferenced(data: dict[str, Any], lines: Lines, folder: pathlib.Path) -> list[str]:
    """Codes of external systems (not `local`) that the reference table does not list: a typo in
    a LOINC code, or a code nobody checked against the clinical reference."""
    if "reference" not in data["catalogue"]:
        return []
    try:
        reference = load_reference(folder / data["catalogue"]["reference"])
    except SpecError as exc:
        return [lines.problem(("catalogue", "reference"), f"reference table: {exc.problems[0]}")]
    codings = _codings(data) + [(("codes", "ctcae-grade", k, "code"), g["code"])
                                for k, g in data["codes"].get("ctcae-grade", {}).items()]
    return [lines.problem(where, f"{c['system']}|{c['code']} is not in the reference table "
                          f"({data['catalogue']['reference']})")
            for where, c in codings if c["system"] != LOCAL and not reference.knows(c["system"], str(c["code"]))]


@functools.cache
def load_catalogue(path: str | pathlib.Path) -> Catalogue:
    """Read and check the catalogue: schema, local codes known to the protocol, activities the
    protocol defines, units that are UCUM. SpecError lists every problem with its line."""
    data, lines = load_checked(path, package_schema("adapter.mapping", "catalogue.schema.json"))
    protocol_path = pathlib.Path(path).parent / data["catalogue"]["protocol"]
    try:
        spec = load_spec(protocol_path)
    except SpecError as exc:
        raise SpecError([lines.problem(("catalogue", "protocol"), f"protocol spec {protocol_path}: "
                                       f"{exc.problems[0]}")]) from exc
    local = dict(spec.data["local_codes"])
    activities = spec.activity_canonicals()
    own = _own_codes(data, local)
    problems = [lines.problem(where, f"local code {c['code']!r} is neither in the protocol's local_codes "
                              f"({protocol_path}) nor defined here (local_codes, or a display with the code)")
                for where, c in _codings(data) if c["system"] == LOCAL and c["code"] not in local
                and c["code"] not in own]
    problems += _unreferenced(data, lines, pathlib.Path(path).parent)
    for key, instrument in data.get("instruments", {}).items():
        for name in [*instrument["dimensions"], instrument["total"]]:
            if name not in data["observations"]:
                problems.append(lines.problem(("instruments", key), f"unknown observation {name!r}"))
    used: list[tuple[tuple[Any, ...], str]] = [
        (("observations", k, "activity"), o["activity"]) for k, o in data["observations"].items()]
    used += [(("codes", "route", k, "activity"), r["activity"]) for k, r in data["codes"]["route"].items()]
    problems += [lines.problem(where, f"unknown protocol activity {a!r} (defined: {', '.join(sorted(activities))})")
                 for where, a in used if a not in activities]
    units: list[tuple[tuple[Any, ...], str]] = [
        (("observations", k, "unit"), o["unit"]) for k, o in data["observations"].items() if "unit" in o]
    units += [(("observations", k, "components", c, "unit"), comp["unit"])
              for k, o in data["observations"].items() for c, comp in o.get("components", {}).items()]
    for where, unit in units:
        try:
            check_unit(unit)
        except UnitError as exc:
            problems.append(lines.problem(where, str(exc)))
    if problems:
        raise SpecError(problems)
    return Catalogue(str(path), data, spec.code_system_url, local, activities, lines, own,
                     str(spec.protocol["version"]), tuple(spec.data["arms"]),
                     {site: entry["name"] for site, entry in spec.data.get("sites", {}).items()})

