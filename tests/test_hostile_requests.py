"""What a reliability harness found answering 500: each class has its reproducer here, on both
stores, answering a 4xx OperationOutcome (or a correct 2xx) and writing nothing it refuses."""
from __future__ import annotations

import base64
import json

import pytest

from conftest import observation, table_counts

FHIR = "application/fhir+json"


def cursor(value) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def nested(levels: int) -> bytes:
    return ('{"resourceType":"Patient","extension":' + '[{"url":"u","extension":' * levels + "[]"
            + "}]" * levels + "}").encode()


# (method, path, body, status): the harness's classes, one or more reproducers each.
CASES = [
    ("POST", "Patient", b"[" * 1500 + b"]" * 1500, 400),  # RecursionError in the JSON parser
    ("POST", "Patient", nested(600), 400),
    ("POST", "Patient", nested(40), 400),  # past MAX_DEPTH (64 levels), yet no recursion limit
    ("POST", "Patient", b'{"resourceType":"Patient","name":[{"family":"\\ud800"}]}', 400),  # lone surrogate
    ("POST", "Patient", b'{"resourceType":"Patient","name":[{"family":"a\\u0000b"}]}', 400),  # NUL
    ("PUT", "Patient/a%00b", b'{"resourceType":"Patient","id":"a\\u0000b"}', 400),
    ("GET", "Patient/a%00b", None, 400),
    ("GET", "Patient?name=a%00b", None, 400),
    ("GET", "Patient?_id=a%00b", None, 400),
    *[("GET", f"{path}_cursor={cursor(v)}", None, 400)
      for v in ([True], 123, 1.5, None, [{"a": 1}], {"a": 1}, [], [2 ** 70], [None])
      for path in ("Patient?", "Patient?_sort=gender&", "Patient/_history?", "_history?")],
    ("GET", f"Patient?_cursor={cursor(['x', 'y'])}", None, 400),  # a cursor of another _sort
    ("GET", f"Patient?_cursor={cursor([1])}", None, 400),
    ("GET", f"_history?_cursor={cursor(['x'])}", None, 400),
    ("GET", f"Observation?_sort=value-quantity&_cursor={cursor(['text', 'o1'])}", None, 400),
    ("GET", "Patient?_count=%C2%B2", None, 400),  # '²'.isdigit() is True; int('²') fails
    ("GET", "Patient/_history?_count=3%C2%B2", None, 400),
    ("GET", "Patient?birthdate=0001-01-01T00:00%2B14:00", None, 200),  # before year 1 in UTC
    ("GET", "Patient?_lastUpdated=gt9999-12-31T23:59-14:00", None, 200),  # after 9999 in UTC
    ("GET", "Patient/_history?_since=0001-01-01T00:00%2B14:00", None, 200),
    ("GET", "Patient?birthdate=10000-01-01", None, 400),
    ("POST", "Observation", json.dumps(observation(effectiveDateTime="0001-01-01T00:00:00+14:00")).encode(), 201),
    ("POST", "", json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": ["x"], "resource": {"resourceType": "Patient"},
         "request": {"method": "POST", "url": "Patient"}}]}).encode(), 400),
    ("GET", "Patient/p1/_history/99999999999999999999999", None, 404),
    # One resource written twice in a transaction: two PUTs, a PUT and a DELETE, a conditional PUT.
    *[("POST", "", json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": pair}).encode(), 400)
      for pair in (
          [{"resource": {"resourceType": "Patient", "id": "d1"}, "request": {"method": "PUT", "url": "Patient/d1"}},
           {"resource": {"resourceType": "Patient", "id": "d1", "gender": "male"},
            "request": {"method": "PUT", "url": "Patient/d1"}}],
          [{"resource": {"resourceType": "Patient", "id": "p1"}, "request": {"method": "PUT", "url": "Patient/p1"}},
           {"request": {"method": "DELETE", "url": "Patient/p1"}}],
          [{"resource": {"resourceType": "Patient", "gender": "male"}, "request": {"method": "PUT",
                                                                               "url": "Patient?_id=p1"}},
           {"request": {"method": "DELETE", "url": "Patient/p1"}}])],  # beyond 64 bits
    ("POST", "Observation", b'{"resourceType":"Observation","status":"final","code":{"text":"x"},'
                            b'"valueQuantity":{"value":1E+400}}', 400),  # beyond a double
    # Integers: what the R4 pattern -?([0]|([1-9][0-9]*)) refuses is refused ('-0' it allows).
    *[("POST", "Patient", b'{"resourceType":"Patient","multipleBirthInteger":%s}' % v, 422)
      for v in (b"0e0", b"1.0e-0", b"1.0", b"1e2")],
    ("POST", "Patient", b'{"resourceType":"Patient","multipleBirthInteger":-0}', 201),
    ("POST", "Observation", b'{"resourceType":"Observation","status":"final","code":{"text":"x"},'
                            b'"component":[{"code":{"text":"c"},"valueInteger":2.0}]}', 422),
    ("DELETE", "Patient/_history", None, 400),  # was a 204 "deleting" a resource with id _history
    ("PUT", "Patient/.", b'{"resourceType":"Patient","id":"."}', 400),
    ("PUT", "Patient/..", b'{"resourceType":"Patient","id":".."}', 400),
    # issue 25, item 6: what still reached a 500
    ("POST", "Patient", b'{"resourceType":"Patient","\\ud800":1}', 400),  # a lone surrogate as a name
    *[("POST", "", b'{"resourceType":"Bundle","type":"%s","entry":%s}' % (kind, entry), 400)
      for kind in (b"batch", b"transaction") for entry in (b"5", b'{"a":1}', b'"x"')],
    ("POST", "Patient", b'{"resourceType":"Patient","contained":[{"resourceType":"Foo"}]}', 400),
    ("POST", "Patient", b'{"resourceType":"Patient","contained":[{"resourceType":"MedicinalProduct"}]}', 400),
    *[("GET", f"Patient?{sort}_cursor={cursor(v)}", None, 400)  # NUL through a cursor (PostgreSQL)
      for v in (["a\u0000b", "p1"], ["p\u0000"]) for sort in ("", "_sort=family&")],
    ("POST", "", json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": [  # a NUL condition
        {"request": {"method": "POST", "url": "Observation"},
         "resource": observation(subject={"reference": "Patient?_id=%00"})}]}).encode(), 400),
    ("POST", "", json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "PUT", "url": "Patient?_id=%00"}, "resource": {"resourceType": "Patient"}}]}).encode(), 400),
    # item 5: what one resource may hold (past the array bound, in 30 KB)
    ("POST", "Patient", b'{"resourceType":"Patient","identifier":[' + b",".join([b"{}"] * 10_001) + b"]}", 400),
    ("PUT", "Patient/p1", b'{"resourceType":"Patient","id":"p1","identifier":[' + b",".join([b"{}"] * 10_001) + b"]}",
     400),
    # item 7: a create with a search (fhirpy's conditional create), writes to the CapabilityStatement
    ("POST", "Patient?identifier=urn:x|1", b'{"resourceType":"Patient"}', 400),
    *[(method, "metadata", b'{"resourceType":"Patient"}' if method != "DELETE" else None, 405)
      for method in ("DELETE", "POST", "PUT", "PATCH")],
]

