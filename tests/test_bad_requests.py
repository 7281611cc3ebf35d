"""Every bad request: the documented status, an OperationOutcome, and nothing written."""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import observation, table_counts
from r4schema import assert_r4

FHIR_JSON = "application/fhir+json"
GOOD = json.dumps(observation(id="o1"))

# (method, path, body, content type, extra headers, status, expression or None)
CASES = [
    ("POST", "Observation", b'{"resourceType": "Observation",', FHIR_JSON, {}, 400, None),
    ("POST", "Observation", b'[1, 2]', FHIR_JSON, {}, 400, None),
    ("POST", "Observation", b'', FHIR_JSON, {}, 400, None),
    ("POST", "Observation", json.dumps({"resourceType": "Patient"}), FHIR_JSON, {}, 400, "resourceType"),
    ("POST", "Observation", json.dumps(observation(colour="blue")), FHIR_JSON, {}, 400, "Observation.colour"),
    ("POST", "Observation", json.dumps(observation(effectiveDateTime="2020-02-30")), FHIR_JSON, {}, 422,
     "Observation.effectiveDateTime"),
    ("POST", "Observation", json.dumps(observation(valueQuantity={"value": "6,30"})), FHIR_JSON, {}, 422,
     "Observation.valueQuantity.value"),
    ("POST", "Observation", json.dumps(observation(valueQuantity={"value": 1}, valueString="x")), FHIR_JSON, {},
     422, "Observation.value[x]"),
    ("POST", "Observation", json.dumps(observation(status="done")), FHIR_JSON, {}, 422, "Observation.status"),
    ("POST", "Observation", b'{"resourceType": "Observation", "status": "final", "status": "final"}',
     FHIR_JSON, {}, 400, None),
    ("POST", "Observation", GOOD, "application/xml", {}, 415, None),
    ("POST", "Observation", GOOD, "text/plain", {}, 415, None),
    ("POST", "Observation", GOOD, FHIR_JSON, {"Accept": "application/fhir+xml"}, 406, None),
    ("POST", "Appointment", json.dumps({"resourceType": "Appointment", "status": "proposed"}), FHIR_JSON, {}, 404, None),
    ("PUT", "Observation/o2", GOOD, FHIR_JSON, {}, 400, "Observation.id"),
    ("PUT", "Observation/o1", json.dumps({k: v for k, v in observation().items()}), FHIR_JSON, {}, 400,
     "Observation.id"),
    ("PUT", "Observation/o1", GOOD, FHIR_JSON, {"If-Match": 'W/"7"'}, 412, None),
    ("PUT", "Observation/o1", GOOD, FHIR_JSON, {"If-Match": "yesterday"}, 400, "If-Match"),
    ("PUT", "PlanDefinition/pd", json.dumps({"resourceType": "PlanDefinition", "id": "pd", "status": "draft",
                                             "subjectCanonical": "http://x"}), FHIR_JSON, {}, 400,
     "PlanDefinition.subjectCanonical"),
    ("POST", "Observation/o1", GOOD, FHIR_JSON, {}, 405, None),  # PATCH is served now
    ("DELETE", "Observation", None, None, {}, 400, "conditional delete"),  # no criteria: not "delete all"
    ("PUT", "Observation?colour=blue", json.dumps(observation()), FHIR_JSON, {}, 400, "colour"),
    ("POST", "Observation", json.dumps(observation()), FHIR_JSON, {"If-None-Exist": "colour=blue"}, 400, "colour"),
    ("GET", "Observation/o1/_history/abc", None, None, {}, 400, "version"),
    ("GET", "Observation/o1/_history/1/extra", None, None, {}, 404, None),
    ("GET", "Observation?date=2020-13", None, None, {}, 400, "date"),
    ("GET", "Observation/_history?_since=yesterday", None, None, {}, 400, "_since"),
    ("GET", "Unknown/1", None, None, {}, 404, None),
    ("GET", "Observation/missing", None, None, {}, 404, None),
    # the CapabilityStatement is read only (these fell to the type routes: 404 "metadata not served")
    *[(method, "metadata", GOOD if method != "DELETE" else None, FHIR_JSON if method != "DELETE" else None, {},
       405, None) for method in ("DELETE", "POST", "PUT", "PATCH")],
    ("POST", "Observation?identifier=urn:x|1", GOOD, FHIR_JSON, {}, 400, "If-None-Exist"),  # fhirpy's create(...)
]


