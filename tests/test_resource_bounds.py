"""How large one resource may be (adapter/fhir/bounds.py), refused alike on every write path:
REST create and update, PATCH, transaction entries, `load`, the mapping's validator. Each refusal
is quick and writes nothing; on SQLite and PostgreSQL."""
from __future__ import annotations

import json
import time

import pytest

from adapter.fhir.bounds import MAX_ARRAY_ITEMS, MAX_DEPTH, MAX_ELEMENTS, bound_problem
from adapter.fhir.validation import ShapeValidator, validate
from adapter.gateway.app import create_app
from adapter.loading import load_files
from conftest import observation, table_counts

FHIR = "application/fhir+json"


def components(n: int) -> dict:
    return observation(component=[{"code": {"text": "c"}, "valueInteger": i} for i in range(n)])


def extensions(levels: int) -> dict:
    """A Patient whose extensions nest `levels` deep: 2 JSON levels an extension, 2n + 1 in all."""
    node: dict = {"url": "u", "valueString": "x"}
    for _ in range(levels - 1):
        node = {"url": "u", "extension": [node]}
    return {"resourceType": "Patient", "extension": [node]}


OVERSIZED = [  # (resource, the element the refusal names)
    (components(MAX_ARRAY_ITEMS + 1), "Observation.component"),
    ({"resourceType": "Patient", "identifier": [{"value": str(i)} for i in range(MAX_ARRAY_ITEMS + 1)]},
     "Patient.identifier"),
    (observation(component=[  # 13 JSON values a component: past the element count, no array too long
        {"code": {"coding": [{"system": "s", "code": "c", "display": "d"}], "text": "c"}, "valueInteger": i,
         "interpretation": [{"text": "x"}]} for i in range(MAX_ELEMENTS // 12)]), "Observation"),
]


@pytest.fixture
def big_client(db_url, tmp_path):
    """The gateway with the deployed body limit (10 MB), not the suite's 64 KB."""
    app = create_app({"DATABASE_URL": db_url, "MAX_CONTENT_LENGTH": 10 * 1024 * 1024,
                      "EXPORT_DIR": str(tmp_path / "exports"), "REFERENTIAL_INTEGRITY": False})
    yield app.test_client()
    app.extensions["fhir_store"].close()


@pytest.mark.parametrize("resource, where", OVERSIZED, ids=["components", "identifiers", "elements"])
def test_rest_writes_refuse_an_oversized_resource_quickly(big_client, store, resource, where):
    client = big_client
    before = table_counts(store)
    body = json.dumps(resource)
    started = time.perf_counter()
    created = client.post(f"/fhir/{resource['resourceType']}", data=body, content_type=FHIR)
    assert time.perf_counter() - started < 5  # was 22-30 s for 50,000 components
    updated = client.put(f"/fhir/{resource['resourceType']}/big", data=json.dumps({**resource, "id": "big"}),
                         content_type=FHIR)
    for answer in (created, updated):
        assert answer.status_code == 400, answer.get_data(as_text=True)[:300]
        issue = answer.json["issue"][0]
        assert issue["code"] == "too-costly" and issue["expression"] == [where], issue
    assert table_counts(store) == before


def test_a_transaction_entry_past_a_bound_is_refused_and_named(big_client, store):
    client = big_client
    before = table_counts(store)
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "POST", "url": "Patient"}, "resource": {"resourceType": "Patient"}},
        {"request": {"method": "POST", "url": "Observation"}, "resource": components(MAX_ARRAY_ITEMS + 1)}]}
    answer = client.post("/fhir", data=json.dumps(bundle), content_type=FHIR)
    assert answer.status_code == 400
    assert answer.json["issue"][0]["expression"] == ["Bundle.entry[1].resource.Observation.component"]
    assert table_counts(store) == before


def test_a_patch_cannot_nest_deeper_than_a_body_may(client, app):
    """The patch document and the stored resource were each within 64 levels, so the parser's
    bound never saw the result: 107 levels were stored."""
    store = app.extensions["fhir_store"]
    assert client.put("/fhir/Patient/deep", data=json.dumps({**extensions(31), "id": "deep"}),
                      content_type=FHIR).status_code == 201  # 63 levels
    before = table_counts(store)
    value = extensions(20)["extension"][0]  # 39 levels, added at level 53: 91 in all
    patch = [{"op": "add", "path": "/extension/0" * 25 + "/extension/-", "value": value}]
    answer = client.patch("/fhir/Patient/deep", data=json.dumps(patch), content_type="application/json-patch+json")
    assert answer.status_code == 422, answer.get_data(as_text=True)[:300]
    assert answer.json["issue"][0]["code"] == "too-costly"
    assert f"{MAX_DEPTH} levels" in answer.json["issue"][0]["diagnostics"]
    assert table_counts(store) == before


def test_load_and_the_mappings_validator_refuse_the_same(store, tmp_path):
    path = tmp_path / "big.ndjson"
    path.write_text("\n".join(json.dumps(r) for r, _ in OVERSIZED) + "\n" + json.dumps({"resourceType": "Patient"}))
    report = load_files(store, [path])
    assert (report.read, report.loaded) == (4, 1)
    assert [r.issues[0].expression for r in report.rejected] == [w for _, w in OVERSIZED]
    shaped = ShapeValidator()
    for resource, where in OVERSIZED:
        assert [i.expression for i in shaped(resource)] == [where] == [i.expression for i in validate(resource)]


def test_the_bounds_themselves():
    assert bound_problem(extensions(31)) is None  # 63 levels
    assert bound_problem(extensions(32)) is not None  # 65
    assert bound_problem({"a": list(range(MAX_ARRAY_ITEMS))}) is None
    deep = {"a": 1}
    for _ in range(10_000):  # iterative: no RecursionError
        deep = {"a": [deep]}
    assert "nested" in bound_problem(deep)[0]
