"""CodeSystem $lookup / $validate-code / $subsumes and ValueSet $expand / $validate-code over real
HTTP, on both stores: the protocol's own terminology, a hierarchical CodeSystem written here,
and the R4 core required value sets."""
from __future__ import annotations

import pytest

from adapter.terminology.expand import MAX_EXPANSION
from adapter.mapping.catalogue import catalogue_resources, load_catalogue
from adapter.study.build import build_resources
from adapter.protocol.spec import load_spec
from terminology_helpers import (
    GENDER, LIMBS, LIMBS_CS, LOCAL_CS, LOCAL_VS, VALUE_SETS, call, one, params, parts, value_set, values, vs_url,
)
from conftest import ROOT
from test_protocol_spec import SPEC

PROTOCOL = build_resources(load_spec(SPEC))
CATALOGUE = ROOT / "mappings" / "sites" / "catalogue.yaml"
LOCAL_CONCEPTS = next(r for r in PROTOCOL if r["resourceType"] == "CodeSystem")["concept"]


@pytest.fixture
def terminology(store):
    store.load(PROTOCOL + [LIMBS_CS] + VALUE_SETS)
    return store


def codes(vs: dict) -> list[str]:
    return [c["code"] for c in vs["expansion"].get("contains", [])]


def test_expand_the_protocols_value_set_paged_and_filtered(http, live, terminology):
    full = call(http, f"{live}/ValueSet/$expand", {"url": LOCAL_VS})
    assert full["url"] == LOCAL_VS and full["expansion"]["total"] == len(LOCAL_CONCEPTS)
    assert codes(full) == [c["code"] for c in LOCAL_CONCEPTS]
    assert {c["display"] for c in full["expansion"]["contains"]} == {c["display"] for c in LOCAL_CONCEPTS}
    assert full["expansion"]["identifier"].startswith("urn:uuid:")
    assert {"name": "version", "valueUri": f"{LOCAL_CS}|1.0.0"} in full["expansion"]["parameter"]
    page = call(http, f"{live}/ValueSet/ucmsc-cp-local/$expand", {"count": "10", "offset": "20"})
    assert page["expansion"]["total"] == len(LOCAL_CONCEPTS) and page["expansion"]["offset"] == 20
    assert codes(page) == [c["code"] for c in LOCAL_CONCEPTS[20:30]]
    gmfm = [c["code"] for c in LOCAL_CONCEPTS if "gmfm" in (c["code"] + c["display"]).lower()]
    found = call(http, f"{live}/ValueSet/$expand", body=params(("url", "Uri", LOCAL_VS), ("filter", "String", "GmFm"),
                                                               ("count", "Integer", 3)))
    assert found["expansion"]["total"] == len(gmfm) > 3 and codes(found) == gmfm[:3]
    assert {"name": "filter", "valueString": "GmFm"} in found["expansion"]["parameter"]
    none = call(http, f"{live}/ValueSet/$expand", {"url": LOCAL_VS, "count": "0"})
    assert none["expansion"]["total"] == len(LOCAL_CONCEPTS) and "contains" not in none["expansion"]


def test_expand_and_look_up_the_catalogues_codes(http, live, store):
    code_system, value_set = catalogue_resources(load_catalogue(CATALOGUE))
    store.load([code_system, value_set])
    found = call(http, f"{live}/ValueSet/$expand", {"url": value_set["url"], "filter": "item 1", "count": "2"})
    matching = [c["code"] for c in code_system["concept"] if "item 1" in c["display"].lower()]
    assert found["expansion"]["total"] == len(matching) > 2 and codes(found) == matching[:2]
    first = code_system["concept"][0]
    looked_up = call(http, f"{live}/CodeSystem/{code_system['id']}/$lookup", {"code": first["code"]})
    assert one(looked_up, "display") == first["display"] and one(looked_up, "version") == code_system["version"]


