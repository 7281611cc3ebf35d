"""If-Match with a well-formed ETag that is no version of the resource fails the precondition
(412); only a header that is not an ETag at all is a bad request (400)."""
from __future__ import annotations

import json

import pytest

from conftest import observation, table_counts

FHIR_JSON = "application/fhir+json"


@pytest.mark.parametrize("etag,status", [('W/"bogus"', 412), ('"bogus"', 412), ('W/"7"', 412),
                                         ("yesterday", 400), ('W/"a b"', 400)])
def test_if_match_that_is_no_version_of_ours(client, store, etag, status):
    store.load([observation(id="o1")])
    before = table_counts(store)
    r = client.put("/fhir/Observation/o1", data=json.dumps(observation(id="o1")), content_type=FHIR_JSON,
                   headers={"If-Match": etag})
    assert r.status_code == status, r.data
    assert r.get_json(force=True)["resourceType"] == "OperationOutcome"
    assert table_counts(store) == before


def test_if_match_in_a_transaction(client, store):
    store.load([observation(id="o1")])
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "PUT", "url": "Observation/o1", "ifMatch": 'W/"bogus"'},
         "resource": observation(id="o1")}]}
    r = client.post("/fhir", data=json.dumps(bundle), content_type=FHIR_JSON)
    assert r.status_code == 412, r.data
