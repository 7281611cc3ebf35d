"""Real FHIR clients against the live gateway: the Python fhirclient and fhirpy."""
from __future__ import annotations


import pytest
from fhirclient import client as smart_client
from fhirclient.models.observation import Observation
from fhirclient.models.patient import Patient
from fhirpy import SyncFHIRClient

from conftest import DEMO, observation


@pytest.fixture
def demo(store):
    from adapter.loading import load_files
    report = load_files(store, [DEMO])
    assert not report.rejected
    store.load([observation(id=f"extra-{i:02d}", subject={"reference": "Patient/demo-child-01"})
                for i in range(25)])
    return store


def test_fhirclient_reads_searches_pages_and_creates(live, demo):
    smart = smart_client.FHIRClient(settings={"app_id": "test", "api_base": live})
    smart.prepare()  # fetches and parses the CapabilityStatement with the client's strict models
    assert smart.server.capabilityStatement.fhirVersion == "4.0.1"
    patient = Patient.read("demo-child-01", smart.server)
    assert patient.gender == "female"
    search = Observation.where(struct={"subject": "Patient/demo-child-01", "_count": "7"})
    bundle = next(iter(search.perform_iter(smart.server)))
    assert bundle.total == 30 and len(bundle.entry) == 7
    every = list(search.perform_resources_iter(smart.server))
    assert len(every) == 30 and len({o.id for o in every}) == 30
    created = Observation(observation()).create(smart.server)
    assert created["id"] and created["meta"]["versionId"] == "1"


def test_fhirpy_reads_searches_pages_and_saves(live, demo):
    fhir = SyncFHIRClient(live)
    search = fhir.resources("Observation").search(subject="Patient/demo-child-01").limit(7)
    assert search.count() == 30
    assert len({o.id for o in search.fetch_all()}) == 30
    weight = fhir.reference("Observation", "demo-child-01-weight").to_resource()
    assert weight["valueQuantity"]["value"] == pytest.approx(18.3)
    new = fhir.resource("Observation", **observation())
    new.save()
    new["status"] = "amended"
    new.save()
    assert new["meta"]["versionId"] == "2"
    assert fhir.resources("Observation").search(status="amended").count() == 1


def test_fhirpy_includes_updates_and_transactions(live, demo):
    fhir = SyncFHIRClient(live)
    bundle = fhir.execute("Observation", method="get", params={
        "subject": "Patient/demo-child-01", "_include": "Observation:subject", "_count": "5"})
    assert {e["search"]["mode"] for e in bundle["entry"]} == {"match", "include"}
    with_patients = fhir.resources("Observation").search(subject="Patient/demo-child-01") \
        .include("Observation", "subject").limit(5).fetch_raw()
    assert any(e["resource"]["resourceType"] == "Patient" for e in with_patients["entry"])
    patient = fhir.reference("Patient", "demo-child-01").to_resource()
    patient["gender"] = "other"
    patient.save()
    assert fhir.reference("Patient", "demo-child-01").to_resource()["gender"] == "other"
    result = fhir.execute("", method="post", data={
        "resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": "urn:uuid:00000000-0000-4000-8000-000000000001",
             "resource": {"resourceType": "Patient", "gender": "male"}, "request": {"method": "POST", "url": "Patient"}},
            {"resource": observation(subject={"reference": "urn:uuid:00000000-0000-4000-8000-000000000001"}),
             "request": {"method": "POST", "url": "Observation"}}]})
    assert result["type"] == "transaction-response"
    pid = result["entry"][0]["response"]["location"].split("/")[1]
    assert result["entry"][1]["resource"]["subject"]["reference"] == f"Patient/{pid}"


def test_fhirclient_includes_updates_and_transactions(live, demo):
    smart = smart_client.FHIRClient(settings={"app_id": "test", "api_base": live})
    search = Observation.where(struct={"subject": "Patient/demo-child-01", "_include": "Observation:subject"})
    bundle = next(iter(search.perform_iter(smart.server)))
    assert {e.search.mode for e in bundle.entry} == {"match", "include"}
    patient = Patient.read("demo-child-01", smart.server)
    patient.gender = "unknown"
    patient.update(smart.server)
    assert Patient.read("demo-child-01", smart.server).gender == "unknown"
    response = smart.server.post_json("", {
        "resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": observation(), "request": {"method": "POST", "url": "Observation"}}]})
    assert response.json()["entry"][0]["response"]["status"] == "201 Created"