def test_expand_filters_imports_excludes_and_flags(http, live, terminology):
    def expanded(vid: str, **extra: str) -> dict:
        return call(http, f"{live}/ValueSet/$expand", {"url": vs_url(vid), **extra})
    assert codes(expanded("legs")) == ["leg", "left-leg", "right-leg", "knee"]  # knee: by its parent property
    assert codes(expanded("below-leg")) == ["left-leg", "right-leg", "knee"]
    assert codes(expanded("left")) == ["left-leg", "left-arm"]
    mixed = expanded("legs-no-knee-and-male")
    assert [(c["system"], c["code"], c.get("display")) for c in mixed["expansion"]["contains"]] == [
        (LIMBS, "leg", "Leg"), (LIMBS, "left-leg", "Left leg"), (LIMBS, "right-leg", "Right leg"),
        (GENDER, "male", "Male")]  # the display of the core code system
    every = expanded("limbs-all", includeDesignations="true")
    limb = every["expansion"]["contains"][0]
    assert limb["abstract"] is True and limb["designation"] == [{"language": "fr", "value": "Membre"}]
    assert next(c for c in every["expansion"]["contains"] if c["code"] == "old-thing")["inactive"] is True
    assert "old-thing" not in codes(expanded("limbs-all", activeOnly="true"))
    assert "designation" not in expanded("limbs-all")["expansion"]["contains"][0]
    assert codes(expanded("some-loinc")) == ["29463-7"]  # listed codes of a system not held: as listed
    assert codes(expanded("pre-expanded")) == ["left-leg", "right-leg"]  # no compose: its expansion, flat
    assert codes(expanded("pre-expanded", activeOnly="true", filter="LEG")) == ["left-leg"]


def test_expand_the_core_required_value_sets(http, live, terminology):
    status = call(http, f"{live}/ValueSet/$expand", {"url": "http://hl7.org/fhir/ValueSet/observation-status"})
    assert status["expansion"]["total"] == 8 and "final" in codes(status) and status["version"] == "4.0.1"
    gender = call(http, f"{live}/ValueSet/$expand", {"url": "http://hl7.org/fhir/ValueSet/administrative-gender|4.0.1",
                                                      "filter": "fem"})
    assert gender["expansion"]["contains"] == [{"system": GENDER, "version": "4.0.1", "code": "female", "display": "Female"}]


@pytest.mark.parametrize("vid,code,where", [
    ("all-loinc", "not-supported", "ValueSet.compose.include[0].system"),
    ("regex", "not-supported", "ValueSet.compose.include[0].filter[0].op"),
    ("cycle", "processing", "ValueSet.compose.include[0].valueSet[0]"),
])
def test_what_cannot_be_expanded_is_a_422_that_says_why(http, live, terminology, vid, code, where):
    outcome = call(http, f"{live}/ValueSet/$expand", {"url": vs_url(vid)}, status=422)
    assert outcome["issue"][0]["code"] == code and outcome["issue"][0]["expression"] == [where]


def test_expand_a_value_set_sent_in_the_body(http, live, terminology):
    inline = {"resourceType": "ValueSet", "status": "draft", "compose": {"include": [
        {"system": LIMBS, "filter": [{"property": "concept", "op": "is-a", "value": "arm"}]}]}}
    answer = call(http, f"{live}/ValueSet/$expand", body={"resourceType": "Parameters", "parameter": [
        {"name": "valueSet", "resource": inline}]})
    assert codes(answer) == ["arm", "left-arm"]
    # the query string and the body together: count by one, the value set by the other
    first = call(http, f"{live}/ValueSet/$expand", params={"count": "1"}, body={
        "resourceType": "Parameters", "parameter": [{"name": "valueSet", "resource": inline}]})
    assert codes(first) == ["arm"] and first["expansion"]["total"] == 2


