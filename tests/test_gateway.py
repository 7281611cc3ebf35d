"""The REST interactions over real HTTP (https://hl7.org/fhir/R4/http.html)."""
from __future__ import annotations

import decimal
import json

import pytest

from conftest import observation
from r4schema import assert_r4

FHIR_JSON = "application/fhir+json"


def post(http, live, body, rtype="Observation", **headers):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return http.post(f"{live}/{rtype}", data=data,
                     headers={"Content-Type": FHIR_JSON, **headers})


def test_create_answers_201_with_location_etag_and_the_resource(http, live):
    r = post(http, live, '{"resourceType": "Observation", "status": "final", '
                         '"code": {"text": "weight"}, "valueQuantity": {"value": 6.30}}')
    assert r.status_code == 201
    assert r.headers["Content-Type"].startswith(FHIR_JSON)
    body = r.json()
    assert r.headers["Location"] == f"{live}/Observation/{body['id']}/_history/1"
    assert r.headers["ETag"] == 'W/"1"'
    assert "Last-Modified" in r.headers
    assert b'"value":6.30' in r.content
    assert_r4(body)


def test_create_ignores_a_client_id(http, live):
    r = post(http, live, observation(id="mine"))
    assert r.status_code == 201 and r.json()["id"] != "mine"


@pytest.mark.parametrize("prefer,has_body,kind", [
    ("return=minimal", False, None),
    ("return=representation", True, "Observation"),
    ("return=OperationOutcome", True, "OperationOutcome"),
])
def test_prefer_return(http, live, prefer, has_body, kind):
    r = post(http, live, observation(), Prefer=prefer)
    assert r.status_code == 201 and r.headers["Location"]
    assert bool(r.content) == has_body
    if kind:
        assert r.json()["resourceType"] == kind


def test_read_serves_the_stored_bytes(http, live, store):
    stored = store.update(observation(id="o1", valueQuantity={"value": decimal.Decimal("6.30")}))
    r = http.get(f"{live}/Observation/o1")
    assert r.status_code == 200
    assert r.content == stored.data
    assert_r4(r.json())
    assert r.headers["ETag"] == 'W/"1"'
    assert r.headers["Last-Modified"].endswith("GMT")
    assert http.get(f"{live}/Observation/o1", headers={"If-None-Match": 'W/"1"'}).status_code == 304


def test_update_create_update_vread_history_delete(http, live):
    url = f"{live}/Observation/o1"
    put = lambda body, **h: http.put(url, data=json.dumps(body), headers={"Content-Type": FHIR_JSON, **h})
    first = put(observation(id="o1", status="preliminary"))
    assert first.status_code == 201 and first.headers["Location"].endswith("/Observation/o1/_history/1")
    second = put(observation(id="o1"), **{"If-Match": 'W/"1"'})
    assert second.status_code == 200 and second.headers["ETag"] == 'W/"2"'
    stale = put(observation(id="o1", status="amended"), **{"If-Match": 'W/"1"'})
    assert stale.status_code == 412 and stale.json()["resourceType"] == "OperationOutcome"
    v1 = http.get(f"{url}/_history/1")
    assert v1.status_code == 200 and v1.json()["status"] == "preliminary"
    assert_r4(v1.json())
    assert_r4(second.json())
    assert http.get(f"{url}/_history/9").status_code == 404
    gone = http.delete(url)
    assert gone.status_code == 204 and gone.headers["ETag"] == 'W/"3"'
    r = http.get(url)
    assert r.status_code == 410 and r.json()["issue"][0]["code"] == "deleted"
    assert http.get(f"{url}/_history/3").status_code == 410
    hist = http.get(f"{url}/_history").json()
    assert hist["type"] == "history" and hist["total"] == 3
    assert [e["request"]["method"] for e in hist["entry"]] == ["DELETE", "PUT", "PUT"]
    assert [e["response"]["status"] for e in hist["entry"]] == ["200 OK", "200 OK", "201 Created"]
    assert "resource" not in hist["entry"][0]
    assert_r4(hist)
    assert http.delete(f"{live}/Observation/never").status_code == 204


def test_type_and_system_history_page_to_the_end(http, live):
    for _ in range(5):
        post(http, live, observation())
    http.put(f"{live}/Patient/p1", data='{"resourceType":"Patient","id":"p1"}',
             headers={"Content-Type": FHIR_JSON})
    seen, url = [], f"{live}/Observation/_history?_count=2"
    while url:
        bundle = http.get(url).json()
        assert bundle["total"] == 5
        seen += [e["fullUrl"] for e in bundle["entry"]]
        url = next((l["url"] for l in bundle["link"] if l["relation"] == "next"), None)
    assert len(seen) == len(set(seen)) == 5
    assert http.get(f"{live}/_history").json()["total"] == 6


def test_search_bundle_pages_with_absolute_links(http, live, store):
    store.load([observation(id=f"o{i:02d}", effectiveDateTime=f"2024-01-{i + 1:02d}") for i in range(23)])
    url = f"{live}/Observation?subject=Patient/p1&_sort=-date&_count=10"
    seen, pages = [], 0
    while url:
        r = http.get(url)
        assert r.status_code == 200
        bundle = r.json()
        assert_r4(bundle)
        assert bundle["type"] == "searchset" and bundle["total"] == 23
        links = {l["relation"]: l["url"] for l in bundle["link"]}
        assert links["self"].startswith("http://127.0.0.1:")
        seen += [e["resource"]["id"] for e in bundle["entry"]]
        assert all(e["search"]["mode"] == "match" for e in bundle["entry"])
        url = links.get("next")
        pages += 1
    assert pages == 3
    assert seen == [f"o{i:02d}" for i in reversed(range(23))]


