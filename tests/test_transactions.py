"""Batch and transaction Bundles: transactions all or nothing with urn:uuid and conditional
references resolved, the response Bundle per the spec; batch entries independent."""
from __future__ import annotations

import json

import pytest

from conftest import table_counts
from r4schema import assert_r4

FHIR_JSON = {"Content-Type": "application/fhir+json"}
CHILD = "urn:uuid:7f1c3a52-0c5e-4f43-9a5e-2b1d0a0c1e11"


def send(client, kind, entries):
    body = {"resourceType": "Bundle", "type": kind, "entry": entries}
    return client.post("/fhir", data=json.dumps(body), headers=FHIR_JSON)


def child_entries(value="T-1"):
    return [
        {"fullUrl": CHILD, "resource": {"resourceType": "Patient", "identifier": [{"system": "urn:site", "value": value}]},
         "request": {"method": "POST", "url": "Patient", "ifNoneExist": f"identifier=urn:site|{value}"}},
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "weight"},
                      "subject": {"reference": CHILD}},
         "request": {"method": "POST", "url": "Observation"}},
        {"resource": {"resourceType": "Procedure", "id": "inj-1", "status": "completed", "subject": {"reference": CHILD}},
         "request": {"method": "PUT", "url": "Procedure/inj-1"}},
    ]


def test_transaction_creates_everything_and_rewrites_urn_uuid_references(client):
    r = send(client, "transaction", child_entries())
    assert r.status_code == 200, r.get_data(as_text=True)
    bundle = r.get_json()
    assert_r4(bundle)
    assert bundle["type"] == "transaction-response" and len(bundle["entry"]) == 3
    statuses = [e["response"]["status"] for e in bundle["entry"]]
    assert statuses == ["201 Created", "201 Created", "201 Created"]
    patient_id = bundle["entry"][0]["response"]["location"].split("/")[1]
    observation = bundle["entry"][1]["resource"]
    assert observation["subject"]["reference"] == f"Patient/{patient_id}"
    assert client.get(f"/fhir/{bundle['entry'][1]['response']['location']}").status_code == 200
    again = send(client, "transaction", child_entries())  # the same child: found, not made again
    assert [e["response"]["status"] for e in again.get_json()["entry"]][0] == "200 OK"
    assert again.get_json()["entry"][1]["resource"]["subject"]["reference"] == f"Patient/{patient_id}"
    assert client.get("/fhir/Patient?identifier=urn:site|T-1").get_json()["total"] == 1


def test_a_failing_entry_fails_the_whole_transaction(client, store):
    before = table_counts(store)
    entries = child_entries("T-2")
    entries.append({"resource": {"resourceType": "Observation", "status": "done", "code": {"text": "x"}},
                    "request": {"method": "POST", "url": "Observation"}})
    r = send(client, "transaction", entries)
    assert r.status_code in (400, 422)
    outcome = r.get_json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["expression"][0].startswith("Bundle.entry[3].resource")
    assert table_counts(store) == before  # nothing written
    entries = child_entries("T-3") + [{"request": {"method": "GET", "url": "Patient/nobody"}}]
    assert send(client, "transaction", entries).status_code == 404
    assert table_counts(store) == before


def test_conditional_references_are_resolved(client):
    client.post("/fhir/Patient", data=json.dumps({"resourceType": "Patient", "identifier": [
        {"system": "urn:site", "value": "C-1"}]}), headers=FHIR_JSON)
    pid = client.get("/fhir/Patient?identifier=urn:site|C-1").get_json()["entry"][0]["resource"]["id"]
    entry = {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                          "subject": {"reference": "Patient?identifier=urn:site|C-1"}},
             "request": {"method": "POST", "url": "Observation"}}
    r = send(client, "transaction", [entry])
    assert r.get_json()["entry"][0]["resource"]["subject"]["reference"] == f"Patient/{pid}"
    entry["resource"]["subject"]["reference"] = "Patient?identifier=urn:site|NOBODY"
    assert send(client, "transaction", [entry]).status_code == 412


def test_transaction_deletes_updates_and_reads_in_order(client):
    send(client, "transaction", child_entries("O-1"))
    entries = [
        {"request": {"method": "GET", "url": "Procedure/inj-1"}},
        {"resource": {"resourceType": "Procedure", "id": "inj-1", "status": "stopped", "subject": {"reference": "Patient/x"}},
         "request": {"method": "PUT", "url": "Procedure/inj-1", "ifMatch": 'W/"1"'}},
        {"request": {"method": "DELETE", "url": "Patient?identifier=urn:site|O-1"}},
        {"request": {"method": "GET", "url": "Procedure?status=stopped"}},
    ]
    r = send(client, "transaction", entries)
    assert r.status_code == 200, r.get_data(as_text=True)
    out = r.get_json()["entry"]
    assert out[0]["resource"]["status"] == "stopped"  # GETs run after the writes
    assert out[1]["response"]["etag"] == 'W/"2"'
    assert out[2]["response"]["status"] == "204 No Content"
    assert out[3]["resource"]["type"] == "searchset" and out[3]["resource"]["total"] == 1
    stale = dict(entries[1], request={"method": "PUT", "url": "Procedure/inj-1", "ifMatch": 'W/"1"'})
    assert send(client, "transaction", [stale]).status_code == 412