def test_lookup_displays_designations_and_properties(http, live, terminology):
    local = call(http, f"{live}/CodeSystem/$lookup", {"system": LOCAL_CS, "code": "ucmsc-it"})
    assert one(local, "display") == "Intrathecal injection of UC-MSCs" and one(local, "version") == "1.0.0"
    assert one(local, "name") == "UcmscCpLocal"
    leg = call(http, f"{live}/CodeSystem/limbs/$lookup", {"code": "leg"})
    props = [parts(p) for p in values(leg, "property")]
    assert {"code": "parent", "value": "limb"} in props
    assert [p["value"] for p in props if p["code"] == "child"] == ["left-leg", "right-leg", "knee"]
    left = call(http, f"{live}/CodeSystem/$lookup", body=params(("coding", "Coding", {"system": LIMBS, "code": "left-leg"}),
                                                              ("property", "Code", "laterality")))
    assert [parts(p) for p in values(left, "property")] == [
        {"code": "laterality", "value": "left", "description": "Which side"}]
    limb = call(http, f"{live}/CodeSystem/$lookup", {"system": LIMBS, "code": "limb"})
    assert [parts(d) for d in values(limb, "designation")] == [{"language": "fr", "value": "Membre"}]
    male = call(http, f"{live}/CodeSystem/$lookup", {"system": GENDER, "code": "male"})
    assert one(male, "display") == "Male" and one(male, "name") == "AdministrativeGender"
    assert {"code": "definition", "value": "Male."} in [parts(p) for p in values(male, "property")]
    unknown = call(http, f"{live}/CodeSystem/$lookup", {"system": GENDER, "code": "nobody"}, status=404)
    assert "only part of it" in unknown["issue"][0]["diagnostics"]  # what the core value sets hold of it


def test_code_system_validate_code(http, live, terminology):
    def check(query: dict, instance: str = "") -> dict:
        return call(http, f"{live}/CodeSystem/{instance}$validate-code", query)
    assert one(check({"url": LOCAL_CS, "code": "gmfcs-3"}), "result") is True
    assert one(check({"url": LOCAL_CS, "code": "gmfcs-3"}), "display") == "GMFCS level III"
    wrong = check({"url": GENDER, "code": "male", "display": "Man"})
    assert one(wrong, "result") is False and "'Man'" in one(wrong, "message") and one(wrong, "display") == "Male"
    assert one(check({"code": "limb", "display": "Membre"}, "limbs/"), "result") is True  # a designation
    unknown = check({"url": LIMBS, "code": "tail"})
    assert one(unknown, "result") is False and "tail" in one(unknown, "message")
    by_coding = call(http, f"{live}/CodeSystem/$validate-code", body=params(
        ("coding", "Coding", {"system": LIMBS, "code": "knee", "display": "Knee"})))
    assert one(by_coding, "result") is True
    concept = {"coding": [{"system": GENDER, "code": "male"}, {"system": LIMBS, "code": "tail"}]}
    neither = call(http, f"{live}/CodeSystem/limbs/$validate-code", body={"resourceType": "Parameters", "parameter": [
        {"name": "codeableConcept", "valueCodeableConcept": concept}]})
    assert one(neither, "result") is False
    assert "not of the code system" in one(neither, "message") and "'tail'" in one(neither, "message")
    concept["coding"].append({"system": LIMBS, "code": "arm"})
    either = call(http, f"{live}/CodeSystem/limbs/$validate-code", body={"resourceType": "Parameters", "parameter": [
        {"name": "codeableConcept", "valueCodeableConcept": concept}]})
    assert one(either, "result") is True and one(either, "display") == "Arm"


def test_value_set_validate_code(http, live, terminology):
    def check(vid_or_url: str, **query: str) -> dict:
        url = vid_or_url if "://" in vid_or_url else vs_url(vid_or_url)
        return call(http, f"{live}/ValueSet/$validate-code", {"url": url, **query})
    assert one(check(LOCAL_VS, system=LOCAL_CS, code="ucmsc-iv"), "result") is True
    outside = check("legs", system=LIMBS, code="left-arm")
    assert one(outside, "result") is False and "not in the value set" in one(outside, "message")
    assert one(check("legs", system=LIMBS, code="knee", display="Kneecap"), "result") is False
    alone = http.get(f"{live}/ValueSet/$validate-code", params={"url": vs_url("legs"), "code": "knee"})
    assert alone.status_code == 400 and alone.json()["issue"][0]["expression"] == ["system"]
    assert one(check("abstract-too", system=LIMBS, code="limb"), "result") is True
    abstract = check("abstract-too", system=LIMBS, code="limb", abstract="false")
    assert one(abstract, "result") is False and "abstract" in one(abstract, "message")
    status = "http://hl7.org/fhir/ValueSet/observation-status"
    assert one(check(status, system="http://hl7.org/fhir/observation-status", code="final"), "result") is True
    assert one(check(status, system="http://hl7.org/fhir/observation-status", code="done"), "result") is False
    concept = {"coding": [{"system": LIMBS, "code": "arm"}, {"system": LIMBS, "code": "right-leg"}]}
    answer = call(http, f"{live}/ValueSet/legs/$validate-code", body={"resourceType": "Parameters", "parameter": [
        {"name": "codeableConcept", "valueCodeableConcept": concept}]})
    assert one(answer, "result") is True and one(answer, "display") == "Right leg"


