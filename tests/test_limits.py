"""Bounds on what one request may ask: each limit is a 400 or 413 OperationOutcome naming it."""
from __future__ import annotations

import json
import time

import pytest
from conftest import observation, table_counts

from adapter.fhir.jsonio import MAX_NUMBER_EXPONENT, MAX_NUMBER_LENGTH, parse
from adapter.fhir.outcomes import FhirError
from adapter.fhir.search import (
    MAX_COUNT, MAX_ELEMENTS, MAX_FILTERS, MAX_INCLUDES, MAX_PARAMETERS, MAX_SORT_KEYS, MAX_VALUES,
)
from adapter.gateway.app import MAX_FORM_LENGTH, MAX_URL_LENGTH
from adapter.gateway.transactions import MAX_BUNDLE_ENTRIES
from adapter.protocol.schedule import MAX_PLAN_ACTIONS

FHIR_JSON = "application/fhir+json"


def _outcome(response, status, where):
    assert response.status_code == status, response.data[:500]
    outcome = response.get_json(force=True)
    assert outcome["resourceType"] == "OperationOutcome"
    assert any(where in i.get("expression", []) or where in i["diagnostics"] for i in outcome["issue"]), outcome
    return outcome


@pytest.mark.parametrize("literal", [
    "1E+999999999", "1e-999999999", f"1e{MAX_NUMBER_EXPONENT + 1}", "9" * (MAX_NUMBER_LENGTH + 1),
    "0." + "1" * MAX_NUMBER_LENGTH, "1e+" + "9" * 40,
])
def test_numbers_out_of_range_are_refused_before_conversion(literal):
    started = time.perf_counter()
    with pytest.raises(FhirError) as caught:
        parse(f'{{"resourceType": "Observation", "component": [{{}}, {{"valueInteger": {literal}}}]}}')
    assert time.perf_counter() - started < 0.5
    assert caught.value.status == 400
    assert caught.value.issues[0].expression == "Observation.component[1].valueInteger"


@pytest.mark.parametrize("literal", ["1e300", "-1.5e-300", "1" * MAX_NUMBER_LENGTH, "6.30"])
def test_numbers_in_range_are_kept(literal):
    assert parse(f'[{literal}]')[0] == type(parse(f'[{literal}]')[0])(literal)


def test_sixty_bytes_do_not_stop_a_worker(client):
    started = time.perf_counter()
    r = client.post("/fhir/Patient", data=b'{"resourceType":"Patient","multipleBirthInteger":1E+999999999}',
                    content_type=FHIR_JSON)
    assert time.perf_counter() - started < 1
    _outcome(r, 400, "Patient.multipleBirthInteger")


def _repeat(name, value, times):
    return "&".join(f"{name}={value}" for _ in range(times))


SEARCH_LIMITS = [  # (query over the limit, query at the limit, parameter named)
    (f"_sort={','.join(['date'] * (MAX_SORT_KEYS + 1))}", f"_sort={','.join(['date'] * MAX_SORT_KEYS)}", "_sort"),
    (_repeat("status:not", "x", MAX_FILTERS + 1), _repeat("status:not", "x", MAX_FILTERS), "status:not"),
    (f"_elements={','.join(['status'] * (MAX_ELEMENTS + 1))}", f"_elements={','.join(['status'] * MAX_ELEMENTS)}",
     "_elements"),
    (_repeat("_include", "Observation:subject", MAX_INCLUDES + 1),
     _repeat("_include", "Observation:subject", MAX_INCLUDES), "_include"),
    (f"subject={','.join(f'Patient/p{i}' for i in range(MAX_VALUES + 1))}",
     f"subject={','.join(f'Patient/p{i}' for i in range(MAX_VALUES))}", "subject"),
    (f"date={','.join(['2026-01-02'] * (MAX_VALUES + 1))}", f"date={','.join(['2026-01-02'] * MAX_VALUES)}",
     "date"),
    (_repeat("colour", "x", MAX_PARAMETERS + 1), _repeat("colour", "x", MAX_PARAMETERS), "colour"),
]


@pytest.mark.parametrize("over,at,name", SEARCH_LIMITS, ids=[c[2] for c in SEARCH_LIMITS])
def test_search_limits(client, over, at, name):
    _outcome(client.get(f"/fhir/Observation?{over}"), 400, name)
    _outcome(client.post("/fhir/Observation/_search", data=over,
                         content_type="application/x-www-form-urlencoded"), 400, name)
    assert client.get(f"/fhir/Observation?{at}").status_code == 200