def test_batch_entries_are_independent(client):
    entries = [
        {"resource": {"resourceType": "Patient", "gender": "female"}, "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Observation", "status": "done", "code": {"text": "x"}},
         "request": {"method": "POST", "url": "Observation"}},
        {"request": {"method": "GET", "url": "Patient/nobody"}},
        {"request": {"method": "GET", "url": "Patient?gender=female"}},
    ]
    r = send(client, "batch", entries)
    assert r.status_code == 200
    bundle = r.get_json()
    assert_r4(bundle)
    assert bundle["type"] == "batch-response"
    statuses = [e["response"]["status"] for e in bundle["entry"]]
    assert statuses == ["201", "422", "404", "200"]
    assert bundle["entry"][1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert bundle["entry"][3]["resource"]["total"] == 1


def test_a_post_entry_to_an_id_is_refused_not_a_crash(client):
    entry = {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient/123"}}
    batch = send(client, "batch", [entry]).get_json()
    assert batch["entry"][0]["response"]["status"] == "400"
    r = send(client, "transaction", [entry])
    assert r.status_code == 400 and r.get_json()["issue"][0]["expression"] == ["Bundle.entry[0].request.url"]


def test_bad_bundles_are_refused(client):
    assert client.post("/fhir", data=json.dumps({"resourceType": "Patient"}), headers=FHIR_JSON).status_code == 400
    r = send(client, "collection", [])
    assert r.status_code == 400 and "Bundle.type" in r.get_data(as_text=True)
    r = send(client, "transaction", [{"request": {"method": "PATCH", "url": "Patient/1"}}])
    assert r.status_code == 400 and r.get_json()["issue"][0]["expression"] == ["Bundle.entry[0].request.method"]
    r = send(client, "transaction", [{"resource": {"resourceType": "Observation", "status": "final", "code": {
        "text": "x"}, "subject": {"reference": "urn:uuid:0000"}}, "request": {"method": "POST", "url": "Observation"}}])
    assert r.status_code == 400


def test_capability_statement_lists_batch_transaction_and_conditionals(client):
    rest = client.get("/fhir/metadata").get_json()["rest"][0]
    assert {"transaction", "batch"} <= {i["code"] for i in rest["interaction"]}
    patient = next(r for r in rest["resource"] if r["type"] == "Patient")
    assert patient["conditionalCreate"] and patient["conditionalUpdate"]
    assert patient["conditionalDelete"] == "single"


@pytest.mark.parametrize("entries", [
    ["not an entry"],
    [{"resource": {"resourceType": "Patient"}}],
    [{"request": {"method": "POST"}, "resource": {"resourceType": "Patient"}}],
    [{"request": {"method": "POST", "url": "Patient"}, "resource": "Patient"}],
    [{"request": {"method": "POST", "url": "Patient"}, "resource": {"resourceType": "Observation"}}],
    [{"request": {"method": "PUT", "url": "Patient"}, "resource": {"resourceType": "Patient"}}],
    [{"request": {"method": "DELETE", "url": "Patient"}}],
    [{"request": {"method": "POST", "url": "Colour"}, "resource": {"resourceType": "Colour"}}],
    [{"request": {"method": "PUT", "url": "Patient?colour=red"}, "resource": {"resourceType": "Patient"}}],
    [{"request": {"method": "PUT", "url": "Patient/a", "ifMatch": "yesterday"}, "resource": {"resourceType": "Patient", "id": "a"}}],
    [{"request": {"method": "PUT", "url": "Patient/a"}, "resource": {"resourceType": "Patient", "id": "b"}}],
    [{"request": {"method": "POST", "url": "Observation"}, "resource": {
        "resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": "Colour?x=1"}}}],
    [{"request": {"method": "PUT", "url": "Patient/a", "ifMatch": 1}, "resource": {"resourceType": "Patient", "id": "a"}}],
    [{"request": {"method": "POST", "url": "Patient", "ifNoneExist": {"identifier": "x"}},
      "resource": {"resourceType": "Patient"}}],
    {"not": "a list"},
])
def test_malformed_transactions_are_4xx_and_write_nothing(client, store, entries):
    before = table_counts(store)
    body = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    r = client.post("/fhir", data=json.dumps(body), headers=FHIR_JSON)
    assert 400 <= r.status_code < 500, r.get_data(as_text=True)
    assert r.get_json()["resourceType"] == "OperationOutcome"
    assert table_counts(store) == before