@pytest.mark.parametrize("a,b,outcome", [
    ("limb", "left-leg", "subsumes"), ("left-leg", "limb", "subsumed-by"), ("knee", "limb", "subsumed-by"),
    ("arm", "leg", "not-subsumed"), ("leg", "leg", "equivalent"), ("old-thing", "limb", "not-subsumed"),
])
def test_subsumes_from_the_nesting_and_parent_properties(http, live, terminology, a, b, outcome):
    answer = call(http, f"{live}/CodeSystem/$subsumes", {"system": LIMBS, "codeA": a, "codeB": b})
    assert one(answer, "outcome") == outcome
    instance = call(http, f"{live}/CodeSystem/limbs/$subsumes", body=params(
        ("codingA", "Coding", {"system": LIMBS, "code": a}), ("codingB", "Coding", {"system": LIMBS, "code": b})))
    assert one(instance, "outcome") == outcome


def test_a_version_is_chosen_by_parameter_or_canonical_else_the_latest_written(http, live, terminology):
    older = LIMBS_CS | {"id": "limbs-v1", "version": "1", "concept": [{"code": "leg", "display": "Leg (v1)"}]}
    terminology.load([older])  # written after v2: the latest written when no version is asked for
    def display(**query: str) -> str:
        return one(call(http, f"{live}/CodeSystem/$lookup", {"code": "leg", **query}), "display")
    assert display(system=LIMBS) == "Leg (v1)"
    assert display(system=LIMBS, version="2") == "Leg"
    assert display(system=f"{LIMBS}|2") == "Leg"
    missing = call(http, f"{live}/CodeSystem/$lookup", {"system": LIMBS, "version": "9", "code": "leg"}, status=404)
    assert missing["issue"][0]["expression"] == ["system"] and "version 9" in missing["issue"][0]["diagnostics"]


def test_the_terminology_package_knows_no_web_framework_and_no_sql():
    import ast
    import pathlib
    package = pathlib.Path(__file__).resolve().parent.parent / "adapter" / "terminology"
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                assert not name.startswith("adapter.") or name.startswith(
                    ("adapter.fhir", "adapter.store.repository", "adapter.terminology")), (path.name, name)
                assert name.split(".")[0] not in ("flask", "werkzeug", "sqlalchemy", "psycopg", "sqlite3"), (path.name, name)


def test_an_expansion_past_the_limit_is_refused_not_cut_short(http, live, store):
    big = {"resourceType": "CodeSystem", "id": "big", "url": "http://example.org/fhir/CodeSystem/big",
           "status": "active", "content": "complete",
           "concept": [{"code": f"c{i}"} for i in range(MAX_EXPANSION + 1)]}
    store.load([big, value_set("big", [{"system": big["url"]}])])
    outcome = call(http, f"{live}/ValueSet/$expand", {"url": vs_url("big"), "count": "1"}, status=422)
    assert outcome["issue"][0]["code"] == "too-costly" and str(MAX_EXPANSION) in outcome["issue"][0]["diagnostics"]
    # the limit is on what a value set holds, not on the code system it draws from
    store.load([value_set("two", [{"system": big["url"], "concept": [{"code": "c7"}, {"code": "c70"}]}])])
    assert codes(call(http, f"{live}/ValueSet/$expand", {"url": vs_url("two")})) == ["c7", "c70"]