def _request(http, live, method, path, body, ctype, headers):
    h = dict(headers)
    if ctype:
        h["Content-Type"] = ctype
    return http.request(method, f"{live}/{path}", data=body, headers=h)


@pytest.mark.parametrize("method,path,body,ctype,headers,status,where", CASES,
                         ids=[f"{c[0]} {c[1]} {c[5]}" for c in CASES])
def test_bad_request(http, live, store, method, path, body, ctype, headers, status, where):
    before = table_counts(store)
    r = _request(http, live, method, path, body, ctype, headers)
    assert r.status_code == status, r.text[:500]
    outcome = r.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert_r4(outcome)
    assert all(i["severity"] == "error" and i["diagnostics"] for i in outcome["issue"])
    if where:
        assert any(where in i.get("expression", []) for i in outcome["issue"]), outcome
    assert table_counts(store) == before
    if status == 405:
        assert r.headers["Allow"] and (path != "metadata" or r.headers["Allow"] == "GET, HEAD, OPTIONS")


def test_body_over_the_limit_is_413(http, live, store):
    before = table_counts(store)
    big = json.dumps(observation(note=[{"text": "x" * 70_000}]))  # the test app allows 64 KiB
    r = http.post(f"{live}/Observation", data=big, headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 413
    assert r.json()["issue"][0]["code"] == "too-costly"
    assert table_counts(store) == before


def test_an_unexpected_error_is_a_500_outcome_without_a_trace(app, client, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("secret internals")
    monkeypatch.setattr(app.extensions["fhir_store"], "read", boom)
    r = client.get("/fhir/Observation/o1")
    assert r.status_code == 500
    assert r.json["resourceType"] == "OperationOutcome"
    assert "secret" not in r.get_data(as_text=True)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.text(max_size=8)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(["status", "code", "subject", "effectiveDateTime", "valueQuantity",
                              "component", "category", "issued", "id", "meta"]),
       value=json_values)
def test_any_mangled_observation_is_stored_valid_or_rejected_with_an_outcome(client, store, field, value):
    body = observation()
    body[field] = value
    before = table_counts(store)
    r = client.post("/fhir/Observation", data=json.dumps(body), content_type=FHIR_JSON)
    assert r.status_code in (201, 400, 422), r.get_data(as_text=True)[:300]
    if r.status_code == 201:
        assert_r4(r.json)
    else:
        assert r.json["resourceType"] == "OperationOutcome"
        assert table_counts(store) == before


search_value = st.one_of(
    st.sampled_from(["", "|", ",", "ge", "eq2020", "2020-01-01T10:00", "x|y|z", "\\", "1e400", "nan",
                     "Patient/", "/1", "a,b,,c", "ap2020", "2020-13", "|x", "x|", "9" * 30]),
    st.text(alphabet="abcXYZ019|,:-.$\\/%_ ", max_size=10))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_search_answers_200_or_a_400_outcome(client, data):
    from adapter.fhir.definitions import SERVED_TYPES, search_params
    rtype = data.draw(st.sampled_from(SERVED_TYPES))
    name = data.draw(st.sampled_from(sorted(search_params(rtype)) + ["_sort", "_count", "_total", "_cursor"]))
    modifier = data.draw(st.sampled_from(["", ":missing", ":not", ":text", ":exact", ":contains",
                                          ":Patient", ":below", ":above", ":"]))
    r = client.get(f"/fhir/{rtype}", query_string=[(name + modifier, data.draw(search_value))])
    assert r.status_code in (200, 400), r.get_data(as_text=True)[:300]
    body = r.json
    assert body["resourceType"] == ("Bundle" if r.status_code == 200 else "OperationOutcome")
