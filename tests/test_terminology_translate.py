"""ConceptMap/$translate over real HTTP on both stores (the official R4 example maps and maps
written here, with each `unmapped` mode, reverse), the terminology operations' errors, a real
FHIR client calling them, the CapabilityStatement, and the scopes of an authorised client."""
from __future__ import annotations

import json

import pytest
from fhirclient import client as smart_client
from fhirclient.models.parameters import Parameters
from fhirclient.models.valueset import ValueSet
from fhirpy import SyncFHIRClient

from conftest import EXAMPLES
from terminology_helpers import (
    FHIR, GENDER, LIMBS, LIMBS_CS, LOCAL_CS, LOCAL_VS, VALUE_SETS, call, one, params, parts, values,
)
from test_authorisation import fhir, gateway, refused, session  # noqa: F401  (gateway: a fixture)
from test_terminology import PROTOCOL

V2_SEX = "http://terminology.hl7.org/CodeSystem/v2-0001"
S, T = "http://example.org/fhir/CodeSystem/s", "http://example.org/fhir/CodeSystem/t"


def cmap(cid: str, elements: dict[str, str], unmapped: dict | None = None) -> dict:
    group = {"source": S, "target": T, "element": [
        {"code": code, "target": [{"code": target, "equivalence": "equivalent"}]} for code, target in elements.items()]}
    return {"resourceType": "ConceptMap", "id": cid, "url": f"http://example.org/fhir/ConceptMap/{cid}",
            "status": "active", "group": [group | ({"unmapped": unmapped} if unmapped else {})]}


def cm_url(cid: str) -> str:
    return f"http://example.org/fhir/ConceptMap/{cid}"


MAPS = [
    cmap("provided", {"s1": "t1"}, {"mode": "provided"}),
    cmap("fixed", {"s1": "t1"}, {"mode": "fixed", "code": "oth", "display": "Other"}),
    cmap("chain-1", {"s1": "t1"}, {"mode": "other-map", "url": cm_url("chain-2")}),
    cmap("chain-2", {"s2": "t2"}, {"mode": "other-map", "url": cm_url("chain-1")}),  # back: a cycle
]


@pytest.fixture
def maps(store):
    official = [json.loads((EXAMPLES / f"ConceptMap-{name}.json").read_text())
                for name in ("cm-administrative-gender-v2", "101", "example2")]
    store.load(official + MAPS + PROTOCOL + [LIMBS_CS] + VALUE_SETS)
    return store


def matches(answer: dict) -> list[tuple[str, str | None, str, str]]:
    """(equivalence, system, code, source map) of each match."""
    found = []
    for group in values(answer, "match"):
        p = parts(group)
        found.append((p["equivalence"], p["concept"].get("system"), p["concept"]["code"], p["source"]))
    return found


def test_translate_the_official_gender_map_both_ways(http, live, maps):
    url = "http://hl7.org/fhir/ConceptMap/cm-administrative-gender-v2"
    other = call(http, f"{live}/ConceptMap/$translate", {"url": url, "system": GENDER, "code": "other"})
    assert one(other, "result") is True
    assert matches(other) == [("wider", V2_SEX, "A", url), ("wider", V2_SEX, "O", url)]
    back = call(http, f"{live}/ConceptMap/cm-administrative-gender-v2/$translate",
                {"system": V2_SEX, "code": "A", "reverse": "true"})
    assert matches(back) == [("narrower", GENDER, "other", url)]  # wider, read the other way
    # no map named: the stored maps from the code's system are found by their groups' source
    found = call(http, f"{live}/ConceptMap/$translate", body=params(
        ("coding", "Coding", {"system": GENDER, "code": "female"}), ("targetsystem", "Uri", V2_SEX)))
    assert matches(found) == [("equal", V2_SEX, "F", url)]
    elsewhere = call(http, f"{live}/ConceptMap/$translate", {"system": GENDER, "code": "female",
                                                             "targetsystem": "http://example.org/none"})
    assert one(elsewhere, "result") is False and "no mapping" in one(elsewhere, "message")
    found_back = call(http, f"{live}/ConceptMap/$translate", {"system": V2_SEX, "code": "F", "reverse": "true"})
    assert matches(found_back) == [("equal", GENDER, "female", url)]  # found by its groups' target
    scoped = {"system": GENDER, "code": "male", "source": "http://hl7.org/fhir/ValueSet/administrative-gender"}
    assert matches(call(http, f"{live}/ConceptMap/$translate", scoped | {
        "target": "http://terminology.hl7.org/ValueSet/v2-0001"})) == [("equal", V2_SEX, "M", url)]
    assert matches(call(http, f"{live}/ConceptMap/$translate", scoped | {"target": "http://example.org/ValueSet/x"})) == []
    address = call(http, f"{live}/ConceptMap/101/$translate", {"system": "http://hl7.org/fhir/address-use", "code": "old"})
    assert one(address, "result") is False and matches(address)[0][0] == "disjoint"  # a match that is no mapping


