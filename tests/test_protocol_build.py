"""The protocol's FHIR definitions: valid R4, Vulcan timing, byte-identical builds."""
from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

from adapter.fhir.sites import SITE_SYSTEM
from adapter.fhir.validation import validate
from adapter.study.build import build_resources, bundle_bytes
from adapter.protocol.schedule import WINDOW_EXTENSION
from adapter.protocol.spec import load_spec
from r4schema import assert_r4
from test_protocol_spec import SPEC


def resources():
    return {f"{r['resourceType']}/{r['id']}": r for r in build_resources(load_spec(SPEC))}


def test_every_resource_is_valid_and_r4():
    built = resources()
    assert Counter(k.split("/")[0] for k in built) == {
        "PlanDefinition": 26, "ActivityDefinition": 11, "ResearchStudy": 1, "CodeSystem": 2, "ValueSet": 1,
        "Measure": len(load_spec(SPEC).data["outcomes"]), "Organization": 5, "Location": 4}
    for key, resource in built.items():
        assert validate(resource) == [], key
        assert_r4(resource)
        assert "subjectCanonical" not in resource


def test_study_points_at_one_protocol_per_arm():
    study = resources()["ResearchStudy/ucmsc-cp"]
    assert [p["reference"] for p in study["protocol"]] == ["PlanDefinition/ucmsc-cp-arm-1",
                                                           "PlanDefinition/ucmsc-cp-arm-2"]
    assert [a["name"] for a in study["arm"]] == ["arm-1", "arm-2"]
    assert study["phase"]["coding"][0]["code"] == "n-a"


def test_the_sponsor_and_sites_are_organizations_and_the_sites_locations():
    built = resources()
    study = built["ResearchStudy/ucmsc-cp"]
    assert study["sponsor"]["reference"] == "Organization/ucmsc-cp-sponsor"
    assert [s["reference"] for s in study["site"]] == [f"Location/site-{x}" for x in "abcd"]
    for site in ("site-a", "site-b", "site-c", "site-d"):
        organisation, location = built[f"Organization/{site}"], built[f"Location/{site}"]
        assert location["managingOrganization"]["reference"] == f"Organization/{site}"
        # the identifier sites had before they were resources, so that either finds them
        assert organisation["identifier"] == [{"system": "http://ucmsc-cp.example.org/fhir/sid/site", "value": site}]
        assert organisation["name"] and location["name"] and location["status"] == "active"
    assert built["Location/site-c"]["address"] == {"country": "CN"}
    assert built["Organization/ucmsc-cp-sponsor"]["name"].startswith("UC-MSC CP trial sponsor")
    # the site codes are those of the security label that segregates the sites' data
    sites = built["CodeSystem/study-site"]
    assert sites["url"] == SITE_SYSTEM and [c["code"] for c in sites["concept"]] == [f"site-{x}" for x in "abcd"]


def test_visits_are_timed_with_related_actions_and_windows():
    built = resources()
    protocol = built["PlanDefinition/ucmsc-cp-arm-1"]
    assert protocol["type"]["coding"][0]["code"] == "clinical-protocol"
    actions = {a["id"]: a for a in protocol["action"]}
    week2 = actions["c1-d7"]["relatedAction"][0]
    assert week2["actionId"] == "c1-d0" and week2["relationship"] == "after-start"
    assert week2["offsetDuration"]["value"] == 7 and week2["offsetDuration"]["code"] == "d"
    [window] = week2["extension"]
    assert window["url"] == WINDOW_EXTENSION
    assert (window["valueRange"]["low"]["value"], window["valueRange"]["high"]["value"]) == (5, 9)
    baseline = actions["baseline"]["relatedAction"][0]
    assert baseline["relationship"] == "before-start" and baseline["offsetDuration"]["value"] == 7
    follow = actions["fu-m12"]["relatedAction"][0]
    assert follow["actionId"] == "c1-d21" and follow["offsetDuration"]["code"] == "mo"
    visit = built["PlanDefinition/ucmsc-cp-arm-1-c1-d21"]
    assert actions["c1-d21"]["definitionCanonical"] == f"{visit['url']}|1.0.0"
    assert [a["id"] for a in visit["action"]] == ["intravenous-injection", "vital-signs", "adverse-reaction-review"]


def test_injections_carry_route_and_the_dose_parameter():
    it = resources()["ActivityDefinition/ucmsc-cp-intrathecal-injection"]
    # a dose of the product by a route: a MedicationRequest's, which $apply can carry them in
    assert it["kind"] == "MedicationRequest" and it["productCodeableConcept"]["coding"][0]["code"] == "ucmsc"
    dosage = it["dosage"][0]
    assert dosage["route"]["coding"][0]["code"] == "72607000"
    assert dosage["doseAndRate"][0]["doseQuantity"]["code"] == "10*6/kg"
    immune = resources()["ActivityDefinition/ucmsc-cp-immune-panel"]
    produces = [e for e in immune["extension"] if e["url"].endswith("/produces-observation-code")]
    assert len(produces) == 8  # the Observation codes the panel produces
    # and per lymphocyte subset, its absolute count as an alternative ($adherence counts either)
    assert len(immune["extension"]) == 8 + 5


def test_building_twice_gives_the_same_bytes(tmp_path):
    first = bundle_bytes(load_spec(SPEC))
    assert bundle_bytes(load_spec(SPEC)) == first
    cli = str(Path(sys.executable).parent / "fhir-adapter")
    out = tmp_path / "bundle.json"
    subprocess.run([cli, "protocol", "build", str(SPEC), "-o", str(out)], check=True, capture_output=True)
    assert out.read_bytes() == first


def test_the_specs_canonicals_are_the_ones_the_built_definitions_carry():
    from adapter.protocol.spec import SPECS, load_spec
    from adapter.study.build import build_resources
    spec = load_spec(SPECS / "ucmsc-cp-v1.yaml")
    built = {r["id"]: f"{r['url']}|{r['version']}" for r in build_resources(spec)
             if r["resourceType"] == "ActivityDefinition"}
    pid = spec.protocol["id"]
    assert {f"{pid}-{key}": url for key, url in spec.activity_canonicals().items()} == built
