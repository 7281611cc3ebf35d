"""What one answer may carry (issue 25, item 5): a page of a search, a history or $everything
ends at 16 MB of resources with a `next` link that goes on from there; _include/_revinclude stop at
the page's bytes too, and say how many they left out; a batch stops running reads once its answer
passes 32 MB or 10,000 included resources, a transaction fails. On SQLite and PostgreSQL, with
resources of 1 MB each (no bound changed for the test)."""
from __future__ import annotations

import json

import pytest

from adapter.gateway.transactions import MAX_ANSWER_BYTES
from adapter.store.budget import MAX_PAGE_BYTES
from adapter.store.includes import MAX_INCLUDED

FHIR = "application/fhir+json"
MB = 1 << 20
BIG = MAX_PAGE_BYTES // MB + 4  # resources of 1 MB: more than a page holds


def _patient(n: int) -> dict:
    return {"resourceType": "Patient", "id": f"big{n:02d}", "name": [{"text": "x" * MB}]}


def _observation(n: int, patient: str = "p1") -> dict:
    return {"resourceType": "Observation", "id": f"obs{n:02d}", "status": "final", "code": {"text": "x" * MB},
            "subject": {"reference": f"Patient/{patient}"}}


def _ids(bundle: dict, mode: str = "match") -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e.get("search", {}).get("mode", mode) == mode]


def _follow(client, url: str) -> list[dict]:
    pages = []
    while url:
        answer = client.get(url.split("/fhir", 1)[1].join(["/fhir", ""]))
        assert answer.status_code == 200, answer.get_data(as_text=True)[:300]
        pages.append(answer.json)
        url = next((link["url"] for link in answer.json["link"] if link["relation"] == "next"), "")
    return pages


@pytest.mark.parametrize("path", ["Patient?_count=100&name=x", "Patient/_history?_count=100",
                                  "Patient?_count=100&_sort=-_id&name=x"])
def test_a_page_ends_at_its_byte_budget_and_the_next_goes_on(client, store, path):
    store.load([_patient(n) for n in range(BIG)])
    pages = _follow(client, f"/fhir/{path}")
    assert len(pages) == 2 and all(len(json.dumps(p)) < MAX_PAGE_BYTES + MB for p in pages)
    seen = [rid for page in pages for rid in _ids(page)] if "_history" not in path else \
        [e["resource"]["id"] for page in pages for e in page["entry"]]
    assert sorted(seen) == [f"big{n:02d}" for n in range(BIG)]  # every one once


def test_everything_pages_by_bytes_too(client, store):
    store.load([{"resourceType": "Patient", "id": "p1"}, *[_observation(n) for n in range(BIG)]])
    pages = _follow(client, "/fhir/Patient/p1/$everything?_count=1000")
    assert len(pages) == 2
    assert sorted(rid for page in pages for rid in _ids(page)) == sorted(["p1", *[f"obs{n:02d}" for n in range(BIG)]])


def test_includes_stop_at_the_pages_bytes_and_say_so(client, store):
    store.load([{"resourceType": "Patient", "id": "p1"}, *[_observation(n) for n in range(BIG)]])
    bundle = client.get("/fhir/Patient?_id=p1&_revinclude=Observation:subject").json
    included = _ids(bundle, "include")
    assert 0 < len(included) < BIG and len(json.dumps(bundle)) < MAX_PAGE_BYTES + MB
    (outcome,) = [e["resource"] for e in bundle["entry"] if e["search"]["mode"] == "outcome"]
    assert outcome["issue"][0]["code"] == "too-costly"
    assert outcome["issue"][0]["diagnostics"].startswith(f"{BIG - len(included)} more resources")


def test_a_batchs_reads_stop_at_its_answer_budget(client, store):
    store.load([_patient(n) for n in range(BIG)])
    reads = MAX_ANSWER_BYTES // MAX_PAGE_BYTES + 2  # each read answers a full page
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        *[{"request": {"method": "GET", "url": "Patient?name=x&_count=100"}} for _ in range(reads)],
        {"request": {"method": "POST", "url": "Patient"}, "resource": {"resourceType": "Patient"}}]}
    answer = client.post("/fhir", data=json.dumps(batch), content_type=FHIR)
    statuses = [e["response"]["status"] for e in answer.json["entry"]]
    assert statuses[:reads - 1] == ["200"] * (reads - 1) and statuses[reads - 1:] == ["413", "201"], statuses
    assert answer.json["entry"][reads - 1]["response"]["outcome"]["issue"][0]["code"] == "too-costly"
    transaction = {**batch, "type": "transaction"}
    failed = client.post("/fhir", data=json.dumps(transaction), content_type=FHIR)
    assert failed.status_code == 413 and failed.json["issue"][0]["code"] == "too-costly"
    assert client.get("/fhir/Patient?_summary=count").json["total"] == BIG + 1  # the batch's one create


def test_a_batchs_reads_stop_at_its_included_budget(client, store):
    patients = [{"resourceType": "Patient", "id": f"p{n}"} for n in range(3)]
    observations = [{"resourceType": "Observation", "id": f"o{p}-{n}", "status": "final", "code": {"text": "w"},
                     "subject": {"reference": f"Patient/p{p}"}} for p in range(3) for n in range(MAX_INCLUDED + 1)]
    store.load([*patients, *observations])
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": f"Patient?_id=p{p}&_revinclude=Observation:subject"}} for p in (0, 1, 2, 0)]}
    statuses = [e["response"]["status"] for e in client.post("/fhir", data=json.dumps(batch), content_type=FHIR)
                .json["entry"]]
    assert statuses == ["200", "200", "200", "413"]  # 3 x 5,000 included (each page's most) pass 10,000
