"""$apply and $adherence over HTTP and the CLI, on hand-made children."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from adapter.fhir.search import parse_search
from conftest import table_counts
from adapter.study.build import build_resources
from adapter.protocol.spec import load_spec
from r4schema import assert_r4
from test_protocol_spec import SPEC

LOCAL = "http://ucmsc-cp.example.org/fhir/CodeSystem/ucmsc-cp-local"
CLI = str(Path(sys.executable).parent / "fhir-adapter")


def injection(pid: str, n: int, day: str, route: str) -> dict:
    return {"resourceType": "Procedure", "id": f"{pid}-inj-{n}", "status": "completed",
            "code": {"coding": [{"system": LOCAL, "code": f"ucmsc-{route}"}]},
            "subject": {"reference": f"Patient/{pid}"}, "performedDateTime": day}


@pytest.fixture
def protocol_store(store):
    store.load(build_resources(load_spec(SPEC)))
    store.load([
        {"resourceType": "Patient", "id": "kid"},
        {"resourceType": "ResearchSubject", "id": "ucmsc-cp-kid", "status": "on-study",
         "study": {"reference": "ResearchStudy/ucmsc-cp"}, "individual": {"reference": "Patient/kid"},
         "assignedArm": "arm-1", "period": {"start": "2026-01-05"}},
        injection("kid", 1, "2026-01-05", "it"),   # c1-d0: in window
        injection("kid", 2, "2026-01-16", "it"),   # c1-d7 (window to 01-14): 2 days late
        injection("kid", 3, "2026-01-19", "iv"),   # c1-d14 should be intrathecal: wrong route
        injection("kid", 4, "2026-02-20", "it"),   # nowhere near a planned injection: extra
        {"resourceType": "Observation", "id": "kid-adl", "status": "final",
         "code": {"coding": [{"system": "http://loinc.org", "code": "96761-2"}]},
         "subject": {"reference": "Patient/kid"}, "effectiveDateTime": "2025-12-30",
         "valueQuantity": {"value": 45}},
    ])
    return store


def visits(care_plan: dict) -> dict[str, dict]:
    """$apply's visits: the actions of the CarePlan's contained RequestGroup, by visit id."""
    [group] = [r for r in care_plan["contained"] if r["resourceType"] == "RequestGroup"]
    return {action["id"]: action for action in group["action"]}


def statuses(parameters: dict) -> dict[tuple[str, str, str], dict]:
    found = {}
    for p in parameters["parameter"]:
        if p["name"] != "finding":
            continue
        parts = {q["name"]: next(v for k, v in q.items() if k.startswith("value")) for q in p["part"]}
        code = parts.get("code", {}).get("code", "-")
        found[(parts["visit"], parts["activity"], code)] = parts
    return found


def test_adherence_reports_every_kind(http, live, protocol_store):
    r = http.get(f"{live}/ResearchSubject/ucmsc-cp-kid/$adherence", params={"as-of": "2026-02-01"})
    assert r.status_code == 200, r.text
    report = r.json()
    assert_r4(report)
    found = statuses(report)
    it, iv = "ucmsc-cp-intrathecal-injection", "ucmsc-cp-intravenous-injection"
    assert found[("c1-d0", it, "ucmsc-it")]["status"] == "done-in-window"
    late = found[("c1-d7", it, "ucmsc-it")]
    assert late["status"] == "done-out-of-window" and late["daysOutsideWindow"] == 2
    assert late["resource"] == {"reference": "Procedure/kid-inj-2"}
    assert found[("c1-d14", it, "ucmsc-it")]["status"] == "wrong-route"
    assert found[("c1-d21", iv, "ucmsc-iv")]["status"] == "missing"
    extra = found[("-", "-", "ucmsc-it")]
    assert extra["status"] == "extra" and extra["resource"] == {"reference": "Procedure/kid-inj-4"}
    assert found[("baseline", "ucmsc-cp-adl", "96761-2")]["status"] == "done-in-window"
    assert found[("fu-m1", "ucmsc-cp-adl", "96761-2")]["status"] == "not-yet-due"
    summary = {q["name"]: q["valueInteger"] for q in report["parameter"][2]["part"]}
    assert summary["extra"] == 1 and summary["wrong-route"] == 1 and summary["done-out-of-window"] == 1


def test_apply_returns_a_dated_care_plan_and_persists_on_request(http, live, protocol_store):
    r = http.get(f"{live}/PlanDefinition/ucmsc-cp-arm-1/$apply",
                 params={"subject": "Patient/kid", "start": "2024-01-31"})
    assert r.status_code == 200, r.text
    plan = r.json()
    assert_r4(plan)
    timing = {f"ucmsc-cp-arm-1-{a['id']}": a["timingTiming"] for a in visits(plan).values()}
    assert len(timing) == 12 and plan["subject"] == {"reference": "Patient/kid"}
    first_follow_up = timing["ucmsc-cp-arm-1-fu-m1"]
    assert first_follow_up["event"] == ["2024-03-21"]
    assert first_follow_up["repeat"]["boundsPeriod"] == {"start": "2024-03-14", "end": "2024-03-28"}
    assert timing["ucmsc-cp-arm-1-c1-d21"]["event"] == ["2024-02-21"]
    assert protocol_store.search(parse_search("CarePlan", [])).total == 0  # R4 $apply stores nothing
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "subject", "valueString": "Patient/kid"}, {"name": "start", "valueDate": "2026-02-02"},
        {"name": "persist", "valueBoolean": True}]}
    r = http.post(f"{live}/PlanDefinition/ucmsc-cp-arm-1/$apply", data=json.dumps(body),
                  headers={"Content-Type": "application/fhir+json"})
    assert r.status_code == 200, r.text
    stored = protocol_store.read("CarePlan", r.json()["id"])
    assert b'"2026-02-02"' in stored.data
    subject = json.loads(protocol_store.read("ResearchSubject", "ucmsc-cp-kid").data)
    assert subject["period"]["start"] == "2026-02-02" and subject["assignedArm"] == "arm-1"


@pytest.mark.parametrize("path,params,status,where", [
    ("PlanDefinition/ucmsc-cp-arm-1/$apply", {"subject": "Patient/kid", "start": "2026-02-30"}, 400, "start"),
    ("PlanDefinition/ucmsc-cp-arm-1/$apply", {"subject": "Group/x", "start": "2026-02-01"}, 400, "subject"),
    ("PlanDefinition/ucmsc-cp-arm-1/$apply", {"subject": "Patient/nobody", "start": "2026-02-01"}, 404, None),
    ("PlanDefinition/ucmsc-cp-arm-1-c1-d0/$apply", {"subject": "Patient/kid", "start": "2026-02-01"}, 400, None),
    ("PlanDefinition/missing/$apply", {"subject": "Patient/kid", "start": "2026-02-01"}, 404, None),
    ("ResearchSubject/ucmsc-cp-kid/$adherence", {"as-of": "soon"}, 400, "as-of"),
    ("ResearchSubject/nobody/$adherence", {}, 404, None),
])
def test_operation_errors_are_outcomes(http, live, protocol_store, path, params, status, where):
    r = http.get(f"{live}/{path}", params=params)
    assert r.status_code == status, r.text
    outcome = r.json()
    assert outcome["resourceType"] == "OperationOutcome"
    if where:
        assert outcome["issue"][0]["expression"] == [where]


def test_capability_statement_lists_the_operations(http, live):
    cs = http.get(f"{live}/metadata").json()
    ops = {res["type"]: [o["name"] for o in res.get("operation", [])] for res in cs["rest"][0]["resource"]}
    assert ops["PlanDefinition"] == ["validate", "apply"] and ops["ResearchSubject"] == ["validate", "adherence"]
    assert ops["Observation"] == ["validate"]


@pytest.mark.slow
def test_cli_load_apply_and_adherence(db_url, protocol_store):
    def run(*args):
        return subprocess.run([CLI, "protocol", *args, "--db", db_url], capture_output=True, text=True, timeout=120)
    loaded = run("load", str(SPEC))
    assert loaded.returncode == 0 and f"{len(build_resources(load_spec(SPEC)))} protocol resources stored" in loaded.stdout
    applied = run("apply", "--plan", "ucmsc-cp-arm-1", "--subject", "Patient/kid", "--start", "2024-01-31")
    assert applied.returncode == 0, applied.stderr
    assert "2024-03-21" in applied.stdout and "2024-03-14 .. 2024-03-28" in applied.stdout
    report = run("adherence", "ucmsc-cp-kid", "--as-of", "2026-02-01")
    assert report.returncode == 0, report.stderr
    assert "wrong-route" in report.stdout and "1 extra" in report.stdout
    bad = run("apply", "--plan", "ucmsc-cp-arm-1", "--subject", "Patient/nobody", "--start", "2024-01-31")
    assert bad.returncode != 0 and "Patient/nobody" in bad.stderr


def test_adherence_pairs_same_day_routes_in_arm_2(protocol_store):
    from datetime import date

    from adapter.protocol.adherence import adherence
    protocol_store.load([
        {"resourceType": "Patient", "id": "kid2"},
        {"resourceType": "ResearchSubject", "id": "ucmsc-cp-kid2", "status": "on-study",
         "study": {"reference": "ResearchStudy/ucmsc-cp"}, "individual": {"reference": "Patient/kid2"},
         "assignedArm": "arm-2", "period": {"start": "2026-01-05"}},
        injection("kid2", 1, "2026-01-05", "iv"), injection("kid2", 2, "2026-01-05", "it"),
        injection("kid2", 3, "2026-02-03", "iv"),  # course 2 (due 02-02): intravenous only, a day late
    ])
    found = {(f.visit, f.activity): f for f in adherence(protocol_store, "ucmsc-cp-kid2", date(2026, 3, 20))
             if f.activity.endswith("injection")}
    it, iv = "ucmsc-cp-intrathecal-injection", "ucmsc-cp-intravenous-injection"
    assert found[("c1-d0", iv)].status == found[("c1-d0", it)].status == "done-in-window"
    assert {found[("c1-d0", iv)].resource, found[("c1-d0", it)].resource} == {
        "Procedure/kid2-inj-1", "Procedure/kid2-inj-2"}
    assert found[("c2-d28", iv)].status == "done-in-window"  # window +-2 days
    assert found[("c2-d28", it)].status == "missing"
    assert found[("c3-d56", iv)].status == "missing"


@pytest.mark.parametrize("path", ["PlanDefinition/ucmsc-cp-arm-1/$apply", "Observation/$validate",
                                  "ResearchSubject/ucmsc-cp-kid/$adherence"])
@pytest.mark.parametrize("body", [b"[]", b'{"resourceType": "Parameters", "parameter": "x"}',
                                  b'{"resourceType": "Parameters", "parameter": [1]}', b"{"])
def test_malformed_operation_bodies_are_400(http, live, protocol_store, path, body):
    r = http.post(f"{live}/{path}", data=body, headers={"Content-Type": "application/fhir+json"})
    if path.endswith("$validate") and body == b"[]":  # a body that parses: $validate reports on it
        assert r.status_code == 200 and r.json()["issue"][0]["severity"] == "error"
        return
    assert r.status_code == 400, r.text
    assert r.json()["resourceType"] == "OperationOutcome"


PROTOCOL_TYPE = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/plan-definition-type",
                             "code": "clinical-protocol"}]}


def _plan(pid: str, actions: list[dict]) -> dict:
    return {"resourceType": "PlanDefinition", "id": pid, "status": "active", "type": PROTOCOL_TYPE,
            "url": f"http://example.org/PlanDefinition/{pid}", "action": actions}


def _after(action_id: str, days=1) -> list[dict]:
    offset = {"code": "d"} if days is None else {"value": days, "code": "d"}
    return [{"actionId": action_id, "relationship": "after-start", "offsetDuration": offset}]


@pytest.mark.parametrize("actions,where", [
    ([{"id": "a", "definitionCanonical": "x"}, {"id": "b", "definitionCanonical": "x",
                                                "relatedAction": _after("a", None)}],
     "PlanDefinition.action[1].relatedAction[0]"),
    ([{"id": "a", "definitionCanonical": "x", "relatedAction": _after("b")},
      {"id": "b", "definitionCanonical": "x", "relatedAction": _after("a")}], "PlanDefinition.action"),
    ([{"id": "a", "definitionCanonical": "x"}, {"id": "b", "definitionCanonical": "x",
                                                "relatedAction": _after("nowhere")}],
     "PlanDefinition.action[1].relatedAction[0]"),
    ([{"title": "no id"}], "PlanDefinition.action[0]"),
    ([{"id": "a", "definitionCanonical": "x"}, {"id": "b", "definitionCanonical": "x"}], "PlanDefinition.action"),
])
def test_plans_that_cannot_be_scheduled_are_422_naming_the_element(http, live, protocol_store, actions, where):
    protocol_store.update(_plan("odd", actions))
    r = http.get(f"{live}/PlanDefinition/odd/$apply", params={"subject": "Patient/kid", "start": "2026-01-01"})
    assert r.status_code == 422, r.text
    assert r.json()["issue"][0]["expression"] == [where]


@pytest.mark.parametrize("study_protocols,arm,start,where", [
    (["PlanDefinition/ucmsc-cp-arm-1"], "arm-2", "2026-01-05", "ResearchStudy.protocol"),
    (["PlanDefinition/ucmsc-cp-arm-1", "PlanDefinition/ucmsc-cp-arm-2"], "arm-1", "2026-01", "ResearchSubject.period.start"),
])
def test_subjects_that_cannot_be_checked_are_422(http, live, protocol_store, study_protocols, arm, start, where):
    protocol_store.load([
        {"resourceType": "ResearchStudy", "id": "short", "status": "active",
         "arm": [{"name": "arm-1"}, {"name": "arm-2"}], "protocol": [{"reference": r} for r in study_protocols]},
        {"resourceType": "ResearchSubject", "id": "odd", "status": "on-study", "assignedArm": arm,
         "study": {"reference": "ResearchStudy/short"}, "individual": {"reference": "Patient/kid"},
         "period": {"start": start}}])
    r = http.get(f"{live}/ResearchSubject/odd/$adherence")
    assert r.status_code == 422, r.text
    assert r.json()["issue"][0]["expression"] == [where]


@pytest.mark.parametrize("persist", ["true", "TRUE"])
def test_apply_persists_only_by_post(http, live, protocol_store, persist):
    """A link or an image on another site can make a browser GET it: GET must not write."""
    before = table_counts(protocol_store)
    params = {"subject": "Patient/kid", "start": "2026-02-02", "persist": persist}
    r = http.get(f"{live}/PlanDefinition/ucmsc-cp-arm-1/$apply", params=params)
    assert r.status_code == 405, r.text
    assert r.headers["Allow"] == "POST"
    assert r.json()["issue"][0]["expression"] == ["persist"]
    assert table_counts(protocol_store) == before
    r = http.post(f"{live}/PlanDefinition/ucmsc-cp-arm-1/$apply", params=params,
                  data=json.dumps({"resourceType": "Parameters"}), headers={"Content-Type": "application/fhir+json"})
    assert r.status_code == 200, r.text
    assert protocol_store.read("CarePlan", r.json()["id"]).data


def test_apply_without_start_takes_the_research_subjects_start_else_today(http, live, protocol_store):
    from datetime import date
    r = http.get(f"{live}/PlanDefinition/ucmsc-cp-arm-1/$apply", params={"subject": "Patient/kid"})
    assert r.status_code == 200, r.text
    care_plan = r.json()
    assert_r4(care_plan)
    assert visits(care_plan)["c1-d0"]["timingTiming"]["event"] == ["2026-01-05"]
    assert "ResearchSubject/ucmsc-cp-kid" in care_plan["note"][0]["text"]
    protocol_store.load([{"resourceType": "Patient", "id": "newcomer"}])
    r = http.get(f"{live}/PlanDefinition/ucmsc-cp-arm-1/$apply", params={"subject": "Patient/newcomer"})
    assert r.status_code == 200, r.text
    today = date.today().isoformat()
    assert visits(r.json())["c1-d0"]["timingTiming"]["event"] == [today]
    assert "today" in r.json()["note"][0]["text"]
