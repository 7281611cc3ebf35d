"""Search semantics over the store: tokens, dates, references, strings, sorting, paging."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapter.fhir.outcomes import FhirError
from adapter.fhir.search import encode_cursor, parse_search
from conftest import observation

LOINC = "http://loinc.org"


@pytest.fixture
def loaded(store):
    store.load([
        observation(id="w1", effectiveDateTime="2024-01-15", code={"coding": [{"system": LOINC, "code": "29463-7"}]},
                    valueQuantity={"value": 18.3, "system": "http://unitsofmeasure.org", "code": "kg"}),
        observation(id="w2", effectiveDateTime="2024-02-29T10:00:00+08:00",
                    subject={"reference": "Patient/p2"},
                    code={"coding": [{"system": LOINC, "code": "29463-7"}]},
                    valueQuantity={"value": 21, "system": "http://unitsofmeasure.org", "code": "kg"}),
        observation(id="t1", effectiveDateTime="2024-03", status="preliminary",
                    code={"coding": [{"system": "http://example.org/local", "code": "29463-7"}], "text": "Local weight"},
                    category=[{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}]),
        observation(id="n1", code={"text": "no coding"}, effectivePeriod={"start": "2023-12-01", "end": "2024-01-01"}),
        {"resourceType": "Patient", "id": "p1", "name": [{"family": "Müller", "given": ["Zoë"]}],
         "identifier": [{"system": "urn:site-a", "value": "A-0001"}], "birthDate": "2019-03-14", "gender": "female"},
        {"resourceType": "Patient", "id": "p2", "name": [{"family": "Mueller"}], "birthDate": "2018", "gender": "male"},
    ])
    return store


def ids(store, rtype, params, strict=False):
    page = store.search(parse_search(rtype, params, strict))
    return sorted(e.id for e in page.entries)


@pytest.mark.parametrize("params,expected", [
    ([("code", "29463-7")], ["t1", "w1", "w2"]),
    ([("code", f"{LOINC}|29463-7")], ["w1", "w2"]),
    ([("code", "|29463-7")], []),
    ([("code", f"{LOINC}|")], ["w1", "w2"]),
    ([("code", "http://example.org/local|29463-7,http://nowhere|x")], ["t1"]),
    ([("status", "final"), ("code", "29463-7")], ["w1", "w2"]),
    ([("status:not", "final")], ["t1"]),
    ([("code:text", "local")], ["t1"]),
    ([("category", "vital-signs")], ["t1"]),
    ([("_id", "w1,n1")], ["n1", "w1"]),
    ([("subject", "Patient/p2")], ["w2"]),
    ([("subject:Patient", "p2")], ["w2"]),
    ([("patient", "p1")], ["n1", "t1", "w1"]),
    ([("subject", "http://elsewhere.org/fhir/Patient/p2")], ["w2"]),
    ([("date", "2024")], ["t1", "w1", "w2"]),
    ([("date", "2024-02")], ["w2"]),
    ([("date", "2024-02-29")], ["w2"]),  # 10:00+08:00 is 02:00Z, still on the 29th
    ([("date", "ge2024-02-01")], ["t1", "w2"]),
    ([("date", "lt2024-01-15")], ["n1"]),
    ([("date", "le2024-01-15")], ["n1", "w1"]),
    ([("date", "gt2024-02-29")], ["t1"]),
    ([("date", "sa2024-01-31")], ["t1", "w2"]),
    ([("date", "eb2024-01-01")], []),
    ([("date", "ne2024-01-15")], ["n1", "t1", "w2"]),
    # a period overlapping the bounds matches both prefixes (search.html#prefix)
    ([("date", "ge2024-01-01"), ("date", "lt2024-02-01")], ["n1", "w1"]),
    ([("date", "ge2024-01-02"), ("date", "lt2024-02-01")], ["w1"]),
    ([("value-quantity", "18.3")], ["w1"]),
    ([("value-quantity", "gt20|http://unitsofmeasure.org|kg")], ["w2"]),
    ([("value-quantity", "18.3||kg")], ["w1"]),
    ([("value-quantity:missing", "true")], ["n1", "t1"]),
    ([("_lastUpdated", "gt2000-01-01")], ["n1", "t1", "w1", "w2"]),
])
def test_observation_searches(loaded, params, expected):
    assert ids(loaded, "Observation", params) == expected


@pytest.mark.parametrize("params,expected", [
    ([("name", "mu")], ["p1", "p2"]),
    ([("name", "müller")], ["p1"]),
    ([("name", "zoe")], ["p1"]),
    ([("name:exact", "Mueller")], ["p2"]),
    ([("name:contains", "ell")], ["p2"]),
    ([("family", "muller")], ["p1"]),
    ([("identifier", "urn:site-a|A-0001")], ["p1"]),
    ([("identifier", "A-0001")], ["p1"]),
    ([("birthdate", "2018")], ["p2"]),
    ([("birthdate", "2019-03")], ["p1"]),
    ([("gender", "female")], ["p1"]),
])
def test_patient_searches(loaded, params, expected):
    assert ids(loaded, "Patient", params) == expected


def test_unknown_parameter_is_ignored_or_rejected(loaded):
    request = parse_search("Observation", [("colour", "red"), ("status", "final")])
    assert request.ignored == ("colour",)
    assert request.used_params() == [("status", "final")]
    with pytest.raises(FhirError) as caught:
        parse_search("Observation", [("colour", "red")], strict=True)
    assert caught.value.status == 400
    assert caught.value.issues[0].expression == "colour"


@pytest.mark.parametrize("params,where", [
    ([("date", "2024-13")], "date"),
    ([("_count", "-1")], "_count"),
    ([("_sort", "colour")], "_sort"),
    ([("_total", "maybe")], "_total"),
    ([("status:fuzzy", "final")], "status:fuzzy"),
    ([("value-quantity", "heavy")], "value-quantity"),
    ([("_cursor", "!!!")], "_cursor"),
    ([("status:missing", "perhaps")], "status:missing"),
])
def test_bad_search_values_are_400_with_the_parameter(params, where):
    with pytest.raises(FhirError) as caught:
        parse_search("Observation", params)
    assert caught.value.status == 400
    assert caught.value.issues[0].expression == where


def test_sort_by_date_both_ways_missing_last(loaded):
    def order(sort):
        page = loaded.search(parse_search("Observation", [("_sort", sort)]))
        return [e.id for e in page.entries]
    assert order("date") == ["n1", "w1", "w2", "t1"]
    assert order("-date") == ["t1", "w2", "w1", "n1"]
    loaded.update(observation(id="x0"))  # no date at all: last either way
    assert order("date")[-1] == "x0" and order("-date")[-1] == "x0"


def test_total_none_leaves_total_out(loaded):
    assert loaded.search(parse_search("Observation", [("_total", "none")])).total is None


def _all_pages(store, params, count):
    seen, cursor = [], None
    for _ in range(1000):
        extra = [("_cursor", encode_cursor(cursor))] if cursor else []
        page = store.search(parse_search("Observation", params + [("_count", str(count))] + extra))
        seen += [e.id for e in page.entries]
        cursor = page.next_cursor
        if cursor is None:
            return seen, page.total
    raise AssertionError("paging did not end")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(dates=st.lists(st.one_of(st.none(), st.dates().map(lambda d: d.isoformat())), max_size=25),
       count=st.integers(min_value=1, max_value=7),
       sort=st.sampled_from(["", "date", "-date", "_lastUpdated", "-_id", "status,-date"]))
@pytest.mark.slow
def test_paging_visits_every_match_exactly_once(store, dates, count, sort):
    store.engine.dispose()
    with store.engine.begin() as conn:
        from adapter.store.schema import metadata
        for table in reversed(metadata.sorted_tables):
            conn.execute(table.delete())
    resources = []
    for i, day in enumerate(dates):
        extra = {"effectiveDateTime": day} if day else {}
        resources.append(observation(id=f"o{i:02d}", status=["final", "amended"][i % 2], **extra))
    store.load(resources)
    params = [("_sort", sort)] if sort else []
    seen, total = _all_pages(store, params, count)
    assert sorted(seen) == sorted(r["id"] for r in resources)
    assert len(seen) == len(set(seen)) == total
