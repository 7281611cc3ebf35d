"""Search statements cached by shape (adapter/store/statements.py): two searches of one shape
with different values share the SQL text and never each other's values; the cache is bounded.
Both stores."""
from __future__ import annotations

import pytest

from adapter.store import statements

LOINC, UCUM = "http://loinc.org", "http://unitsofmeasure.org"


def _patient(pid, family, mrn):
    return {"resourceType": "Patient", "id": pid, "gender": "female" if pid < "p3" else "male",
            "birthDate": f"201{pid[-1]}-03-14", "name": [{"family": family}],
            "identifier": [{"system": "urn:mrn", "value": mrn}]}


def _obs(oid, pid, code, value, date):
    return {"resourceType": "Observation", "id": oid, "status": "final" if value < 30 else "amended",
            "code": {"coding": [{"system": LOINC, "code": code}], "text": f"test {code}"},
            "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": date,
            "valueQuantity": {"value": value, "unit": "kg", "system": UCUM, "code": "kg"}}


@pytest.fixture
def data(store):
    store.load([_patient("p1", "Ng", "M1"), _patient("p2", "Nguyen", "M2"), _patient("p3", "Smith_%", "M3")])
    store.load([_obs(f"o{i:02d}", f"p{1 + i % 3}", ("29463-7", "8310-5")[i % 2], 10.0 + i * 1.5,
                     f"2026-0{1 + i % 9}-1{i % 10}") for i in range(24)])
    return store


# Pairs of searches of one shape; each must return what it returns from a cold cache.
PAIRS = [
    ("Observation?subject=Patient/p1&code=http://loinc.org|29463-7",
     "Observation?subject=Patient/p2&code=http://loinc.org|8310-5"),
    ("Observation?patient=p1&_count=2", "Observation?patient=p3&_count=2"),
    ("Patient?identifier=urn:mrn|M1", "Patient?identifier=urn:mrn|M3"),
    ("Patient?name=ng", "Patient?name=smith_"),
    ("Patient?name:exact=Ng", "Patient?name:exact=Nguyen"),
    ("Patient?name:contains=_%", "Patient?name:contains=guy"),
    ("Observation?value-quantity=gt20", "Observation?value-quantity=gt40"),
    ("Observation?value-quantity=25|http://unitsofmeasure.org|kg",
     "Observation?value-quantity=31|http://unitsofmeasure.org|kg"),
    ("Observation?date=ge2026-03&date=lt2026-06&_sort=-date&_count=3",
     "Observation?date=ge2026-05&date=lt2026-09&_sort=-date&_count=3"),
    ("Observation?code:text=test 2&_sort=value-quantity&_count=4",
     "Observation?code:text=test 8&_sort=value-quantity&_count=4"),
    ("Observation?subject:Patient.name=ng&_count=5", "Observation?subject:Patient.name=smith&_count=5"),
    ("Patient?_has:Observation:subject:value-quantity=gt44", "Patient?_has:Observation:subject:value-quantity=lt11"),
    ("Patient/p1/Observation?code=http://loinc.org|29463-7", "Patient/p2/Observation?code=http://loinc.org|29463-7"),
    ("Observation?status:not=final&_count=3", "Observation?status:not=amended&_count=3"),
    ("Patient?birthdate=2011", "Patient?birthdate=2013"),
    ("Observation?code-value-quantity=http://loinc.org|29463-7$gt20",
     "Observation?code-value-quantity=http://loinc.org|8310-5$gt20"),
]


def _ids(client, url):
    """Every match, by following `next` links (the cursors' values bound too), and the total."""
    seen, total, url = [], None, "/fhir/" + url
    while url:
        bundle = client.get(url.replace("http://localhost", "")).get_json()
        assert bundle["resourceType"] == "Bundle", bundle
        total = bundle.get("total") if total is None else total
        seen += [e["resource"]["id"] for e in bundle.get("entry", [])]
        url = next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None)
    return seen, total


@pytest.mark.slow
def test_searches_of_one_shape_never_share_values(client, data):
    expected = {}
    for pair in PAIRS:
        for url in pair:
            statements.clear()
            expected[url] = _ids(client, url)
    assert all(ids for ids, _ in expected.values())  # each search finds something
    for first, second in PAIRS:
        assert expected[first] != expected[second], (first, second)  # the values make a difference
    statements.clear()
    before = statements.cache_info()["hits"]
    for _ in range(2):  # warm: each search follows the other of its shape
        for pair in PAIRS:
            for url in pair:
                assert _ids(client, url) == expected[url], url
    assert statements.cache_info()["hits"] > before


def test_the_statement_cache_is_bounded(client, data, monkeypatch):
    statements.clear()
    monkeypatch.setattr(statements, "CACHE_SIZE", 3)
    for url, _ in PAIRS:
        _ids(client, url)
        assert statements.cache_info()["size"] <= 3
    cold = {url: _ids(client, url) for url, _ in PAIRS}  # evicted shapes are built again
    statements.clear()
    assert cold == {url: _ids(client, url) for url, _ in PAIRS}
