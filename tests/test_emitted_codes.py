"""Every code the adapter emits is known: in a code system it serves (the protocol's local
codes, the catalogue's, the sites'), in an R4 required-binding value set it ships
(adapter/fhir/data/required-valuesets.json), or in the reference table of external codes
(mappings/reference/codes.yaml); every UCUM unit is in the table and is UCUM."""
from __future__ import annotations

import json
import pathlib
import re
from typing import Any, Iterator

import pytest

from adapter.fhir.units import UnitError, check_unit
from adapter.mapping.catalogue import catalogue_resources, load_catalogue
from adapter.mapping.concept_maps import concept_map, target_coding
from adapter.mapping.reference import load_reference
from adapter.mapping.spec import load_mapping, shipped_mappings
from adapter.outcomes.definitions import stratifier_system
from adapter.study.build import build_resources
from adapter.protocol.spec import SPECS
from adapter.protocol.schedule import visit_system
from adapter.protocol.spec import LOCAL, load_spec
from adapter.yamlspec import SpecError
from conftest import ROOT

UCUM = "http://unitsofmeasure.org"
MAPPINGS = ROOT / "mappings" / "sites"
REQUIRED = ROOT / "adapter" / "fhir" / "data" / "required-valuesets.json"
# A coding written literally in the adapter's source: "system": "http...", "code": "..."
LITERAL = re.compile(r'"system":\s*"(https?://[^"]+)",\s*"code":\s*"([^"{}]+)"')


def codings(node: Any) -> Iterator[tuple[str, str]]:
    """(system, code) of every Coding and Quantity in a resource."""
    if isinstance(node, dict):
        if isinstance(node.get("system"), str) and isinstance(node.get("code"), str):
            yield node["system"], node["code"]
        for value in node.values():
            yield from codings(value)
    elif isinstance(node, list):
        for item in node:
            yield from codings(item)


def emitted() -> dict[tuple[str, str], str]:
    """Every code the adapter writes, with where it comes from."""
    found: dict[tuple[str, str], str] = {}
    protocol = build_resources(load_spec(SPECS / "ucmsc-cp-v1.yaml"))
    for resource in protocol:
        found.update((c, f"protocol {resource['resourceType']}/{resource['id']}") for c in codings(resource))
    catalogue = load_catalogue(MAPPINGS / "catalogue.yaml")
    for table, entries in catalogue.data["codes"].items():
        for key in entries:
            coding = target_coding(catalogue, table, key)
            found[(coding["system"], coding["code"])] = f"catalogue codes.{table}.{key}"
    for key, obs in catalogue.data["observations"].items():
        for coding in [obs["code"], *obs.get("codes", {}).values(), *(c["code"] for c in obs.get("components", {}).values())]:
            full = catalogue.coding(coding)
            found[(full["system"], full["code"])] = f"catalogue observations.{key}"
        if "unit" in obs:
            found[(UCUM, obs["unit"])] = f"catalogue observations.{key}.unit"
    for site in sorted(catalogue.data["body_sites"]):
        full = catalogue.coding({"system": LOCAL, "code": site})
        found[(full["system"], full["code"])] = f"catalogue body_sites.{site}"
    for path in shipped_mappings():
        spec = load_mapping(path)
        for group in concept_map(spec).get("group", []):
            for element in group["element"]:
                found[(group["target"], element["target"][0]["code"])] = f"ConceptMap/{spec.name}"
        expected = spec.relative(spec.data["golden"][0]["expected"])
        for line in expected.read_text(encoding="utf-8").splitlines():
            resource = json.loads(line)
            found.update((c, f"{expected.relative_to(ROOT)} {resource['resourceType']}/{resource['id']}")
                         for c in codings(resource))
    for source in sorted((ROOT / "adapter").rglob("*.py")):
        for match in LITERAL.finditer(source.read_text(encoding="utf-8")):
            found[(match.group(1), match.group(2))] = str(source.relative_to(ROOT))
    return found