def test_a_condition_is_bounded_too(client):
    r = client.post("/fhir/Observation", data=json.dumps(observation()), content_type=FHIR_JSON,
                    headers={"If-None-Exist": _repeat("status:not", "x", MAX_FILTERS + 1)})
    _outcome(r, 400, "status:not")


def test_urls_and_search_bodies_are_bounded(client):
    _outcome(client.get(f"/fhir/Observation?code={'x' * MAX_URL_LENGTH}"), 414, "URL")
    _outcome(client.get(f"/fhir/metadata?x={'x' * MAX_URL_LENGTH}"), 414, "URL")
    assert client.get(f"/fhir/Observation?code={'x' * (MAX_URL_LENGTH - 100)}").status_code == 200
    _outcome(client.post("/fhir/Observation/_search", data=f"code={'x' * MAX_FORM_LENGTH}",
                         content_type="application/x-www-form-urlencoded"), 413, "_search")


PROTOCOL_TYPE = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/plan-definition-type",
                             "code": "clinical-protocol"}]}


def _chained_plan(actions: int, days: int = 1) -> dict:
    """Each action timed from the one before, listed last first (the order that costs most)."""
    chain = [{"id": "a0", "definitionCanonical": "http://example.org/PlanDefinition/visit"}]
    chain += [{"id": f"a{i}", "definitionCanonical": "http://example.org/PlanDefinition/visit",
               "relatedAction": [{"actionId": f"a{i - 1}", "relationship": "after-start",
                                  "offsetDuration": {"value": days, "code": "d"}}]} for i in range(1, actions)]
    return {"resourceType": "PlanDefinition", "id": "long", "status": "active", "type": PROTOCOL_TYPE,
            "url": "http://example.org/PlanDefinition/long", "action": chain[::-1]}


# What each visit of the chained plan applies ($apply resolves it, once for all the visits).
VISIT_DEFINITIONS = [
    {"resourceType": "PlanDefinition", "id": "visit", "status": "active", "url": "http://example.org/PlanDefinition/visit",
     "action": [{"id": "check", "definitionCanonical": "http://example.org/ActivityDefinition/check"}]},
    {"resourceType": "ActivityDefinition", "id": "check", "status": "active", "kind": "ServiceRequest",
     "url": "http://example.org/ActivityDefinition/check", "code": {"text": "a check"}},
]


@pytest.mark.parametrize("actions,status", [(12_000, 422), (MAX_PLAN_ACTIONS, 200)])
def test_apply_is_bounded_by_the_plan_size(client, store, actions, status):
    store.load([{"resourceType": "Patient", "id": "kid"}, _chained_plan(actions), *VISIT_DEFINITIONS])
    started = time.perf_counter()
    r = client.get("/fhir/PlanDefinition/long/$apply?subject=Patient/kid&start=2026-01-05")
    assert time.perf_counter() - started < 3
    assert r.status_code == status, r.data[:300]
    if status != 200:
        _outcome(r, status, "PlanDefinition.action")


def test_a_schedule_past_the_calendar_is_422(client, store):
    store.load([{"resourceType": "Patient", "id": "kid"}, _chained_plan(2, days=10 ** 9)])
    _outcome(client.get("/fhir/PlanDefinition/long/$apply?subject=Patient/kid&start=2026-01-05"), 422,
             "PlanDefinition.action[0].relatedAction[0]")


@pytest.mark.parametrize("kind", ["transaction", "batch"])
def test_bundles_are_bounded_by_their_entries(client, store, kind):
    entry = {"request": {"method": "POST", "url": "Observation"}, "resource": observation()}
    bundle = {"resourceType": "Bundle", "type": kind, "entry": [entry] * (MAX_BUNDLE_ENTRIES + 1)}
    client.application.config["MAX_CONTENT_LENGTH"] = 10 * 1024 * 1024
    before = table_counts(store)
    _outcome(client.post("/fhir", data=json.dumps(bundle), content_type=FHIR_JSON), 413, "Bundle.entry")
    assert table_counts(store) == before


def test_count_above_the_maximum_is_capped_and_said(client):
    bundle = client.get(f"/fhir/Observation?_count={MAX_COUNT + 1}&status=final").get_json(force=True)
    self_link = next(link["url"] for link in bundle["link"] if link["relation"] == "self")
    assert f"_count={MAX_COUNT}" in self_link and f"_count={MAX_COUNT + 1}" not in self_link
    outcomes = [e["resource"] for e in bundle.get("entry", []) if e["search"]["mode"] == "outcome"]
    issues = [i for o in outcomes for i in o["issue"]]
    assert any(i["severity"] == "warning" and "_count" in i.get("expression", []) and str(MAX_COUNT) in i["diagnostics"]
               for i in issues), bundle