def test_post_search_with_a_form_body(http, live, store):
    store.load([observation(id="o1"), observation(id="o2", status="amended")])
    r = http.post(f"{live}/Observation/_search", data={"status": "amended"})
    assert r.status_code == 200
    assert [e["resource"]["id"] for e in r.json()["entry"]] == ["o2"]
    r = http.post(f"{live}/Observation/_search?status=final", data=b"{}",
                  headers={"Content-Type": "application/json"})
    assert r.status_code == 415


def test_unknown_search_parameter_lenient_and_strict(http, live, store):
    store.load([observation(id="o1")])
    r = http.get(f"{live}/Observation?colour=red&status=final")
    bundle = r.json()
    assert r.status_code == 200 and bundle["total"] == 1
    assert "colour" not in bundle["link"][0]["url"]
    outcome = [e for e in bundle["entry"] if e["search"]["mode"] == "outcome"]
    assert outcome and outcome[0]["resource"]["issue"][0]["severity"] == "warning"
    strict = http.get(f"{live}/Observation?colour=red", headers={"Prefer": "handling=strict"})
    assert strict.status_code == 400
    assert strict.json()["issue"][0]["expression"] == ["colour"]


@pytest.mark.parametrize("accept,fmt,status,media", [
    ("application/fhir+json", None, 200, "application/fhir+json"),
    ("application/json", None, 200, "application/json"),
    ("*/*", None, 200, "application/fhir+json"),
    (None, "json", 200, "application/fhir+json"),
    ("application/xml", None, 406, None),
    ("application/fhir+xml", None, 406, None),
    ("application/fhir+json", "xml", 406, None),
    ("text/html", None, 406, None),
])
def test_content_negotiation(http, live, store, accept, fmt, status, media):
    store.update(observation(id="o1"))
    headers = {"Accept": accept} if accept else {"Accept": ""}
    url = f"{live}/Observation/o1" + (f"?_format={fmt}" if fmt else "")
    r = http.get(url, headers=headers)
    assert r.status_code == status
    assert r.json()["resourceType"] == ("Observation" if status == 200 else "OperationOutcome")
    if media:
        assert r.headers["Content-Type"].split(";")[0] == media


def test_metadata_is_a_truthful_r4_capability_statement(http, live):
    r = http.get(f"{live}/metadata")
    assert r.status_code == 200
    cs = r.json()
    assert_r4(cs)
    assert cs["fhirVersion"] == "4.0.1" and cs["date"] and cs["kind"] == "instance"
    from adapter.fhir.definitions import SERVED_TYPES
    resources = {res["type"]: res for res in cs["rest"][0]["resource"]}
    assert set(resources) == set(SERVED_TYPES)
    assert {i["code"] for i in resources["Observation"]["interaction"]} == {
        "read", "vread", "update", "patch", "delete", "history-instance", "history-type", "create",
        "search-type"}
    assert cs["rest"][0]["interaction"] == [{"code": "transaction"}, {"code": "batch"}, {"code": "history-system"},
                                            {"code": "search-system"}]


@pytest.mark.slow
def test_every_advertised_search_parameter_answers(http, live, store):
    """The CapabilityStatement tells the truth: each search parameter it lists works."""
    from adapter.fhir.definitions import search_param
    store.load([observation(id="o1")])
    samples = {"token": "x", "string": "x", "date": "2020", "reference": "Patient/p1",
               "quantity": "5", "uri": "http://x", "number": "5"}
    cs = http.get(f"{live}/metadata").json()
    checked = 0
    for res in cs["rest"][0]["resource"]:
        for param in res["searchParam"]:
            if param["type"] == "composite":  # a sample per component, joined by $
                components = search_param(res["type"], param["name"]).components
                value = "$".join(samples[c.type] for c in components)
            else:
                value = samples[param["type"]]
            r = http.get(f"{live}/{res['type']}", params={param["name"]: value},
                         headers={"Prefer": "handling=strict"})
            assert r.status_code == 200, (res["type"], param["name"], r.text[:300])
            checked += 1
    assert checked > 250


def test_validate_operation_reports_without_storing(http, live, store):
    from conftest import table_counts
    before = table_counts(store)
    url = f"{live}/Observation/$validate"
    bad = http.post(url, data=json.dumps(observation(status="done")), headers={"Content-Type": FHIR_JSON})
    assert bad.status_code == 200
    outcome = bad.json()
    assert_r4(outcome)
    assert outcome["issue"][0]["severity"] == "error"
    assert outcome["issue"][0]["expression"] == ["Observation.status"]
    good = http.post(url, data=json.dumps({"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": observation()}]}), headers={"Content-Type": FHIR_JSON})
    assert good.status_code == 200 and good.json()["issue"][0]["severity"] == "information"
    wrong_type = http.post(f"{live}/Patient/$validate", data=json.dumps(observation()),
                           headers={"Content-Type": FHIR_JSON})
    assert wrong_type.json()["issue"][0]["expression"] == ["resourceType"]
    assert table_counts(store) == before
    store.update(observation(id="o1"))
    stored = http.get(f"{live}/Observation/o1/$validate")
    assert stored.status_code == 200 and stored.json()["issue"][0]["severity"] == "information"
    mismatch = http.post(f"{live}/Observation/o1/$validate", data=json.dumps(observation(id="o2")),
                         headers={"Content-Type": FHIR_JSON})
    assert mismatch.json()["issue"][0]["expression"] == ["Observation.id"]
    assert http.get(f"{live}/Observation/nope/$validate").status_code == 404