def served() -> tuple[dict[str, set[str]], set[tuple[str, str]]]:
    """The code systems the adapter serves (url -> codes), and the codes of the R4 required
    value sets it ships; plus the Measures' stratifier codes (their definitions)."""
    protocol = build_resources(load_spec(SPECS / "ucmsc-cp-v1.yaml"))
    resources = protocol + catalogue_resources(load_catalogue(MAPPINGS / "catalogue.yaml"))
    # a site's own concepts (its mapping's catalogue_extension): its CodeSystem, written by its ingests
    resources += [r for path in shipped_mappings() for r in catalogue_resources(load_mapping(path).catalogue)]
    systems = {r["url"]: {c["code"] for c in r["concept"]} for r in resources if r["resourceType"] == "CodeSystem"}
    sets = json.loads(REQUIRED.read_text(encoding="utf-8"))
    required = {(c["system"], c["code"]) for vs in sets.values() for c in vs.get("contains", [])}
    return systems, required


def test_every_code_the_adapter_emits_is_known():
    reference = load_reference()
    systems, required = served()
    measures = [r for r in build_resources(load_spec(SPECS / "ucmsc-cp-v1.yaml")) if r["resourceType"] == "Measure"]
    base = load_catalogue(MAPPINGS / "catalogue.yaml").base
    # Declared by the Measures that use them (each stratifier's and component's code)
    stratifiers = {c for m in measures for c in codings(m) if c[0] == stratifier_system(base)}
    unknown = []
    found = emitted()
    declared = {load_mapping(p).site for p in shipped_mappings() if "site_file" in load_mapping(p).data["mapping"]}
    for (system, code), where in sorted(found.items()):
        if system == UCUM:
            ok = code in reference.units
        elif system == f"{base}/CodeSystem/study-site" and code in declared:
            # Known gap: a site declared beside its mapping (site_file) labels its data with its code,
            # which the protocol's study-site CodeSystem does not list; its Organization names it
            ok = True
        elif system in systems:
            ok = code in systems[system]
        elif system == visit_system(base, "ucmsc-cp"):
            # visit keys are an open pattern (month-N for any N), not a published CodeSystem
            ok = re.fullmatch(r"baseline|injection-\d+|month-\d+", code) is not None
        elif system == stratifier_system(base):
            ok = (system, code) in stratifiers
        else:
            ok = (system, code) in required or reference.knows(system, code)
        if not ok:
            unknown.append(f"{system}|{code} ({where})")
    assert not unknown, "\n".join(unknown)
    # the walk saw what it is meant to: each kind of source
    assert {(UCUM, "10*9/L"), ("http://loinc.org", "8310-5"), ("http://hl7.org/fhir/administrative-gender", "male"),
            ("http://terminology.hl7.org/CodeSystem/condition-ver-status", "confirmed"),
            ("http://ucmsc-cp.example.org/fhir/CodeSystem/study-site", "site-c")} <= set(found)


def test_every_reference_unit_is_ucum():
    for unit in load_reference().units:
        check_unit(unit)
    with pytest.raises(UnitError):
        check_unit("cells/uL")  # REFERENCE.md: not UCUM, so never in the table


def test_a_bad_unit_in_the_table_is_refused_with_its_line(tmp_path: pathlib.Path):
    text = (ROOT / "mappings" / "reference" / "codes.yaml").read_text(encoding="utf-8")
    bad = tmp_path / "codes.yaml"
    bad.write_text(text.replace('"/uL",', '"cells/uL",'), encoding="utf-8")
    with pytest.raises(SpecError) as caught:
        load_reference(bad)
    [problem] = caught.value.problems
    line = next(i for i, t in enumerate(bad.read_text(encoding="utf-8").splitlines(), 1) if "\"cells/uL\"," in t)
    assert problem.startswith(f"{bad}:{line}: units[1]: ")


def test_a_catalogue_code_not_in_the_reference_fails_the_catalogue(tmp_path: pathlib.Path):
    """Checked when the catalogue loads, so `mapping check` names the catalogue's line."""
    text = (MAPPINGS / "catalogue.yaml").read_text(encoding="utf-8")
    assert "code: 8867-4" in text
    bad = tmp_path / "catalogue.yaml"
    bad.write_text(text.replace("code: 8867-4", "code: 8867-5")
                   .replace("../protocol/", f"{ROOT / 'mappings' / 'protocol'}/")
                   .replace("../reference/", f"{ROOT / 'mappings' / 'reference'}/"), encoding="utf-8")
    with pytest.raises(SpecError) as caught:
        load_catalogue(bad)
    [problem] = caught.value.problems
    line = next(i for i, t in enumerate(bad.read_text(encoding="utf-8").splitlines(), 1) if "8867-5" in t)
    assert problem.startswith(f"{bad}:{line}: observations.heart-rate.code: http://loinc.org|8867-5 is not in "
                              "the reference table")
