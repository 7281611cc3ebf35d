"""How answers are written: JSON 404/405 for unknown paths and methods, empty answers without a
Content-Type, _pretty, and gzip when the client accepts it."""
from __future__ import annotations

import gzip
import json

import pytest

from conftest import observation

FHIR_JSON = "application/fhir+json"


@pytest.mark.parametrize("path", ["/nowhere", "/fhir/Patient/1/foo/bar", "/fhir/Patient/1/_history/1/x"])
def test_an_unknown_path_is_a_json_404_outcome(client, path):
    r = client.get(path)
    assert r.status_code == 404
    assert r.headers["Content-Type"].startswith(FHIR_JSON)
    issue = r.get_json()["issue"][0]
    assert issue["code"] == "not-found" and path in issue["diagnostics"]
    assert "manually" not in issue["diagnostics"]


def test_a_wrong_method_on_a_known_path_is_405_with_allow(client):
    r = client.post("/fhir/Patient/p1", data=b"{}", headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 405
    assert {"GET", "PUT", "DELETE"} <= set(r.headers["Allow"].split(", "))
    assert r.get_json()["resourceType"] == "OperationOutcome"
    assert "POST" in r.get_json()["issue"][0]["diagnostics"]


def test_empty_answers_have_no_content_type(client):
    headers = {"Content-Type": FHIR_JSON, "Prefer": "return=minimal"}
    created = client.post("/fhir/Observation", data=json.dumps(observation()), headers=headers)
    assert created.status_code == 201 and created.data == b""
    assert "Content-Type" not in created.headers and created.headers["Content-Length"] == "0"
    oid = created.headers["Location"].split("/")[-3]
    updated = client.put(f"/fhir/Observation/{oid}", data=json.dumps(observation(id=oid, status="amended")),
                         headers=headers)
    assert updated.status_code == 200 and "Content-Type" not in updated.headers
    assert updated.headers["Content-Length"] == "0"
    unchanged = client.get(f"/fhir/Observation/{oid}", headers={"If-None-Match": 'W/"2"'})
    assert unchanged.status_code == 304 and "Content-Type" not in unchanged.headers
    deleted = client.delete(f"/fhir/Observation/{oid}")
    assert deleted.status_code == 204 and deleted.data == b""
    assert "Content-Type" not in deleted.headers and "Content-Length" not in deleted.headers


def test_pretty_indents_and_keeps_decimals(client, store):
    store.update(observation(id="o1", valueQuantity={"value": __import__("decimal").Decimal("6.30")}))
    compact = client.get("/fhir/Observation/o1")
    assert b"\n" not in compact.data
    pretty = client.get("/fhir/Observation/o1?_pretty=true")
    assert pretty.status_code == 200 and b'\n  "resourceType": "Observation"' in pretty.data
    assert b'"value": 6.30' in pretty.data
    assert json.loads(pretty.data) == json.loads(compact.data)
    search = client.get("/fhir/Observation?_pretty=true", headers={"Prefer": "handling=strict"})
    assert search.status_code == 200 and b"\n  " in search.data
    assert client.get("/fhir/Observation/o1?_pretty=false").data == compact.data
    bad = client.get("/fhir/Observation/o1?_pretty=yes")
    assert bad.status_code == 400 and bad.get_json()["issue"][0]["expression"] == ["_pretty"]


def test_gzip_when_accepted_and_large_enough(client, store):
    store.load([observation(id=f"o{i}") for i in range(20)])
    plain = client.get("/fhir/Observation?_count=20")
    assert "Content-Encoding" not in plain.headers
    zipped = client.get("/fhir/Observation?_count=20", headers={"Accept-Encoding": "gzip, deflate"})
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in zipped.headers["Vary"]
    assert len(zipped.data) < len(plain.data)
    assert json.loads(gzip.decompress(zipped.data))["total"] == 20
    refused = client.get("/fhir/Observation?_count=20", headers={"Accept-Encoding": "gzip;q=0"})
    assert "Content-Encoding" not in refused.headers
    small = client.get("/fhir/Observation/o1", headers={"Accept-Encoding": "gzip"})
    assert "Content-Encoding" not in small.headers and small.data == store.read("Observation", "o1").data
    not_modified = client.get("/fhir/Observation/o1", headers={"Accept-Encoding": "gzip", "If-None-Match": 'W/"1"'})
    assert not_modified.status_code == 304 and "Content-Encoding" not in not_modified.headers


def test_gzip_over_real_http(live, http, store):
    store.load([observation(id=f"o{i}") for i in range(20)])
    r = http.get(f"{live}/Observation?_count=20")  # requests asks for gzip and inflates it
    assert r.headers["Content-Encoding"] == "gzip" and r.json()["total"] == 20
