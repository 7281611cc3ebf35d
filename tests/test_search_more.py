"""What EHRs pull: chains, _has, reference :identifier, identifier :of-type, _include and
_revinclude (with :iterate, never silently capped), _summary, _elements, _total, paging under
writes. Both stores."""
from __future__ import annotations

import pytest

from r4schema import assert_r4

LOINC = "http://loinc.org"


def patient(pid, gender="female", mrn=None, **extra):
    body = {"resourceType": "Patient", "id": pid, "gender": gender, **extra}
    if mrn:
        body["identifier"] = [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                                     "code": "MR"}]}, "system": "urn:mrn", "value": mrn}]
    return body


def obs(oid, pid, code="29463-7", value=20.0, **extra):
    return {"resourceType": "Observation", "id": oid, "status": "final",
            "code": {"coding": [{"system": LOINC, "code": code}]}, "subject": {"reference": f"Patient/{pid}"},
            "valueQuantity": {"value": value, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"},
            **extra}


@pytest.fixture
def cohort(store):
    store.load([
        patient("p1", "female", "M-1"),
        patient("p2", "male", "M-2"),
        patient("p3", "female"),
        {"resourceType": "Group", "id": "g1", "type": "person", "actual": True,
         "member": [{"entity": {"reference": "Patient/p1"}}, {"entity": {"reference": "Patient/p2"}}]},
        obs("o1", "p1"), obs("o2", "p1", "8310-5", 37.0), obs("o3", "p2"),
        {"resourceType": "AdverseEvent", "id": "ae1", "actuality": "actual", "subject": {"reference": "Patient/p1"},
         "suspectEntity": [{"instance": {"reference": "Procedure/inj1"}}]},
        {"resourceType": "Procedure", "id": "inj1", "status": "completed", "subject": {"reference": "Patient/p1"}},
        {"resourceType": "Procedure", "id": "inj2", "status": "completed",
         "subject": {"identifier": {"system": "urn:mrn", "value": "M-2"}, "display": "by MRN only"}},
    ])
    return store


def ids(client, query):
    r = client.get(f"/fhir/{query}")
    assert r.status_code == 200, r.get_data(as_text=True)
    bundle = r.get_json()
    assert_r4(bundle)
    return [(e["search"]["mode"], e["resource"]["resourceType"], e["resource"].get("id"))
            for e in bundle.get("entry", [])]


def matches(client, query):
    return sorted(i for mode, _, i in ids(client, query) if mode == "match")


def test_chained_parameters(client, cohort):
    assert matches(client, "Observation?subject:Patient.gender=male") == ["o3"]
    assert matches(client, "Observation?subject:Patient.identifier=urn:mrn|M-1") == ["o1", "o2"]
    assert matches(client, "Observation?patient.gender=female&code=8310-5") == ["o2"]
    assert matches(client, "Observation?subject.gender=male") == ["o3"]  # of subject's types, only Patient has gender
    r = client.get("/fhir/Observation?subject.identifier=urn:mrn|M-1")  # Patient and Group both have it
    assert r.status_code == 400 and "may point to Group, Location, Patient; name one" in r.get_data(as_text=True)
    assert client.get("/fhir/Observation?code.gender=male").status_code == 400  # not a reference


def test_reverse_chaining(client, cohort):
    assert matches(client, f"Patient?_has:Observation:subject:code={LOINC}|8310-5") == ["p1"]
    assert matches(client, "Patient?_has:Observation:subject:code=29463-7") == ["p1", "p2"]
    assert matches(client, "Patient?_has:Observation:subject:code=29463-7&gender=male") == ["p2"]
    nested = "Patient?_has:Observation:subject:_has:AdverseEvent:subject:actuality=actual"
    assert client.get(f"/fhir/{nested}").status_code == 400  # an AdverseEvent's subject is no Observation
    assert matches(client, "Patient?_has:AdverseEvent:subject:actuality=actual") == ["p1"]


def test_reference_identifier_and_identifier_of_type(client, cohort):
    assert matches(client, "Procedure?subject:identifier=urn:mrn|M-2") == ["inj2"]
    v2 = "http://terminology.hl7.org/CodeSystem/v2-0203"
    assert matches(client, f"Patient?identifier:of-type={v2}|MR|M-1") == ["p1"]
    assert matches(client, f"Patient?identifier:of-type={v2}|DL|M-1") == []
    assert client.get("/fhir/Patient?identifier:of-type=M-1").status_code == 400


def test_include_and_revinclude(client, cohort):
    got = ids(client, "Observation?code=29463-7&_include=Observation:subject")
    assert sorted(i for m, _, i in got if m == "match") == ["o1", "o3"]
    assert sorted(i for m, _, i in got if m == "include") == ["p1", "p2"]
    got = ids(client, "Patient?_id=p1&_revinclude=Observation:subject&_revinclude=AdverseEvent:subject")
    assert sorted(i for m, _, i in got if m == "include") == ["ae1", "o1", "o2"]
    got = ids(client, "Observation?_id=o1&_include=Observation:subject&_revinclude:iterate=AdverseEvent:subject")
    assert sorted(i for m, _, i in got if m == "include") == ["ae1", "p1"]  # ae1 found through p1
    got = ids(client, "Group?_id=g1&_include=Group:member")
    assert sorted(i for m, _, i in got if m == "include") == ["p1", "p2"]
    assert client.get("/fhir/Observation?_include=Observation:colour").status_code == 400
    assert client.get("/fhir/Observation?_include=Patient:general-practitioner").status_code == 400


def test_includes_past_the_limit_are_announced_not_dropped_silently(client, cohort, monkeypatch):
    from adapter.store import includes
    monkeypatch.setattr(includes, "MAX_INCLUDED", 1)
    bundle = client.get("/fhir/Observation?code=29463-7&_include=Observation:subject").get_json()
    modes = [e["search"]["mode"] for e in bundle["entry"]]
    assert modes.count("include") == 1 and modes[-1] == "outcome"
    outcome = bundle["entry"][-1]["resource"]
    assert "1 more resources" in outcome["issue"][0]["diagnostics"]


def test_summary_and_elements(client, cohort):
    full = client.get("/fhir/Observation?_id=o1").get_json()["entry"][0]["resource"]
    assert "valueQuantity" in full
    summary = client.get("/fhir/Patient?_id=p1&_summary=true").get_json()["entry"][0]["resource"]
    assert "gender" in summary and "identifier" in summary
    tags = summary["meta"]["tag"]
    assert {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"} in tags
    elements = client.get("/fhir/Observation?_id=o1&_elements=code").get_json()["entry"][0]["resource"]
    assert set(elements) == {"resourceType", "id", "meta", "code", "status"}  # status is mandatory
    value = client.get("/fhir/Observation?_id=o1&_elements=value").get_json()["entry"][0]["resource"]
    assert "valueQuantity" in value
    count = client.get("/fhir/Observation?_summary=count").get_json()
    assert count["total"] == 3 and "entry" not in count
    data = client.get("/fhir/Observation?_id=o1&_summary=data").get_json()["entry"][0]["resource"]
    assert "valueQuantity" in data and "text" not in data
    assert client.get("/fhir/Observation?_summary=maybe").status_code == 400


def test_total_modes(client, cohort, monkeypatch):
    assert client.get("/fhir/Observation?_total=accurate").get_json()["total"] == 3
    assert "total" not in client.get("/fhir/Observation?_total=none").get_json()
    assert client.get("/fhir/Observation?_total=estimate").get_json()["total"] == 3
    from adapter.store import search_sql, sql_pages
    monkeypatch.setattr(search_sql, "ESTIMATE_BOUND", 2)
    monkeypatch.setattr(sql_pages, "ESTIMATE_BOUND", 2)
    assert "total" not in client.get("/fhir/Observation?_total=estimate").get_json()
    # A count request always counts: beyond the estimate bound, broad, or with _total=none.
    monkeypatch.setattr(search_sql, "BROAD", 1)
    monkeypatch.setattr(sql_pages, "BROAD", 1)
    for url in ("/fhir/Observation?value-quantity=gt10&_summary=count",
                "/fhir/Observation?_summary=count&_total=none", "/fhir/Observation?_summary=count"):
        assert client.get(url).get_json()["total"] == 3, url


@pytest.mark.slow
def test_paging_to_the_end_returns_every_match_once_while_writes_happen(client, store):
    store.load([obs(f"w{i:03d}", "p1", value=float(i)) for i in range(120)])
    url, seen, n = "/fhir/Observation?_count=7&_sort=-value-quantity", [], 0
    while url:
        bundle = client.get(url.replace("http://localhost", "")).get_json()
        seen += [e["resource"]["id"] for e in bundle.get("entry", [])]
        store.load([obs(f"new{n}", "p1", value=500.0 + n)])  # sorts before every page still to come
        store.update(obs(f"w{(n * 13) % 120:03d}", "p1", value=float((n * 13) % 120), note=[{"text": "edited"}]))
        n += 1
        url = next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None)
    assert sorted(seen) == sorted({f"w{i:03d}" for i in range(120)}) and len(seen) == 120


def test_quantity_search_is_ucum_aware(client, store):
    def igg(oid, value, unit):
        return {"resourceType": "Observation", "id": oid, "status": "final", "code": {"text": "IgG"},
                "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}}
    store.load([igg("g1", 8.5, "g/L"), igg("g2", 950, "mg/dL"), igg("g3", 12, "kg")])
    ucum = "http://unitsofmeasure.org"
    assert matches(client, f"Observation?value-quantity=ge800|{ucum}|mg/dL") == ["g1", "g2"]
    assert matches(client, f"Observation?value-quantity=gt9|{ucum}|g/L") == ["g2"]
    assert matches(client, f"Observation?value-quantity=8.5|{ucum}|g/L") == ["g1"]
    assert matches(client, f"Observation?value-quantity=12000|{ucum}|g") == ["g3"]  # kg are g too
    assert matches(client, "Observation?value-quantity=ge800||mg/dL") == ["g1", "g2"]


def test_patient_everything(client, cohort):
    got = ids(client, "Patient/p1/$everything")
    assert sorted((t, i) for _, t, i in got) == [
        ("AdverseEvent", "ae1"), ("Group", "g1"), ("Observation", "o1"), ("Observation", "o2"),
        ("Patient", "p1"), ("Procedure", "inj1")]
    only = ids(client, "Patient/p1/$everything?_type=Observation,Patient")
    assert sorted(i for _, _, i in only) == ["o1", "o2", "p1"]
    seen, url = [], "/fhir/Patient/p1/$everything?_count=2"
    while url:
        bundle = client.get(url.replace("http://localhost", "")).get_json()
        seen += [e["resource"]["id"] for e in bundle.get("entry", [])]
        url = next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None)
    assert sorted(seen) == ["ae1", "g1", "inj1", "o1", "o2", "p1"]
    assert ids(client, "Patient/p1/$everything?_since=2999-01-01") == []
    assert client.get("/fhir/Patient/nobody/$everything").status_code == 404
    assert client.get("/fhir/Patient/p1/$everything?_type=Colour").status_code == 400
    from adapter.fhir.search import encode_cursor
    for cursor in (encode_cursor(("only-one",)), encode_cursor((1, 2))):  # a search's cursor, a forged one
        assert client.get(f"/fhir/Patient/p1/$everything?_cursor={cursor}").status_code == 400


def test_capability_statement_lists_includes_that_work(client, cohort):
    rest = client.get("/fhir/metadata").get_json()["rest"][0]
    observation = next(r for r in rest["resource"] if r["type"] == "Observation")
    patient = next(r for r in rest["resource"] if r["type"] == "Patient")
    assert "Observation:subject" in observation["searchInclude"]
    assert "Observation:subject" in patient["searchRevInclude"]
    for include in observation["searchInclude"][1:]:
        assert client.get(f"/fhir/Observation?_include={include}").status_code == 200, include
    for revinclude in patient["searchRevInclude"]:
        assert client.get(f"/fhir/Patient?_revinclude={revinclude}").status_code == 200, revinclude