def test_translate_unmapped_modes(http, live, maps):
    def translate(cid: str, code: str) -> dict:
        return call(http, f"{live}/ConceptMap/$translate", {"url": cm_url(cid), "system": S, "code": code})
    assert matches(translate("provided", "s1")) == [("equivalent", T, "t1", cm_url("provided"))]
    assert matches(translate("provided", "s9")) == [("equal", T, "s9", cm_url("provided"))]
    fixed = translate("fixed", "s9")
    assert matches(fixed) == [("wider", T, "oth", cm_url("fixed"))]
    assert parts(values(fixed, "match")[0])["concept"]["display"] == "Other"
    assert matches(translate("chain-1", "s2")) == [("equivalent", T, "t2", cm_url("chain-2"))]
    cycle = translate("chain-1", "s9")
    assert one(cycle, "result") is False and "cycle" in one(cycle, "message") and matches(cycle) == []
    official = call(http, f"{live}/ConceptMap/example2/$translate", {"system": "http://example.org/fhir/example1",
                                                                     "code": "nothing"})
    assert one(official, "result") is False and "not on this server" in one(official, "message")
    # reverse: unmapped speaks of source codes, so it does not apply
    back = call(http, f"{live}/ConceptMap/provided/$translate", {"system": T, "code": "t9", "reverse": "true"})
    assert one(back, "result") is False


def test_translate_a_codeable_concept_and_an_inline_map(http, live, maps):
    concept = {"coding": [{"system": S, "code": "s1"}, {"system": S, "code": "s2"}]}
    both = call(http, f"{live}/ConceptMap/chain-2/$translate", body={"resourceType": "Parameters", "parameter": [
        {"name": "codeableConcept", "valueCodeableConcept": concept}]})
    # s1 is not in chain-2: its unmapped policy sends it on to chain-1, which maps it
    assert one(both, "result") is True
    assert matches(both) == [("equivalent", T, "t1", cm_url("chain-1")), ("equivalent", T, "t2", cm_url("chain-2"))]
    inline = cmap("inline", {"s7": "t7"})
    answer = call(http, f"{live}/ConceptMap/$translate", body={"resourceType": "Parameters", "parameter": [
        {"name": "conceptMap", "resource": inline}, {"name": "system", "valueUri": S}, {"name": "code", "valueCode": "s7"}]})
    assert matches(answer) == [("equivalent", T, "t7", cm_url("inline"))]


LOOKUP, EXPAND = "CodeSystem/$lookup", "ValueSet/$expand"
BAD = [
    ("GET", LOOKUP, {"system": LIMBS}, None, 400, "code"),
    ("GET", LOOKUP, {"system": LIMBS, "code": "leg", "coding": f"{LIMBS}|leg"}, None, 400, "coding"),
    ("GET", LOOKUP, {"code": "leg"}, None, 400, "system"),
    ("GET", LOOKUP, {"system": "http://example.org/nowhere", "code": "x"}, None, 404, "system"),
    ("GET", LOOKUP, {"system": LIMBS, "code": "tail"}, None, 404, "code"),
    ("GET", LOOKUP, {"system": LIMBS, "code": "leg", "date": "2020"}, None, 400, "date"),
    ("GET", "CodeSystem/nothing/$lookup", {"code": "x"}, None, 404, None),
    ("GET", EXPAND, {}, None, 400, "url"),
    ("GET", EXPAND, {"url": "http://example.org/nowhere"}, None, 404, "url"),
    ("GET", EXPAND, {"url": LOCAL_VS, "count": "-1"}, None, 400, "count"),
    ("GET", EXPAND, {"url": LOCAL_VS, "offset": "x"}, None, 400, "offset"),
    ("GET", EXPAND, [("url", LOCAL_VS), ("count", "1"), ("count", "2")], None, 400, "count"),
    ("GET", EXPAND, {"url": LOCAL_VS, "activeOnly": "maybe"}, None, 400, "activeOnly"),
    ("GET", EXPAND, {"url": LOCAL_VS, "valueSet": "{}"}, None, 400, "valueSet"),
    ("POST", EXPAND, None, {"resourceType": "ValueSet", "status": "draft"}, 400, "resourceType"),
    ("POST", EXPAND, None, {"resourceType": "Parameters", "parameter": [
        {"name": "valueSet", "resource": {"resourceType": "ValueSet", "status": "sometimes"}}]}, 400, "valueSet"),
    ("GET", "ValueSet/nothing/$expand", {}, None, 404, None),
    ("GET", "ValueSet/$validate-code", {"url": LOCAL_VS}, None, 400, "code"),
    ("GET", "ValueSet/$validate-code", {"url": LOCAL_VS, "code": "x", "codeableConcept": f"{LOCAL_CS}|x"},
     None, 400, "codeableConcept"),
    ("GET", "CodeSystem/$validate-code", {"code": "x"}, None, 400, "url"),
    ("GET", "CodeSystem/$subsumes", {"system": LIMBS, "codeA": "leg"}, None, 400, "codeB"),
    ("GET", "CodeSystem/$subsumes", {"system": LIMBS, "codeA": "leg", "codeB": "tail"}, None, 404, "codeB"),
    ("POST", "CodeSystem/$subsumes", None, params(("codingA", "Coding", {"system": LIMBS, "code": "leg"}),
                                                  ("codingB", "Coding", {"system": S, "code": "leg"})), 400, "codingB"),
    ("GET", "ConceptMap/$translate", {"code": "x"}, None, 400, "system"),
    ("GET", "ConceptMap/$translate", {"url": "http://example.org/nowhere", "system": S, "code": "x"}, None, 404, "url"),
    ("GET", "ConceptMap/$translate", {"system": S, "code": "x", "reverse": "sideways"}, None, 400, "reverse"),
]


