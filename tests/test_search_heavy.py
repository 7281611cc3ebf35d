"""A search with many matches: a page walks the driving filter's index in id order and stops
at the page (search_sql.ordered_driver); following `next` to the end, or `previous` back, still
returns every match exactly once, in order. Counts: skipped when the first page holds every
match, and not spent on a patient with more index entries than a broad search (BROAD). Both
stores."""
from __future__ import annotations

import pytest

from adapter.fhir.search import parse_search
from adapter.store import search_sql, sql_pages

LOINC = "http://loinc.org"
HEAVY = 3000


def obs(oid, pid, code="29463-7", twice=False):
    coding = [{"system": LOINC, "code": code}] * (2 if twice else 1)  # two equal index rows
    return {"resourceType": "Observation", "id": oid, "status": "final", "code": {"coding": coding},
            "subject": {"reference": f"Patient/{pid}"}}


@pytest.fixture
def heavy(store):
    store.load([{"resourceType": "Patient", "id": pid} for pid in ("heavy", "light")])
    # ids in an order unlike their load order, some sorting among the other patient's
    store.load(obs(f"h{(i * 7919) % HEAVY:05d}", "heavy", twice=i % 11 == 0) for i in range(HEAVY))
    store.load([obs(f"h{i:05d}x", "heavy", code="8310-5") for i in range(0, HEAVY, 50)])  # other code
    store.load([obs(f"h{i:05d}l", "light") for i in range(0, HEAVY, 100)])
    for i in range(3, HEAVY, 500):
        store.delete("Observation", f"h{i:05d}")
    return sorted(f"h{i:05d}" for i in range(HEAVY) if i % 500 != 3)


def _pages(client, url):
    seen, bundles = [], []
    while url:
        bundle = client.get(url.replace("http://localhost", "")).get_json()
        bundles.append(bundle)
        seen += [e["resource"]["id"] for e in bundle.get("entry", [])]
        url = next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None)
    return seen, bundles


def test_heavy_patient_paged_to_the_end_returns_every_match_once_in_order(client, heavy):
    seen, bundles = _pages(client, f"/fhir/Observation?subject=Patient/heavy&code={LOINC}|29463-7&_count=97"
                                   "&_total=accurate")
    assert seen == heavy
    assert {bundle["total"] for bundle in bundles} == {len(heavy)}  # every page counts every match
    # back from the last page by `previous`: the same pages, the same order
    back, url = [], next(link["url"] for link in bundles[-1]["link"] if link["relation"] == "previous")
    while url:
        bundle = client.get(url.replace("http://localhost", "")).get_json()
        back = [e["resource"]["id"] for e in bundle.get("entry", [])] + back
        url = next((link["url"] for link in bundle["link"] if link["relation"] == "previous"), None)
    assert back + [e["resource"]["id"] for e in bundles[-1]["entry"]] == heavy


def test_a_code_twice_in_one_resource_is_one_match(client, heavy):
    seen, _ = _pages(client, f"/fhir/Observation?code={LOINC}|29463-7&_count=250")
    assert seen == sorted(heavy + [f"h{i:05d}l" for i in range(0, HEAVY, 100)])


def test_heavy_page_walks_the_index_in_id_order(store, heavy):
    request = parse_search("Observation", [("subject", "Patient/heavy"), ("code", f"{LOINC}|29463-7")])
    assert search_sql.ordered_driver(request) is not None
    page, _ = search_sql.build_queries(request, ordered=store.engine.dialect.name)
    with store.engine.connect() as conn:
        sql = str(page.compile(conn))
    assert " IN (" not in sql and "drive" in sql  # no IN-subquery gathering every match
    sorted_request = parse_search("Observation", [("subject", "Patient/heavy"), ("_sort", "_lastUpdated")])
    assert search_sql.ordered_driver(sorted_request) is None


def test_estimate_not_counted_for_a_patient_with_many_entries(client, heavy, monkeypatch):
    monkeypatch.setattr(search_sql, "BROAD", 100)
    monkeypatch.setattr(sql_pages, "BROAD", 100)
    url = f"/fhir/Observation?subject=Patient/heavy&code={LOINC}|29463-7&_count=10"
    assert "total" not in client.get(url).get_json()
    assert client.get(url + "&_total=accurate").get_json()["total"] == len(heavy)
    light = client.get(f"/fhir/Observation?subject=Patient/light&code={LOINC}|29463-7&_count=10").get_json()
    assert light["total"] == HEAVY // 100 and len(light["entry"]) == 10  # counted: under the bound
    following = next(link["url"] for link in light["link"] if link["relation"] == "next")
    assert client.get(following.replace("http://localhost", "")).get_json()["total"] == HEAVY // 100


def test_total_of_a_first_page_holding_every_match(client, heavy):
    for total in ("estimate", "accurate"):
        bundle = client.get(f"/fhir/Observation?subject=Patient/light&_total={total}&_count=100").get_json()
        assert bundle["total"] == len(bundle["entry"]) == HEAVY // 100
        assert not any(link["relation"] == "next" for link in bundle["link"])
    assert "total" not in client.get("/fhir/Observation?subject=Patient/light&_total=none").get_json()
    assert client.get("/fhir/Observation?subject=Patient/light&_summary=count").get_json()["total"] == HEAVY // 100