EXPORT_NESTED = b'{"resourceType":"Parameters","parameter":[' + b'{"name":"x","part":[' * 1000 + b"]}" * 1000 + b"]}"
EXPORT_DEEP_VALUE = (b'{"resourceType":"Parameters","parameter":[{"name":"_type","valueString":' + b"[" * 1000
                     + b"]" * 1000 + b"}]}")
# (method, path, body, headers, status): cases that need a header
HEADER_CASES = [
    ("POST", "Patient", b'{"resourceType":"Patient"}', {"If-None-Exist": "identifier=%00"}, 400),
    ("POST", "$export", EXPORT_NESTED, {"Prefer": "respond-async"}, 400),
    ("POST", "$export", EXPORT_DEEP_VALUE, {"Prefer": "respond-async"}, 400),
    ("POST", "$export", b'{"resourceType":"Parameters","parameter":[{"name":"_type","valueInteger":3}]}',
     {"Prefer": "respond-async"}, 400),
]


@pytest.mark.parametrize("method,path,body,status", CASES, ids=[f"{c[0]} {c[1][:60]}" for c in CASES])
def test_hostile_request_is_answered_not_crashed(client, app, method, path, body, status):
    store = app.extensions["fhir_store"]
    client.put("/fhir/Patient/p1", json={"resourceType": "Patient", "id": "p1"}, content_type=FHIR)
    before = table_counts(store)
    r = client.open(f"/fhir/{path}", method=method, data=body, content_type=FHIR if body else None)
    assert r.status_code == status, r.get_data(as_text=True)[:400]
    assert r.json["resourceType"] == ("OperationOutcome" if status >= 400 else
                                      "Bundle" if method == "GET" else path.split("/")[0])
    if status >= 400:
        assert table_counts(store) == before


@pytest.mark.parametrize("method,path,body,headers,status", HEADER_CASES,
                         ids=[f"{c[0]} {c[1]} {list(c[3].values())[0][:20]}" for c in HEADER_CASES])
def test_hostile_request_with_headers_is_answered_not_crashed(client, app, method, path, body, headers, status):
    store = app.extensions["fhir_store"]
    before = table_counts(store)
    r = client.open(f"/fhir/{path}", method=method, data=body, content_type=FHIR, headers=headers)
    assert r.status_code == status, r.get_data(as_text=True)[:400]
    assert r.json["resourceType"] == "OperationOutcome"
    assert table_counts(store) == before


