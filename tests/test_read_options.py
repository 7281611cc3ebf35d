"""Read with If-Modified-Since (304 when not modified since) and with _elements/_summary."""
from __future__ import annotations

from email.utils import format_datetime, parsedate_to_datetime
from datetime import timedelta

from conftest import observation


def test_if_modified_since(client, store):
    store.update(observation(id="o1"))
    first = client.get("/fhir/Observation/o1")
    last_modified = first.headers["Last-Modified"]
    same = client.get("/fhir/Observation/o1", headers={"If-Modified-Since": last_modified})
    assert same.status_code == 304 and same.data == b"" and same.headers["ETag"] == 'W/"1"'
    before = format_datetime(parsedate_to_datetime(last_modified) - timedelta(seconds=1), usegmt=True)
    changed = client.get("/fhir/Observation/o1", headers={"If-Modified-Since": before})
    assert changed.status_code == 200 and changed.data == first.data
    garbage = client.get("/fhir/Observation/o1", headers={"If-Modified-Since": "yesterday"})
    assert garbage.status_code == 200
    # If-None-Match wins over If-Modified-Since (RFC 7232 3.3)
    both = client.get("/fhir/Observation/o1", headers={"If-Modified-Since": last_modified,
                                                        "If-None-Match": 'W/"7"'})
    assert both.status_code == 200


def test_elements_on_read_are_subsetted_and_tagged(client, store):
    store.update(observation(id="o1", valueString="x", note=[{"text": "n"}]))
    r = client.get("/fhir/Observation/o1?_elements=value")
    body = r.get_json()
    assert r.status_code == 200 and body["valueString"] == "x" and "note" not in body
    assert body["id"] == "o1" and body["status"] == "final"  # mandatory elements stay
    assert any(t["code"] == "SUBSETTED" for t in body["meta"]["tag"])
    summary = client.get("/fhir/Observation/o1?_summary=true").get_json()
    assert "note" not in summary and any(t["code"] == "SUBSETTED" for t in summary["meta"]["tag"])
    whole = client.get("/fhir/Observation/o1?_summary=false")
    assert whole.data == store.read("Observation", "o1").data
    bad = client.get("/fhir/Observation/o1?_summary=count")
    assert bad.status_code == 400 and bad.get_json()["issue"][0]["expression"] == ["_summary"]
