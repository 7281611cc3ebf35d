"""Every write path stores the index of the bytes it stores, so `_lastUpdated`, `_since` and every
other search see what was written; and an update that says nothing new writes nothing."""
from __future__ import annotations

import json
from collections import Counter, defaultdict
from typing import Any
from urllib.parse import quote

import pytest

from sqlalchemy import select

from adapter.exchange.cohorts import build_cohorts
from adapter.fhir.extract import extract
from adapter.fhir.outcomes import FhirError
from adapter.fhir.jsonio import parse
from adapter.loading import load_files
from adapter.mapping.ingest import ingest
from adapter.mapping.spec import load_mapping
from adapter.protocol.spec import SPECS
from adapter.study.load import load_protocol
from adapter.store.schema import INDEX_COLUMNS, INDEX_TABLES, resources
from conftest import DEMO, ROOT, observation, table_counts

KEY = b"test-pseudonym-key-0123456789"
SITE_C = ROOT / "fixtures" / "sites" / "site-c"
FHIR = "application/fhir+json"


def _norm(value: Any) -> Any:
    return round(float(value), 9) if isinstance(value, float) else value


def index_mismatches(store) -> list[str]:
    """Resources whose stored index rows differ from the index of their stored bytes."""
    stored: dict[tuple[str, str], Counter] = defaultdict(Counter)
    with store.engine.connect() as conn:
        for kind, table in INDEX_TABLES.items():
            columns = [table.c.res_type, table.c.res_id, *(table.c[c] for c in INDEX_COLUMNS[kind])]
            for row in conn.execute(select(*columns)):
                stored[(row[0], row[1])][(kind, *map(_norm, row[2:]))] += 1
        current = conn.execute(select(resources.c.res_type, resources.c.res_id, resources.c.data)
                               .where(~resources.c.deleted)).all()
    problems = []
    for rtype, rid, data in current:
        expected: Counter = Counter()
        for kind, rows in vars(extract(parse(data))).items():
            expected.update((kind, *map(_norm, row)) for row in rows)
        if stored.pop((rtype, rid), Counter()) != expected:
            problems.append(f"{rtype}/{rid}")
    problems += [f"{rtype}/{rid} (index rows of no current resource)" for rtype, rid in stored]
    return problems


def test_every_write_path_indexes_what_it_stores(client, app):
    store = app.extensions["fhir_store"]
    # REST: create, update, conditional create, transaction.
    created = client.post("/fhir/Observation", json=observation(), content_type=FHIR).get_json()
    client.put(f"/fhir/Observation/{created['id']}", json={**created, "status": "amended"}, content_type=FHIR)
    client.post("/fhir/Patient", json={"resourceType": "Patient", "identifier": [{"system": "s", "value": "1"}]},
                content_type=FHIR, headers={"If-None-Exist": "identifier=s|1"})
    client.post("/fhir", content_type=FHIR, json={"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:0c3b2b4e-6f1b-4a55-8c53-9a1f3b6f2a10",
         "resource": {"resourceType": "Patient", "gender": "female"}, "request": {"method": "POST", "url": "Patient"}},
        {"resource": observation(subject={"reference": "urn:uuid:0c3b2b4e-6f1b-4a55-8c53-9a1f3b6f2a10"}),
         "request": {"method": "POST", "url": "Observation"}}]})
    # load, protocol load, ingest (index rows extracted ahead by the mapping), cohorts.
    assert load_files(store, [DEMO]).loaded > 0
    assert load_protocol(store.url, SPECS / "ucmsc-cp-v1.yaml")[1] > 0
    assert ingest(load_mapping(ROOT / "mappings" / "sites" / "site-c.yaml"), sorted(SITE_C.glob("export.*")),
                  store, KEY).resources > 0
    build_cohorts(store, "https://ucmsc-cp.example.org/fhir", [("site-c", "Site C")])
    assert index_mismatches(store) == []


