"""Referential integrity: every write path refuses literal references to resources of a served
type that are not stored here, and reference strings that are no reference at all; on both
stores, checking on (the default outside the shared test fixtures)."""
from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest

from adapter.fhir.references import reference_elements
from adapter.gateway.app import create_app
from adapter.loading import load_files
from adapter.store.sql_store import SqlStore
from conftest import observation, table_counts

FHIR = "application/fhir+json"


@pytest.fixture
def checked(db_url: str, tmp_path: pathlib.Path):
    app = create_app({"DATABASE_URL": db_url, "EXPORT_DIR": str(tmp_path / "exports")})
    assert app.config["REFERENTIAL_INTEGRITY"] is True  # the default
    yield app.test_client(), app.extensions["fhir_store"]
    app.extensions["fhir_store"].close()


def _post(client, body: dict, path: str = "Observation"):
    return client.post(f"/fhir/{path}", data=json.dumps(body), content_type=FHIR)


def test_elements_are_named_by_their_fhirpath_and_found_by_the_schema() -> None:
    resource = {"resourceType": "PlanDefinition", "status": "draft",
                "action": [{"condition": [{"kind": "applicability", "expression": {
                    "language": "text/fhirpath", "reference": "http://x/expr"}}]}],  # a uri, no Reference
                "contained": [{"resourceType": "Group", "type": "person", "actual": True,
                               "member": [{"entity": {"reference": "Patient/p9"}}]}],
                "extension": [{"url": "http://x", "valueReference": {"reference": "Patient/p8"}}]}
    assert sorted(reference_elements(resource)) == [
        ("PlanDefinition.contained[0].member[0].entity.reference", "Patient/p9"),
        ("PlanDefinition.extension[0].valueReference.reference", "Patient/p8"),
    ]


@pytest.mark.parametrize("reference, status", [
    ("Patient/nobody", 422), ("Patient/p1/_history/2", 422), ("patient 1", 422), ("Patient/", 422),
    ("Foo/1", 422), ("Patient?identifier=x", 422), ("http://localhost/fhir/Patient/nobody", 422),
    ("Patient/p1", 201), ("Patient/p1/_history/1", 201), ("http://localhost/fhir/Patient/p1", 201),
    ("http://elsewhere.org/fhir/Patient/nobody", 201), ("Practitioner/not-served", 201),
    ("urn:uuid:0c3b2b4e-6f1b-4a55-8c53-9a1f3b6f2a10", 201), ("#contained", 201),
])
def test_rest_writes_refuse_references_that_do_not_resolve(checked, reference: str, status: int) -> None:
    client, store = checked
    assert "enforced" in client.get("/fhir/metadata").get_json()["rest"][0]["resource"][0]["referencePolicy"]
    assert client.put("/fhir/Patient/p1", data=json.dumps({"resourceType": "Patient", "id": "p1"}),
                      content_type=FHIR).status_code == 201
    before = table_counts(store)
    r = _post(client, observation(subject={"reference": reference}))
    assert r.status_code == status, r.get_data(as_text=True)
    if status == 422:
        issue = r.get_json()["issue"][0]
        assert issue["expression"] == ["Observation.subject.reference"]
        assert reference in issue["diagnostics"]
        assert table_counts(store) == before


def test_update_and_conditional_create_are_checked_a_deleted_target_is_gone(checked) -> None:
    client, _ = checked
    client.put("/fhir/Patient/p1", data=json.dumps({"resourceType": "Patient", "id": "p1"}), content_type=FHIR)
    assert client.put("/fhir/Observation/o1", data=json.dumps(observation(id="o1")), content_type=FHIR).status_code == 201
    assert client.delete("/fhir/Patient/p1").status_code == 204  # deletes are not blocked
    r = client.put("/fhir/Observation/o1", data=json.dumps(observation(id="o1", status="amended")), content_type=FHIR)
    assert r.status_code == 422 and "Patient/p1" in r.get_json()["issue"][0]["diagnostics"]
    r = client.post("/fhir/Observation", data=json.dumps(observation(performer=[{"reference": "Patient/p1"}])),
                    content_type=FHIR, headers={"If-None-Exist": "code=nothing-matches"})
    assert r.status_code == 422
    assert sorted(i["expression"] for i in r.get_json()["issue"]) == [
        ["Observation.performer[0].reference"], ["Observation.subject.reference"]]


def test_a_resource_may_name_itself(checked) -> None:
    client, _ = checked
    body = {"resourceType": "Group", "id": "g1", "type": "person", "actual": True,
            "extension": [{"url": "http://example.org/self", "valueReference": {"reference": "Group/g1"}}]}
    assert client.put("/fhir/Group/g1", data=json.dumps(body), content_type=FHIR).status_code == 201


def test_a_transaction_resolves_within_the_bundle_first_and_names_the_entry(checked) -> None:
    client, store = checked
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:8d9b0c4c-1111-4c5e-9d3a-000000000001",
         "resource": observation(subject={"reference": "Patient/p2"}), "request": {"method": "POST", "url": "Observation"}},
        {"resource": {"resourceType": "Patient", "id": "p2"}, "request": {"method": "PUT", "url": "Patient/p2"}}]}
    assert _post(client, bundle, "").status_code == 200  # the POST comes first, its target in the PUT
    before = table_counts(store)
    bundle["entry"][0]["resource"]["subject"]["reference"] = "Patient/p3"
    bundle["entry"][1] = {"resource": {"resourceType": "Patient", "id": "p4"}, "request": {"method": "PUT", "url": "Patient/p4"}}
    r = _post(client, bundle, "")
    assert r.status_code == 422
    assert r.get_json()["issue"][0]["expression"] == ["Bundle.entry[0].resource.subject.reference"]
    assert table_counts(store) == before  # all or nothing
    deleting = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "DELETE", "url": "Patient/p2"}},
        {"resource": observation(id="o9", subject={"reference": "Patient/p2"}), "request": {"method": "PUT", "url": "Observation/o9"}}]}
    assert _post(client, deleting, "").status_code == 422