def test_a_nul_in_a_batch_entrys_search_is_that_entrys_400(client):
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": "Patient?_id=%00"}}, {"request": {"method": "GET", "url": "Patient"}}]}
    r = client.post("/fhir", json=batch, content_type=FHIR)
    assert r.status_code == 200, r.get_data(as_text=True)[:400]
    assert [e["response"]["status"] for e in r.json["entry"]] == ["400", "200"]
    assert r.json["entry"][0]["response"]["outcome"]["issue"][0]["expression"] == ["_id"]


def test_a_patch_cannot_nest_a_resource_deeper_than_a_body_may_be(client, app):
    """Item 5: the patch and the stored resource each within 64 levels, the result past them."""
    def nested(levels: int) -> dict:
        node: dict = {"url": "u", "valueString": "x"}
        for _ in range(levels - 1):
            node = {"url": "u", "extension": [node]}
        return node
    store = app.extensions["fhir_store"]
    assert client.put("/fhir/Patient/deep", json={"resourceType": "Patient", "id": "deep", "extension": [nested(31)]},
                      content_type=FHIR).status_code == 201
    before = table_counts(store)
    patch = [{"op": "add", "path": "/extension/0" * 25 + "/extension/-", "value": nested(20)}]
    r = client.patch("/fhir/Patient/deep", data=json.dumps(patch), content_type="application/json-patch+json")
    assert r.status_code == 422 and r.json["issue"][0]["code"] == "too-costly", r.get_data(as_text=True)[:300]
    assert table_counts(store) == before


def test_like_wildcards_are_literal_in_text_and_above(client):
    client.put("/fhir/Observation/o1", json=observation(id="o1", code={"text": "weight"}), content_type=FHIR)
    client.put("/fhir/PlanDefinition/d1", content_type=FHIR, json={
        "resourceType": "PlanDefinition", "id": "d1", "status": "draft", "url": "http://x.org/%"})
    assert client.get("/fhir/Observation?code:text=%25").json.get("total") == 0
    assert client.get("/fhir/Observation?code:text=w_ight").json.get("total") == 0
    assert client.get("/fhir/Observation?code:text=EIG").json.get("total") == 1
    assert client.get("/fhir/PlanDefinition?url:above=http://x.org/anything").json.get("total") == 0
    assert client.get("/fhir/PlanDefinition?url:above=http://x.org/%25/v2").json.get("total") == 1


def test_long_searchable_values_are_stored_and_found_alike_on_both_stores(client):
    import random
    import string
    rng = random.Random(7)
    long = "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(3000))  # incompressible
    cjk = "".join(chr(rng.randrange(0x4E00, 0x9FFF)) for _ in range(1500))  # 3 bytes a character
    bodies = [{"resourceType": "Patient", "id": "n1", "name": [{"family": long}]},
              {"resourceType": "Patient", "id": "n2", "identifier": [{"system": long, "value": cjk}]},
              {"resourceType": "PlanDefinition", "id": "u1", "status": "draft", "url": "http://x.org/" + long}]
    for body in bodies:
        r = client.put(f"/fhir/{body['resourceType']}/{body['id']}", json=body, content_type=FHIR)
        assert r.status_code == 201, r.get_data(as_text=True)[:300]
    assert [e["resource"]["id"] for e in client.get(f"/fhir/Patient?name={long}").json["entry"]] == ["n1"]
    assert client.get(f"/fhir/Patient?name={long[:50]}").json["total"] == 1
    assert [e["resource"]["id"] for e in client.get(f"/fhir/Patient?identifier={long}|{cjk}").json["entry"]] == ["n2"]
    assert client.get(f"/fhir/PlanDefinition?url=http://x.org/{long}").json["total"] == 1


def _raw(base: str, request: bytes) -> tuple[int, bytes]:
    import socket
    from urllib.parse import urlsplit
    parts = urlsplit(base)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_chunked_bodies_are_bounded_and_checked_under_gunicorn(served, store):
    """Without a Content-Length the body was cut at the limit and parsed as if whole; a bad
    chunk size was a 500."""
    head = (b"POST /fhir/Patient HTTP/1.1\r\nHost: x\r\nContent-Type: application/fhir+json\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
    big = json.dumps({"resourceType": "Patient", "name": [{"family": "x" * 70_000}]}).encode()
    small = json.dumps({"resourceType": "Patient", "gender": "female"}).encode()
    before = table_counts(store)
    status, body = _raw(served, head + b"%x\r\n" % len(big) + big + b"\r\n0\r\n\r\n")
    assert status == 413 and json.loads(body)["resourceType"] == "OperationOutcome"
    status, body = _raw(served, head + b"zz\r\n" + small + b"\r\n0\r\n\r\n")
    assert status == 400 and json.loads(body)["resourceType"] == "OperationOutcome"
    assert table_counts(store) == before
    status, body = _raw(served, head + b"%x\r\n" % len(small) + small + b"\r\n0\r\n\r\n")
    assert status == 201 and json.loads(body)["gender"] == "female"