def test_last_updated_finds_everything_an_ingest_wrote(client, app):
    store = app.extensions["fhir_store"]
    report = ingest(load_mapping(ROOT / "mappings" / "sites" / "site-c.yaml"), sorted(SITE_C.glob("export.*")),
                    store, KEY)
    with store.engine.connect() as conn:
        observations = len(conn.execute(select(resources.c.res_id).where(resources.c.res_type == "Observation")).all())
    assert report.resources > 0 and observations > 0
    found = client.get("/fhir/Observation?_lastUpdated=ge2000-01-01&_total=accurate&_count=1").get_json()
    assert found["total"] == observations


def test_an_update_equal_to_the_current_version_keeps_it(client):
    created = client.post("/fhir/Observation", json=observation(), content_type=FHIR).get_json()
    url = f"/fhir/Observation/{created['id']}"
    same = {**created, "meta": {"versionId": "7", "lastUpdated": "2001-01-01T00:00:00Z"}}
    again = client.put(url, json=same, content_type=FHIR, headers={"If-Match": 'W/"1"'})
    assert again.status_code == 200
    assert again.headers["ETag"] == 'W/"1"'
    assert again.get_json()["meta"] == created["meta"]
    assert client.get(f"{url}/_history").get_json()["total"] == 1
    changed = client.put(url, json={**created, "status": "amended"}, content_type=FHIR)
    assert changed.headers["ETag"] == 'W/"2"'
    tagged = {**created, "status": "amended", "meta": {"tag": [{"system": "s", "code": "c"}]}}
    assert client.put(url, json=tagged, content_type=FHIR).headers["ETag"] == 'W/"3"'  # a new tag is news


def test_a_deleted_resource_written_again_is_a_new_version(client):
    created = client.post("/fhir/Observation", json=observation(), content_type=FHIR).get_json()
    url = f"/fhir/Observation/{created['id']}"
    client.delete(url)
    assert client.put(url, json=created, content_type=FHIR).headers["ETag"] == 'W/"3"'


def test_reingesting_an_unchanged_export_writes_nothing(store):
    spec = load_mapping(ROOT / "mappings" / "sites" / "site-c.yaml")
    files = sorted(SITE_C.glob("export.*"))
    ingest(spec, files, store, KEY, "2026-01-01T00:00:00Z")
    before = table_counts(store)
    with store.engine.connect() as conn:
        first = {r.res_id: (r.version_id, r.last_updated) for r in conn.execute(select(resources))}
    ingest(spec, files, store, KEY, "2026-02-01T00:00:00Z")  # a later run stamps a later `recorded`
    assert table_counts(store) == before
    with store.engine.connect() as conn:
        rows = conn.execute(select(resources)).all()
    assert {r.res_id: (r.version_id, r.last_updated) for r in rows} == first
    provenances = [json.loads(r.data) for r in rows if r.res_type == "Provenance"]
    assert provenances and {p["recorded"] for p in provenances} == {"2026-01-01T00:00:00Z"}


@pytest.mark.parametrize("bad", ["<script>", "a" * 65, ".", "..", "a b", "é"])
def test_every_write_path_refuses_the_ids_a_put_refuses(client, app, bad):
    store = app.extensions["fhir_store"]
    before = table_counts(store)
    put = client.put(f"/fhir/Patient/{quote(bad, safe='')}", json={"resourceType": "Patient", "id": bad},
                     content_type=FHIR)
    assert put.status_code == 400 and "Patient.id" in put.get_json()["issue"][0]["expression"]
    entry = {"resource": {"resourceType": "Patient"}, "request": {"method": "PUT", "url": f"Patient/{bad}"}}
    tx = client.post("/fhir", json={"resourceType": "Bundle", "type": "transaction", "entry": [entry]},
                     content_type=FHIR)
    assert tx.status_code == 400, tx.get_json()
    assert tx.get_json()["issue"][0]["expression"] == ["Bundle.entry[0].request.url"]
    with pytest.raises(FhirError) as caught:
        store.load([{"resourceType": "Patient", "id": bad}])
    assert caught.value.status == 400
    assert table_counts(store) == before
