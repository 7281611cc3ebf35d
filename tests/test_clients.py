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
