"""Compartment search (Patient/[id]/[type], Patient/[id]/*), system search (GET [base]?_type=),
and the first/previous/next links of every search."""
from __future__ import annotations

import urllib.parse

import pytest

from conftest import observation


def _get(client, url):
    path = url.split("/fhir", 1)[1] if "://" in url else url
    r = client.get(f"/fhir{path}" if not path.startswith("/fhir") else path)
    assert r.status_code == 200, r.get_json()
    return r.get_json()


def link(bundle, rel):
    return next((x["url"] for x in bundle["link"] if x["relation"] == rel), None)


def ids(bundle):
    return [f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle.get("entry", [])
            if e["search"]["mode"] == "match"]


def walk(client, url, rel="next"):
    pages = []
    while url:
        bundle = _get(client, url)
        pages.append(bundle)
        url = link(bundle, rel)
    return pages


@pytest.fixture
def two_patients(store):
    store.load([{"resourceType": "Patient", "id": "p1"}, {"resourceType": "Patient", "id": "p2"}]
               + [observation(id=f"a{i}", subject={"reference": "Patient/p1"}) for i in range(5)]
               + [observation(id=f"b{i}", subject={"reference": "Patient/p2"}) for i in range(3)]
               + [{"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"}}]
               + [{"resourceType": "CodeSystem", "id": "cs1", "status": "active", "content": "complete"}])


def test_compartment_search_of_one_type(client, two_patients):
    bundle = _get(client, "/Patient/p1/Observation?status=final")
    assert sorted(ids(bundle)) == [f"Observation/a{i}" for i in range(5)] and bundle["total"] == 5
    assert link(bundle, "self").endswith("/fhir/Patient/p1/Observation?status=final")
    assert ids(_get(client, "/Patient/p2/Observation?_id=a1")) == []
    assert ids(_get(client, "/Patient/p1/Patient")) == ["Patient/p1"]


def test_compartment_search_errors(client, two_patients):
    assert client.get("/fhir/Patient/nobody/Observation").status_code == 404
    r = client.get("/fhir/Patient/p1/CodeSystem")
    assert r.status_code == 400 and "compartment" in r.get_json()["issue"][0]["diagnostics"]
    r = client.get("/fhir/Observation/a1/Patient")
    assert r.status_code == 404 and r.get_json()["resourceType"] == "OperationOutcome"
    assert client.get("/fhir/Patient/p1/Nonsense").status_code == 404


def test_compartment_search_of_every_type_pages_each_match_once(client, two_patients):
    pages = walk(client, "/Patient/p1/*?_count=2")
    found = [i for p in pages for i in ids(p)]
    assert found == ["Condition/c1", *[f"Observation/a{i}" for i in range(5)], "Patient/p1"]
    assert all(p["total"] == 7 for p in pages) and len(pages) == 4
    only = _get(client, "/Patient/p1/*?_type=Condition,Patient")
    assert ids(only) == ["Condition/c1", "Patient/p1"]


def test_system_search(client, two_patients):
    everything = [i for p in walk(client, "/?_count=3") for i in ids(p)]
    assert len(everything) == len(set(everything)) == 12
    some = walk(client, "?_type=Patient,Observation&_id=p2,b1,a0&_count=1")
    assert [i for p in some for i in ids(p)] == ["Observation/a0", "Observation/b1", "Patient/p2"]
    assert some[0]["total"] == 3
    # a parameter only one of the types has is ignored for all, and said
    lenient = _get(client, "/?_type=Patient,Observation&status=final&_count=100")
    assert len(ids(lenient)) == 10
    assert any(e["search"]["mode"] == "outcome" for e in lenient["entry"])
    strict = client.get("/fhir?_type=Patient,Observation&status=final", headers={"Prefer": "handling=strict"})
    assert strict.status_code == 400
    for bad in ("_type=Nonsense", "_sort=_id", "_cursor=xyz"):
        r = client.get(f"/fhir?{bad}")
        assert r.status_code == 400 and r.get_json()["issue"][0]["expression"] == [bad.split("=")[0]]


def test_previous_walks_back_over_the_same_pages(client, store):
    store.load([observation(id=f"o{i:02}", **({"valueQuantity": {"value": i % 4}} if i % 3 else {}))
                for i in range(11)])  # some without a value: they sort last, both ways
    for query in ("/Observation?_count=3", "/Observation?_count=3&_sort=-value-quantity,_id",
                  "/Observation?_count=4&_sort=value-quantity"):
        forward = walk(client, query)
        assert link(forward[0], "previous") is None and link(forward[0], "first")
        back = walk(client, link(forward[-1], "self"), rel="previous")
        assert [ids(p) for p in reversed(back)] == [ids(p) for p in forward], query
        assert _get(client, link(forward[-1], "first"))["entry"] == forward[0]["entry"]
        # next from a page reached by previous goes forward again
        assert ids(_get(client, link(back[1], "next"))) == ids(back[0])


def test_previous_across_types(client, two_patients):
    forward = walk(client, "/Patient/p1/*?_count=2")
    back = walk(client, link(forward[-1], "self"), rel="previous")
    assert [ids(p) for p in reversed(back)] == [ids(p) for p in forward]
    forward = walk(client, "/?_count=5")
    back = walk(client, link(forward[-1], "self"), rel="previous")
    assert [ids(p) for p in reversed(back)] == [ids(p) for p in forward]


def test_capability_statement_lists_what_was_added(client):
    cs = client.get("/fhir/metadata").get_json()
    rest = cs["rest"][0]
    assert {"code": "search-system"} in rest["interaction"]
    assert rest["compartment"] == ["http://hl7.org/fhir/CompartmentDefinition/patient"]
    # every type but the audit trail, which no client may write (tests/test_audit.py)
    assert all(({"code": "patch"} in r["interaction"]) == (r["type"] != "AuditEvent") for r in rest["resource"])


def test_forged_previous_cursor_is_a_400(client, two_patients):
    cursor = urllib.parse.quote("eyJiZWZvcmUiOiBbMV19")  # {"before": [1]}: not of this search
    r = client.get(f"/fhir/Observation?_cursor={cursor}")
    assert r.status_code == 400


def test_a_search_across_types_leaves_the_audit_trail_out_unless_named(client, store):
    import json
    from conftest import EXAMPLES
    store.load([json.loads((EXAMPLES / "AuditEvent-example.json").read_text()),
                {"resourceType": "Patient", "id": "across-audit"}])
    every = client.get("/fhir?_count=500").get_json()
    assert "AuditEvent" not in {e["resource"]["resourceType"] for e in every.get("entry", [])}
    named = client.get("/fhir?_type=AuditEvent").get_json()
    assert [e["resource"]["resourceType"] for e in named["entry"]] == ["AuditEvent"]
