"""PlanDefinition/$apply applies every action's definition, down to the ActivityDefinitions: the
CarePlan holds a RequestGroup (a visit per action, its activities nested) and the requests the
ActivityDefinitions define, so an EHR reads the route and the dose without resolving anything."""
from __future__ import annotations

import json

import pytest

import test_protocol_operations
from adapter.fhir.validation import validate
from r4schema import assert_r4
from test_protocol_operations import visits

protocol_store = test_protocol_operations.protocol_store  # the fixture: the protocol and a hand-made child

SNOMED = "http://snomed.info/sct"
INTRATHECAL, INTRAVENOUS = "72607000", "47625008"
AD = "http://ucmsc-cp.example.org/fhir/ActivityDefinition/ucmsc-cp-"


def apply(http, live, plan: str, start: str = "2026-01-05") -> dict:
    r = http.get(f"{live}/PlanDefinition/{plan}/$apply", params={"subject": "Patient/kid", "start": start})
    assert r.status_code == 200, r.text
    care_plan = r.json()
    assert validate(care_plan) == []
    assert_r4(care_plan)  # the contained RequestGroup and requests each against their own definition
    return care_plan


def contained(care_plan: dict, reference: str) -> dict:
    [found] = [r for r in care_plan["contained"] if f"#{r['id']}" == reference]
    return found


def requests_of(care_plan: dict, visit: str) -> list[dict]:
    return [contained(care_plan, step["resource"]["reference"]) for step in visits(care_plan)[visit]["action"]]


def routes_and_doses(requests: list[dict]) -> list[tuple[str, float, str]]:
    return [(d["route"]["coding"][0]["code"], d["doseAndRate"][0]["doseQuantity"]["value"],
             d["doseAndRate"][0]["doseQuantity"]["code"])
            for r in requests if r["resourceType"] == "MedicationRequest" for d in r["dosageInstruction"]]


def test_each_injection_is_a_dated_medication_request_with_its_route_and_dose(http, live, protocol_store):
    care_plan = apply(http, live, "ucmsc-cp-arm-1")
    assert list(visits(care_plan)) == ["baseline", "c1-d0", "c1-d7", "c1-d14", "c1-d21", "fu-m1", "fu-m3", "fu-m6",
                                       "fu-m12", "fu-m18", "fu-m24", "fu-m28"]
    [injection] = [r for r in requests_of(care_plan, "c1-d0") if r["resourceType"] == "MedicationRequest"]
    assert injection["instantiatesCanonical"] == [f"{AD}intrathecal-injection|1.0.0"]
    assert (injection["intent"], injection["subject"]) == ("option", {"reference": "Patient/kid"})
    assert injection["medicationCodeableConcept"]["coding"][0]["code"] == "ucmsc"
    dosage = injection["dosageInstruction"][0]
    assert dosage["route"]["coding"][0]["system"] == SNOMED
    assert dosage["timing"] == {"event": ["2026-01-05"], "repeat": {"boundsPeriod": {"start": "2026-01-03",
                                                                                     "end": "2026-01-07"}}}
    assert routes_and_doses(requests_of(care_plan, "c1-d0")) == [(INTRATHECAL, 1, "10*6/kg")]
    assert routes_and_doses(requests_of(care_plan, "c1-d21")) == [(INTRAVENOUS, 1, "10*6/kg")]
    assert routes_and_doses(requests_of(care_plan, "fu-m1")) == []
    adl = requests_of(care_plan, "fu-m1")[0]
    assert adl["resourceType"] == "ServiceRequest" and adl["code"]["coding"][0]["code"] == "96761-2"
    assert adl["occurrenceTiming"]["event"] == ["2026-02-26"]


def test_the_injection_visits_of_arm_2_carry_both_routes(http, live, protocol_store):
    care_plan = apply(http, live, "ucmsc-cp-arm-2")
    injections = [v for v in visits(care_plan) if v.startswith("c")]
    assert injections == ["c1-d0", "c2-d28", "c3-d56", "c4-d84"]
    for visit in injections:
        assert sorted(routes_and_doses(requests_of(care_plan, visit))) == [
            (INTRAVENOUS, 1, "10*6/kg"), (INTRATHECAL, 1, "10*6/kg")], visit


