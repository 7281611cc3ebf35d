"""Conditional create, update and delete (http.html#ccreate, #cond-update, #cdelete): one
resource per condition even under concurrency, 412 when a condition matches several."""
from __future__ import annotations

import json
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from conftest import table_counts
from test_race import _start

FHIR_JSON = {"Content-Type": "application/fhir+json"}


def patient(value: str = "P-1", **extra):
    return {"resourceType": "Patient", "identifier": [{"system": "urn:site", "value": value}], **extra}


def post(client, body, condition=None):
    headers = dict(FHIR_JSON, **({"If-None-Exist": condition} if condition else {}))
    return client.post("/fhir/Patient", data=json.dumps(body), headers=headers)


def test_conditional_create_makes_one_then_returns_it(client):
    first = post(client, patient(), "identifier=urn:site|P-1")
    again = post(client, patient(gender="female"), "identifier=urn:site|P-1")
    assert first.status_code == 201 and again.status_code == 200
    assert again.headers["Location"] == first.headers["Location"]
    assert again.get_json()["id"] == first.get_json()["id"] and "gender" not in again.get_json()
    total = client.get("/fhir/Patient?identifier=urn:site|P-1").get_json()["total"]
    assert total == 1


def test_conditional_create_412_when_several_match(client):
    post(client, patient("A"))
    post(client, patient("A"))
    before = client.get("/fhir/Patient").get_json()["total"]
    r = post(client, patient("A"), "identifier=urn:site|A")
    assert r.status_code == 412 and r.get_json()["resourceType"] == "OperationOutcome"
    assert client.get("/fhir/Patient").get_json()["total"] == before


def test_a_condition_with_an_unknown_parameter_is_refused(client, store):
    before = table_counts(store)
    r = post(client, patient(), "identifer=urn:site|P-1")  # misspelt: must not match everything
    assert r.status_code == 400 and "identifer" in r.get_data(as_text=True)
    empty = post(client, patient(), "_count=1")
    assert empty.status_code == 400
    assert table_counts(store) == before


def test_conditional_update_creates_updates_and_refuses_ambiguity(client):
    url = "/fhir/Patient?identifier=urn:site|U-1"
    created = client.put(url, data=json.dumps(patient("U-1")), headers=FHIR_JSON)
    assert created.status_code == 201
    rid = created.get_json()["id"]
    updated = client.put(url, data=json.dumps(patient("U-1", gender="male")), headers=FHIR_JSON)
    assert updated.status_code == 200 and updated.get_json()["id"] == rid
    assert updated.get_json()["meta"]["versionId"] == "2"
    wrong = client.put(url, data=json.dumps(patient("U-1", id="other")), headers=FHIR_JSON)
    assert wrong.status_code == 400
    post(client, patient("U-2"))
    post(client, patient("U-2"))
    several = client.put("/fhir/Patient?identifier=urn:site|U-2", data=json.dumps(patient("U-2")),
                         headers=FHIR_JSON)
    assert several.status_code == 412


def test_conditional_delete(client):
    rid = post(client, patient("D-1")).get_json()["id"]
    assert client.delete("/fhir/Patient?identifier=urn:site|D-1").status_code == 204
    assert client.get(f"/fhir/Patient/{rid}").status_code == 410
    assert client.delete("/fhir/Patient?identifier=urn:site|D-1").status_code == 204  # none left
    post(client, patient("D-2"))
    post(client, patient("D-2"))
    assert client.delete("/fhir/Patient?identifier=urn:site|D-2").status_code == 412
    assert client.get("/fhir/Patient?identifier=urn:site|D-2").get_json()["total"] == 2


@pytest.mark.slow
def test_fifty_concurrent_conditional_creates_make_one_resource(db_url):
    """Through 4 gunicorn workers, bursts of 50 simultaneous POSTs with the same If-None-Exist
    (5 bursts: without the lock, PostgreSQL made duplicates in 8 bursts of 10 here)."""
    with tempfile.TemporaryDirectory() as home:
        proc, base = _start(db_url, Path(home))
        try:
            for burst in range(5):
                value = f"RACE-{burst}"
                barrier = threading.Barrier(50)

                def attempt(n: int, value: str = value, barrier: threading.Barrier = barrier) -> tuple[int, str]:
                    with requests.Session() as session:
                        barrier.wait(timeout=60)
                        r = session.post(f"{base}/Patient", data=json.dumps(patient(value, name=[{"text": str(n)}])),
                                         headers={**FHIR_JSON, "If-None-Exist": f"identifier=urn:site|{value}"},
                                         timeout=120)
                        return r.status_code, r.json().get("id", "")

                with ThreadPoolExecutor(50) as pool:
                    results = list(pool.map(attempt, range(50)))
                statuses = sorted(status for status, _ in results)
                assert statuses.count(201) == 1 and statuses.count(200) == 49, (burst, statuses)
                assert len({rid for _, rid in results}) == 1
                found = requests.get(f"{base}/Patient?identifier=urn:site|{value}", timeout=60).json()
                assert found["total"] == 1
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def test_a_create_with_search_parameters_is_refused_naming_if_none_exist(client, store, live):
    """fhirpy's `create(identifier=...)` sends POST Patient?identifier=...: taken as a plain create
    it made a new Patient every time; the condition belongs in If-None-Exist."""
    from fhirpy import SyncFHIRClient
    from fhirpy.base.exceptions import OperationOutcome
    before = table_counts(store)
    answer = client.post("/fhir/Patient?identifier=urn:site|P-9", data=json.dumps(patient("P-9")), headers=FHIR_JSON)
    assert answer.status_code == 400
    issue = answer.get_json()["issue"][0]
    assert issue["expression"] == ["If-None-Exist"] and "identifier" in issue["diagnostics"]
    fhir = SyncFHIRClient(live)
    for _ in range(2):
        try:
            fhir.resource("Patient", **patient("P-9")).create(identifier="urn:site|P-9")
        except OperationOutcome as error:
            assert "If-None-Exist" in str(error)
        else:
            raise AssertionError("fhirpy's conditional create was taken as a plain create")
    assert table_counts(store) == before
    assert post(client, patient("P-9"), "identifier=urn:site|P-9").status_code == 201  # the header way
    assert client.post("/fhir/Patient?_format=json", data=json.dumps(patient("P-10")), headers=FHIR_JSON).status_code == 201
