"""Concurrent writers on one resource: no version lost, none duplicated."""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import requests

from conftest import observation

FHIR_JSON = "application/fhir+json"


def test_concurrent_updates_make_consecutive_versions(live, store):
    def put(i):
        return requests.put(f"{live}/Observation/o1", data=json.dumps(observation(id="o1", note=[{"text": str(i)}])),
                            headers={"Content-Type": FHIR_JSON}, timeout=30).status_code
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(put, range(40)))
    assert sorted(set(statuses)) == [200, 201] and statuses.count(201) == 1
    history = store.history("Observation", "o1", count=100)
    assert sorted(e.version_id for e in history.entries) == list(range(1, 41))


def test_if_match_lets_exactly_one_concurrent_writer_win(live, store):
    store.update(observation(id="o1"))

    def put(i):
        return requests.put(f"{live}/Observation/o1", data=json.dumps(observation(id="o1", note=[{"text": str(i)}])),
                            headers={"Content-Type": FHIR_JSON, "If-Match": 'W/"1"'}, timeout=30).status_code
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(put, range(16)))
    assert statuses.count(200) == 1 and statuses.count(412) == 15
    assert store.read("Observation", "o1").version_id == 2