def test_the_care_plan_lists_the_group_then_every_request_and_contains_nothing_else(http, live, protocol_store):
    care_plan = apply(http, live, "ucmsc-cp-arm-1")
    group, *requests = care_plan["contained"]
    assert group["resourceType"] == "RequestGroup" and group["instantiatesCanonical"] == care_plan["instantiatesCanonical"]
    references = [a["reference"]["reference"] for a in care_plan["activity"]]
    assert references == [f"#{group['id']}"] + [f"#{r['id']}" for r in requests]
    nested = [step["resource"]["reference"] for visit in group["action"] for step in visit["action"]]
    assert nested == references[1:]  # the group's nesting and the flat list name the same requests, in order
    assert all(not r.get("contained") and not r.get("meta") for r in care_plan["contained"])  # R4 dom-2, dom-4
    injection = next(a for a in care_plan["activity"] if a["reference"]["reference"] == "#c1-d0-intrathecal-injection")
    assert injection["reference"]["display"] == ("Course 1, injection 1 (day 0): "
                                                 "Intrathecal UC-MSC injection (lumbar puncture)")
    follow_up = visits(care_plan)["fu-m1"]
    assert follow_up["relatedAction"] == [{"actionId": "c1-d21", "relationship": "after-end", "offsetDuration": {
        "value": 1, "unit": "months", "system": "http://unitsofmeasure.org", "code": "mo"}}]


def test_a_persisted_plan_keeps_its_requests(http, live, protocol_store):
    r = http.post(f"{live}/PlanDefinition/ucmsc-cp-arm-2/$apply", params={"subject": "Patient/kid",
                  "start": "2026-01-05", "persist": "true"}, json={"resourceType": "Parameters"},
                  headers={"Content-Type": "application/fhir+json"})
    assert r.status_code == 200, r.text
    stored = http.get(f"{live}/CarePlan/{r.json()['id']}").json()
    assert routes_and_doses(requests_of(stored, "c4-d84")) == routes_and_doses(requests_of(r.json(), "c4-d84"))
    assert len(routes_and_doses([c for c in stored["contained"]])) == 8


@pytest.mark.parametrize("kind, where", [("Task", "ActivityDefinition.kind"),
                                         ("MedicationRequest", "ActivityDefinition.product[x]")])
def test_an_activity_definition_this_server_cannot_apply_is_a_422(http, live, protocol_store, kind, where):
    stored = protocol_store.read("ActivityDefinition", "ucmsc-cp-adl")
    activity = json.loads(stored.data)
    protocol_store.update({**activity, "kind": kind})
    r = http.get(f"{live}/PlanDefinition/ucmsc-cp-arm-1/$apply", params={"subject": "Patient/kid", "start": "2026-01-05"})
    assert r.status_code == 422, r.text
    assert r.json()["issue"][0]["expression"] == [where]


def test_a_site_shares_the_plan_with_its_requests_under_the_centres_policy(protocol_store):
    """The centre's policy keeps CarePlan.contained (protocol content only), the children's
    references in it re-keyed like every other: no activity of a shared plan points nowhere."""
    from datetime import date

    from adapter.exchange.deidentify import Deidentifier
    from adapter.exchange.policy import load_policy, policy_path
    from adapter.fhir.sites import with_site
    from adapter.protocol.apply import apply_plan
    from conftest import ROOT
    care_plan = with_site(apply_plan(protocol_store, "ucmsc-cp-arm-2", "Patient/kid", date(2026, 1, 5)), "site-a")
    shared = Deidentifier(load_policy(policy_path(ROOT / "mappings" / "exchange", "centre-v1")), b"k" * 32).apply(care_plan)
    assert shared is not None and validate(shared) == []
    assert_r4(shared)
    assert {f"#{r['id']}" for r in shared["contained"]} == {a["reference"]["reference"] for a in shared["activity"]}
    subjects = {r["subject"]["reference"] for r in shared["contained"]} | {shared["subject"]["reference"]}
    assert len(subjects) == 1 and "kid" not in subjects.pop()  # the child's re-keyed id, everywhere
    assert len(routes_and_doses(shared["contained"])) == 8