@pytest.mark.parametrize("method,path,query,body,status,where", BAD)
def test_bad_input_is_an_outcome_naming_the_parameter(http, live, maps, method, path, query, body, status, where):
    if method == "GET":
        answer = http.get(f"{live}/{path}", params=query)
    else:
        answer = http.post(f"{live}/{path}", data=json.dumps(body), headers=FHIR)
    assert answer.status_code == status, answer.text
    outcome = answer.json()
    assert outcome["resourceType"] == "OperationOutcome"
    if where:
        assert [where] in [i.get("expression") for i in outcome["issue"]], outcome


def test_real_fhir_clients_call_the_operations(live, maps):
    fhir_py = SyncFHIRClient(live)
    expansion = fhir_py.execute("ValueSet/$expand", method="get", params={"url": LOCAL_VS, "count": 5})
    assert expansion["expansion"]["total"] > 5 and len(expansion["expansion"]["contains"]) == 5
    checked = fhir_py.execute("ValueSet/$validate-code", method="post", data=params(
        ("url", "Uri", LOCAL_VS), ("coding", "Coding", {"system": LOCAL_CS, "code": "gmfcs-2"})))
    assert one(checked, "result") is True
    smart = smart_client.FHIRClient(settings={"app_id": "test", "api_base": live})
    # fhirclient's models are strict: they refuse an element R4 does not define, or a wrong type
    vs = ValueSet(smart.server.request_json("ValueSet/ucmsc-cp-local/$expand?count=3"))
    assert vs.expansion.total > 3 and [c.code for c in vs.expansion.contains] == ["ucmsc-it", "ucmsc-iv", "gmfm-88-total"]
    lookup = Parameters(smart.server.request_json(f"CodeSystem/$lookup?system={GENDER}&code=female"))
    assert {p.name: p.valueString for p in lookup.parameter if p.valueString}["display"] == "Female"


def test_the_capability_statement_names_the_operations(http, live):
    statement = http.get(f"{live}/metadata").json()
    ops = {r["type"]: {o["name"]: o["definition"] for o in r.get("operation", [])}
           for r in statement["rest"][0]["resource"]}
    base = "http://hl7.org/fhir/OperationDefinition/"
    assert ops["CodeSystem"] | {"validate": None} == {
        "validate": None, "lookup": base + "CodeSystem-lookup", "validate-code": base + "CodeSystem-validate-code",
        "subsumes": base + "CodeSystem-subsumes"}
    assert ops["ValueSet"]["expand"] == base + "ValueSet-expand"
    assert ops["ValueSet"]["validate-code"] == base + "ValueSet-validate-code"
    assert ops["ConceptMap"]["translate"] == base + "ConceptMap-translate"


def test_the_operations_are_held_to_the_clients_scopes(gateway):  # noqa: F811
    gateway.store.load([LIMBS_CS])
    site = session(gateway, "site-a-ehr")  # a site's client: the terminology is every client's to read
    answer = site.get(f"{fhir(gateway)}/CodeSystem/$lookup", params={"system": LIMBS, "code": "leg"})
    assert answer.status_code == 200 and one(answer.json(), "display") == "Leg"
    core = site.get(f"{fhir(gateway)}/ValueSet/$expand", params={"url": "http://hl7.org/fhir/ValueSet/administrative-gender"})
    assert core.status_code == 200 and core.json()["expansion"]["total"] == 4
    narrow = session(gateway, "patients-only", "system/Patient.rs")
    refused(narrow.get(f"{fhir(gateway)}/CodeSystem/$lookup", params={"system": LIMBS, "code": "leg"}),
            403, "CodeSystem")
    refused(narrow.get(f"{fhir(gateway)}/ValueSet/$expand", params={"url": "http://hl7.org/fhir/ValueSet/administrative-gender"}),
            403, "ValueSet")