def test_a_batch_checks_each_entry_as_its_own_request(checked) -> None:
    client, _ = checked
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": observation(subject={"reference": "Patient/nobody"}), "request": {"method": "POST", "url": "Observation"}},
        {"resource": {"resourceType": "Patient", "id": "p5"}, "request": {"method": "PUT", "url": "Patient/p5"}}]}
    statuses = [e["response"]["status"] for e in _post(client, bundle, "").get_json()["entry"]]
    assert statuses == ["422", "201"]


def test_load_defers_what_does_not_resolve_and_rejects_what_never_does(db_url: str, tmp_path: pathlib.Path) -> None:
    store = SqlStore(db_url, check_references=True)
    observations = tmp_path / "a-observations.ndjson"  # before the patients' file, by name
    observations.write_text("\n".join(json.dumps(observation(id=f"o{i}", subject={"reference": f"Patient/p{i % 3}"}))
                                      for i in range(6)) + "\n")
    (tmp_path / "b-patients.ndjson").write_text("\n".join(json.dumps({"resourceType": "Patient", "id": f"p{i}"})
                                                          for i in range(2)) + "\n")
    report = load_files(store, [tmp_path], batch_size=2)
    assert report.summary() == "8 read, 6 loaded, 2 rejected"
    assert [str(r) for r in report.rejected] == [
        f"{observations} line {n}: Observation.subject.reference: 'Patient/p2' does not resolve: there is no "
        "Patient/p2 here" for n in (3, 6)]
    store.close()


def test_load_without_the_check_keeps_dangling_references(db_url: str, tmp_path: pathlib.Path) -> None:
    store = SqlStore(db_url, check_references=False)
    (tmp_path / "o.ndjson").write_text(json.dumps(observation(id="o1")) + "\n")
    assert load_files(store, [tmp_path]).summary() == "1 read, 1 loaded, 0 rejected"
    store.close()


def test_the_setting_turns_it_off_for_the_gateway(db_url, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("FHIR_ADAPTER_REFERENTIAL_INTEGRITY", "off")
    app = create_app({"DATABASE_URL": db_url, "EXPORT_DIR": str(tmp_path / "exports")})
    try:
        client = app.test_client()
        assert _post(client, observation()).status_code == 201
        policy = client.get("/fhir/metadata").get_json()["rest"][0]["resource"][0]["referencePolicy"]
        assert policy == ["literal", "logical"]
    finally:
        app.extensions["fhir_store"].close()


def test_ingest_rejects_the_rows_whose_references_never_resolve(checked_store) -> None:
    """Without the protocol's ResearchStudy, every site-c row that names it is rejected (not a
    crash), with the element and the reference; the rows are reported, none half-written."""
    from adapter.mapping.ingest import ingest
    from adapter.mapping.spec import load_mapping
    from conftest import ROOT
    spec = load_mapping(ROOT / "mappings" / "sites" / "site-c.yaml")
    report = ingest(spec, [ROOT / "fixtures" / "sites" / "site-c" / "export.csv"], checked_store, b"k" * 32)
    dangling = [r for r in report.rejections if "does not resolve" in r.reason]
    assert dangling and report.rows_accepted + report.rows_partly + report.rows_rejected == report.rows_read
    assert {(r.column, r.value) for r in dangling} >= {("ResearchSubject.study.reference", "ResearchStudy/ucmsc-cp")}
    assert table_counts(checked_store)["resources"] == 3  # the catalogue's CodeSystem and ValueSet, the ConceptMap



def test_walk_visits_a_nodes_own_elements_in_the_definitions_order() -> None:
    """reference_elements looks at the elements a node has, not every element its definition
    could hold a Reference in: the same (path, value) pairs in the same order as walking the
    definition, on the R4 examples and the sites' golden outputs."""
    import glob

    from adapter.fhir import jsonio
    from adapter.fhir import references as rf

    def by_definition(node: Any, definition: str, path: str) -> Any:
        if not isinstance(node, dict):
            return
        if definition == "ResourceList":
            definition = str(node.get("resourceType"))
        if definition == "Reference" and isinstance(node.get("reference"), str):
            yield f"{path}.reference", node["reference"]
        for name, kind in rf._children(definition):
            value = node.get(name)
            if isinstance(value, list):
                for i, item in enumerate(value):
                    yield from by_definition(item, kind, f"{path}.{name}[{i}]")
            elif value is not None:
                yield from by_definition(value, kind, f"{path}.{name}")

    root = pathlib.Path(__file__).resolve().parent.parent
    found = 0
    files = sorted(glob.glob(str(root / "fixtures/r4-examples/*.json")))
    resources = [jsonio.parse(pathlib.Path(f).read_bytes()) for f in files]
    for f in sorted(glob.glob(str(root / "mappings/sites/golden/*/expected.ndjson"))):
        resources += [jsonio.parse(line) for line in pathlib.Path(f).read_bytes().splitlines() if line.strip()]
    for resource in resources:
        rtype = str(resource.get("resourceType"))
        expected = list(by_definition(resource, rtype, rtype))
        assert list(rf.reference_elements(resource)) == expected, resource.get("id")
        found += len(expected)
    assert found > 5000
