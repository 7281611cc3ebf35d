"""What one site's mapping may declare beside itself, so that a new site needs no shipped file
edited: the site (`mapping.site_file`: code, name, location, identifiers), whose Organization
and Location every ingest of it writes; and concepts the catalogue lacks (`mapping.
catalogue_extension`: observations, body sites, local codes), checked like the catalogue, their
local codes served in the site's own CodeSystem, which every ingest of it writes too.
"""
from __future__ import annotations

import copy
import dataclasses
import pathlib
from typing import Any

import jsonschema

from adapter.fhir.units import UnitError, check_unit
from adapter.mapping.catalogue import Catalogue
from adapter.mapping.reference import load_reference
from adapter.protocol.organisations import site_resources
from adapter.protocol.spec import LOCAL
from adapter.yamlspec import SpecError, load_checked, package_schema

__all__ = ["load_site", "extend_catalogue", "site_definitions"]


def load_site(path: pathlib.Path, code: str, catalogue: Catalogue) -> dict[str, Any]:
    """The site file's `site:` entry; SpecError when it is not this mapping's site, or is one the
    protocol lists already (its Organization would be written twice, differently)."""
    data, lines = load_checked(path, package_schema("adapter.mapping", "site.schema.json"))
    site = data["site"]
    problems = []
    if site["code"] != code:
        problems.append(lines.problem(("site", "code"), f"{site['code']!r}, but the mapping's site is {code!r}"))
    if site["code"] in catalogue.sites:
        problems.append(lines.problem(("site", "code"), f"{site['code']!r} is a site of the protocol already: "
                                      "leave out mapping.site_file, or give this site a code of its own"))
    if problems:
        raise SpecError(problems)
    return site  # type: ignore[no-any-return]


def site_definitions(catalogue: Catalogue, site: dict[str, Any]) -> list[dict[str, Any]]:
    """The site's Organization and Location, as the protocol's own sites get them."""
    return site_resources(catalogue.base, site["code"], site)


def _observation_schema() -> dict[str, Any]:
    schema = copy.deepcopy(package_schema("adapter.mapping", "catalogue.schema.json"))
    entry = schema["properties"]["observations"]["additionalProperties"]
    entry["required"] = [r for r in entry["required"] if r != "activity"]
    return {"$defs": schema["$defs"], **entry}


def extend_catalogue(catalogue: Catalogue, path: pathlib.Path, site: str) -> Catalogue:
    """The catalogue with one site's concepts added; SpecError (each problem at its line) for a
    concept the catalogue has already, a shape the catalogue would refuse, an external code not in
    the reference table, a local code defined nowhere, a unit that is not UCUM."""
    data, lines = load_checked(path, package_schema("adapter.mapping", "catalogue-extension.schema.json"))
    problems = []
    validator = jsonschema.Draft202012Validator(_observation_schema())
    base = catalogue.data
    for key, concept in data.get("observations", {}).items():
        at = ("observations", key)
        if key in base["observations"]:
            problems.append(lines.problem(at, f"{key!r} is in the catalogue already"))
        for error in validator.iter_errors(concept):
            problems.append(lines.problem(at + tuple(error.absolute_path), error.message))
    for key in data.get("body_sites", {}):
        if key in base["body_sites"]:
            problems.append(lines.problem(("body_sites", key), f"{key!r} is in the catalogue already"))
    if problems:
        raise SpecError(problems)
    own = dict(data.get("local_codes", {}))
    own.update(data.get("body_sites", {}))
    codings: list[tuple[tuple[Any, ...], Any]] = []
    for key, concept in data.get("observations", {}).items():
        codings.append((("observations", key, "code"), concept["code"]))
        codings += [(("observations", key, "codes", k), c) for k, c in concept.get("codes", {}).items()]
        if concept["code"]["system"] == LOCAL and "display" in concept["code"]:
            own.setdefault(concept["code"]["code"], concept["code"]["display"])
        units: list[tuple[tuple[Any, ...], Any]] = [(("observations", key, "unit"), concept.get("unit"))]
        units += [(("observations", key, "components", c, "unit"), comp["unit"])
                  for c, comp in concept.get("components", {}).items()]
        for where, unit in units:
            try:
                if unit is not None:
                    check_unit(unit)
            except UnitError as exc:
                problems.append(lines.problem(where, str(exc)))
        if "activity" in concept and concept["activity"] not in catalogue.activities:
            problems.append(lines.problem(("observations", key, "activity"), f"unknown protocol activity "
                                          f"{concept['activity']!r} (defined: {', '.join(sorted(catalogue.activities))})"))
    reference_path = base["catalogue"].get("reference")
    reference = load_reference(pathlib.Path(catalogue.path).parent / reference_path) if reference_path else None
    known = set(catalogue.local_codes) | set(catalogue.own_codes) | set(own)
    for where, coding in codings:
        if coding["system"] == LOCAL and coding["code"] not in known:
            problems.append(lines.problem(where, f"local code {coding['code']!r} is defined neither here (local_codes, "
                                          "or a display with the code) nor by the catalogue or the protocol"))
        elif coding["system"] != LOCAL and reference is not None and not reference.knows(coding["system"],
                                                                                          str(coding["code"])):
            problems.append(lines.problem(where, f"{coding['system']}|{coding['code']} is not in the reference "
                                          f"table ({reference_path})"))
    if problems:
        raise SpecError(problems)
    merged = {**base, "observations": {**base["observations"], **data.get("observations", {})},
              "body_sites": {**base["body_sites"], **data.get("body_sites", {})}}
    return dataclasses.replace(catalogue, data=merged, site_codes=own, site=site)
