"""Composite search parameters (https://hl7.org/fhir/R4/search.html#composite): components joined
by `$`, both taken from the same element instance; on both stores, through the store and HTTP."""
from __future__ import annotations

import pytest
from sqlalchemy import text

from adapter.fhir.extract import extract
from adapter.fhir.search import parse_search
from adapter.store.sql_store import SqlStore

LOINC, UCUM = "http://loinc.org", "http://unitsofmeasure.org"


def _coded(code: str) -> dict:
    return {"coding": [{"system": LOINC, "code": code}]}


def _bp(rid: str, systolic: float, diastolic: float) -> dict:
    return {"resourceType": "Observation", "id": rid, "status": "final", "code": _coded("85354-9"),
            "component": [
                {"code": _coded("8480-6"), "valueQuantity": {"value": systolic, "system": UCUM, "code": "mm[Hg]"}},
                {"code": _coded("8462-4"), "valueQuantity": {"value": diastolic, "system": UCUM, "code": "mm[Hg]"}}]}


OBSERVATIONS = [
    _bp("bp-high", 150, 95), _bp("bp-mixed", 150, 70), _bp("bp-low", 110, 70),
    {"resourceType": "Observation", "id": "weight", "status": "final", "code": _coded("29463-7"),
     "valueQuantity": {"value": 52.5, "system": UCUM, "code": "kg", "unit": "kg"}},
    {"resourceType": "Observation", "id": "gmfcs", "status": "final", "code": _coded("gmfcs"),
     "valueCodeableConcept": {"coding": [{"system": "http://example.org/gmfcs", "code": "III"}]}},
    {"resourceType": "Observation", "id": "onset", "status": "final", "code": _coded("onset"),
     "valueDateTime": "2024-03-05"},
    {"resourceType": "Observation", "id": "note", "status": "final", "code": _coded("note"),
     "valueString": "Spastic diplegia"},
]


def _ids(store: SqlStore, query: str) -> list[str]:
    name, _, value = query.partition("=")
    return sorted(e.id for e in store.search(parse_search("Observation", [(name, value)])).entries)


@pytest.fixture
def observations(store: SqlStore) -> SqlStore:
    store.load(OBSERVATIONS)
    return store


@pytest.mark.parametrize("query, expected", [
    # systolic and diastolic must come from the same component: bp-mixed has a systolic of 150
    # and a component over 90, but not both in one
    ("component-code-value-quantity=http://loinc.org|8480-6$gt140", ["bp-high", "bp-mixed"]),
    ("component-code-value-quantity=http://loinc.org|8462-4$gt90", ["bp-high"]),
    ("component-code-value-quantity=8462-4$gt140", []),
    ("component-code-value-quantity=8480-6$lt120|http://unitsofmeasure.org|mm[Hg]", ["bp-low"]),
    ("code-value-quantity=http://loinc.org|29463-7$gt50|http://unitsofmeasure.org|kg", ["weight"]),
    ("code-value-quantity=http://loinc.org|29463-7$52500|http://unitsofmeasure.org|g", ["weight"]),  # UCUM
    ("code-value-quantity=http://loinc.org|29463-7$lt50", []),
    ("code-value-quantity=http://loinc.org|8480-6$gt0", []),  # a component is not the Observation's value
    ("combo-code-value-quantity=8480-6$gt140,29463-7$52.5", ["bp-high", "bp-mixed", "weight"]),
    ("code-value-concept=gmfcs$http://example.org/gmfcs|III", ["gmfcs"]),
    ("code-value-concept=gmfcs$II", []),
    ("code-value-date=onset$2024-03", ["onset"]),
    ("code-value-date=onset$gt2024-03-05", []),
    ("code-value-string=note$spastic", ["note"]),
    ("code-value-string=note$flaccid", []),
    ("code-value-quantity:missing=true", ["bp-high", "bp-low", "bp-mixed", "gmfcs", "note", "onset"]),
    ("component-code-value-quantity=8462-4\\$x$70", []),  # an escaped $ belongs to the code
])
def test_composite_search(observations: SqlStore, query: str, expected: list[str]) -> None:
    assert _ids(observations, query) == expected


@pytest.mark.parametrize("query", [
    "code-value-quantity=29463-7", "code-value-quantity=29463-7$50$kg", "code-value-quantity=$50",
    "code-value-quantity=29463-7$x", "code-value-date=onset$2024-13", "code-value-quantity:exact=29463-7$5",
])
def test_malformed_composite_values_are_a_400_naming_the_parameter(client, query: str) -> None:
    r = client.get(f"/fhir/Observation?{query}")
    assert r.status_code == 400, r.get_data(as_text=True)
    issue = r.get_json()["issue"][0]
    assert issue["expression"] == [query.split("=")[0]]


def test_composite_over_http_and_in_the_capability_statement(client, store: SqlStore) -> None:
    store.load(OBSERVATIONS)
    r = client.get("/fhir/Observation?component-code-value-quantity=http://loinc.org|8462-4$gt90")
    assert [e["resource"]["id"] for e in r.get_json()["entry"]] == ["bp-high"]
    params = {p["name"]: p for res in client.get("/fhir/metadata").get_json()["rest"][0]["resource"]
              for p in res["searchParam"] if res["type"] == "Observation"}
    assert params["combo-code-value-quantity"]["type"] == "composite"
    assert params["combo-code-value-quantity"]["definition"] == \
        "http://hl7.org/fhir/SearchParameter/Observation-combo-code-value-quantity"
    assert {n for n, p in params.items() if p["type"] == "composite"} == {
        "code-value-concept", "code-value-date", "code-value-quantity", "code-value-string",
        "combo-code-value-concept", "combo-code-value-quantity", "component-code-value-concept",
        "component-code-value-quantity"}


def test_group_characteristic_value_pairs_code_and_value_of_one_characteristic(store: SqlStore) -> None:
    store.update({"resourceType": "Group", "id": "g", "type": "person", "actual": False, "characteristic": [
        {"code": {"text": "arm", "coding": [{"code": "arm"}]}, "valueCodeableConcept": {"coding": [{"code": "1"}]},
         "exclude": False},
        {"code": {"coding": [{"code": "site"}]}, "valueCodeableConcept": {"coding": [{"code": "a"}]},
         "exclude": False}]})
    found = [e.id for e in store.search(parse_search("Group", [("characteristic-value", "arm$1")])).entries]
    assert found == ["g"]
    assert store.search(parse_search("Group", [("characteristic-value", "arm$a")])).entries == []


def test_the_migration_indexes_resources_stored_before_it(db_url: str) -> None:
    """A store upgraded from 0001 finds composites of the Observations it already held."""
    from alembic import command

    from adapter.store.migrate import _config
    store = SqlStore(db_url)
    store.load(OBSERVATIONS)
    with store.engine.begin() as conn:
        command.downgrade(_config(conn), "0001")
    with store.engine.begin() as conn:
        command.upgrade(_config(conn), "head")
        rows = conn.execute(text("SELECT count(*) FROM idx_composite")).scalar_one()
    assert rows == sum(len(extract(o).composite) for o in OBSERVATIONS) > 0
    assert _ids(store, "component-code-value-quantity=8462-4$gt90") == ["bp-high"]
    store.close()
