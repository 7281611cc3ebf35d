"""A Hypothesis-driven HTTP fuzzer for the gateway: hostile requests over every route.

Each request is drawn from the classes a reliability harness found answering 500 (deep JSON,
NUL and lone surrogates, forged cursors, out-of-range numbers and dates, odd types where a
string is expected, malformed Bundles, ...) mixed with valid resources and searches. What every
answer must be: below 500, an OperationOutcome when it is an error, quick, and a refused request
writes nothing. `tests/test_fuzz_http.py` runs a bounded share of it in `make test`; this module
runs it for longer and prints counts by status:

    python -m bench.fuzz --minutes 5                 # SQLite in a temporary folder
    python -m bench.fuzz --minutes 5 --db postgresql://root@127.0.0.1:5432/test
"""
from __future__ import annotations

import base64
import collections
import json
import logging
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import click
import requests
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

__all__ = ["Probe", "probes", "check", "TYPES"]

TYPES = ["Patient", "Observation", "Procedure", "Encounter", "AdverseEvent", "ResearchSubject",
         "PlanDefinition", "Group", "Provenance", "CarePlan", "Condition"]
FHIR = "application/fhir+json"
SLOW = 5.0  # seconds: no answer may take longer


@dataclass
class Probe:
    method: str
    path: str  # under the service base, e.g. "Patient?name=x"
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.method} {self.path[:200]} {(self.body or b'')[:200]!r} {self.headers}"


def _cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


_WEIRD_TEXT = st.sampled_from([
    "", " ", "%00", "%25", "_", "\\", "|", ",", "$", "a|b|c", "ge", "eq", "1e999999999", "NaN", "-0",
    "99999999999999999999999", "²", "٣", "0001-01-01T00:00%2B14:00", "9999-12-31T23:59-14:00",
    "10000-01-01", "2020-13-45", "Patient/", "Patient/p1", "http://x/%25", "x" * 300, "%ED%A0%80",
    "%FF", "R4.FooType", "[true]", "null", "../..", ".", "<script>", "😀",
    "29463-7$gt50|http://unitsofmeasure.org|kg", "a$b$c", "x\\$y$1", "x$2020-13-45", "x$", "$5",
]) | st.text(alphabet="abcXYZ019|,:-.$\\/%_ ", max_size=12)
_IDS = st.sampled_from(["p1", "o1", "missing", ".", "..", "a%00b", "x" * 70, "%3Cscript%3E", "p1.2", "-"])
_CURSORS = st.sampled_from([[True], 123, 1.5, None, [{"a": 1}], {"a": 1}, [], ["x", "y"], [1], [None],
                            [2 ** 70], ["p1"], {"before": ["p1"]}, {"before": [1]}, {"before": "x"},
                            {"before": []}, ["Patient"], ["Patient", "p1"], ["Foo", "p1"],
                            {"before": ["Observation", None]}, ["a\u0000b", "p1"], ["p\u0000"],
                            {"before": ["p\u0000"]}]).map(_cursor)
_PARAM_NAMES = st.sampled_from([
    "_id", "_lastUpdated", "_count", "_sort", "_total", "_summary", "_elements", "_include",
    "_revinclude", "_has:Observation:subject:status", "_cursor", "_format", "_since", "name", "gender",
    "birthdate", "identifier", "code", "subject", "subject:Patient", "subject:R4.FooType",
    "subject.gender", "value-quantity", "date", "status", "status:not", "code:text", "url:above",
    "url:below", "name:contains", "name:exact", "identifier:of-type", "patient", "_type", "_typeFilter",
    "start", "persist", "_outputFormat", "periodStart", "_pretty", "code-value-quantity", "code-value-date",
    "code-value-string", "component-code-value-quantity", "combo-code-value-concept",
    "code-value-quantity:missing", "code-value-quantity:exact", "characteristic-value", "context-type-quantity",
])


@st.composite
def _query(draw: Any) -> str:
    pairs = []
    for _ in range(draw(st.integers(0, 4))):
        name = draw(_PARAM_NAMES)
        value = draw(_CURSORS) if name == "_cursor" else draw(_WEIRD_TEXT)
        pairs.append(f"{name}={value}")
    return "&".join(pairs)


_SCALARS = st.none() | st.booleans() | st.integers(-10 ** 20, 10 ** 20) | st.text(max_size=6) | st.sampled_from(
    ["\ud800", "a\u0000b", "2020-02-30", "0001-01-01T00:00:00+14:00"])
_JSON = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)
_RAW_BODIES = st.sampled_from([
    b"[" * 1500 + b"]" * 1500, b'{"resourceType":"Patient","multipleBirthInteger":1E+999999999}',
    b'{"resourceType":"Patient","multipleBirthInteger":0e0}', b'{"resourceType":"Patient","name":[{"family":"\\ud800"}]}',
    b'{"resourceType":"Patient","name":[{"family":"a\\u0000b"}]}', b"", b"{", b"null", b"[1,2]", b'"x"',
    b'{"resourceType":"Patient","resourceType":"Patient"}', b"\xff\xfe",
    # issue 25: a lone surrogate as a name, contained resources of no R4 type, an array past its
    # bound, Bundle.entry that is no array, Parameters nested past the depth bound
    b'{"resourceType":"Patient","\\ud800":1}', b'{"resourceType":"Patient","contained":[{"resourceType":"Foo"}]}',
    b'{"resourceType":"Patient","contained":[{"resourceType":"MedicinalProduct"}]}',
    b'{"resourceType":"Patient","identifier":[' + b",".join([b"{}"] * 10_001) + b"]}",
    b'{"resourceType":"Bundle","type":"batch","entry":5}', b'{"resourceType":"Bundle","type":"transaction","entry":{}}',
    b'{"resourceType":"Parameters","parameter":[' + b'{"name":"x","part":[' * 1000 + b"]}" * 1000 + b"]}",
    b'{"resourceType":"Parameters","parameter":[{"name":"_type","valueString":' + b"[" * 1000 + b"]" * 1000 + b"}]}",
])


def _resource(rtype: str, rid: str | None, field_name: str, value: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"resourceType": rtype}
    if rtype == "Observation":
        body.update(status="final", code={"text": "weight"}, subject={"reference": "Patient/p1"})
    if rid is not None:
        body["id"] = rid
    body[field_name] = value
    return body


@st.composite
def _body(draw: Any, rtype: str, rid: str | None) -> bytes:
    kind = draw(st.integers(0, 4))
    if kind <= 1:  # the harness's raw bodies: half of all bodies
        return draw(_RAW_BODIES)
    if kind == 2:
        return json.dumps(draw(_JSON)).encode()
    name = draw(st.sampled_from(["gender", "birthDate", "status", "code", "subject", "id", "meta", "name",
                                 "identifier", "valueQuantity", "extension", "text", "contained"]))
    value = draw(_JSON | st.sampled_from(["female", "2020-01-01", {"text": "x"}, [{"family": "f"}]]))
    return json.dumps(_resource(rtype, rid, name, value)).encode()


@st.composite
def _bundle(draw: Any) -> bytes:
    entries = []
    for _ in range(draw(st.integers(0, 3))):
        method = draw(st.sampled_from(["POST", "PUT", "DELETE", "GET", "PATCH", ["PUT"]]))
        url = draw(st.sampled_from(["Patient", "Patient/p1", "Patient/d1", "Patient?_id=p1", "Foo/1",
                                    "Patient/<x>", "", "Patient/p1/_history/1", "Patient?_id=%00"]))
        entry: dict[str, Any] = {"request": {"method": method, "url": url}}
        if draw(st.booleans()):
            rid = url.split("/")[1] if url.count("/") == 1 else None
            entry["resource"] = _resource("Patient", rid, "gender", draw(st.sampled_from(["male", 3, None])))
        if draw(st.booleans()):
            entry["fullUrl"] = draw(st.sampled_from(["urn:uuid:0c3b2b4e-6f1b-4a55-8c53-9a1f3b6f2a10", ["x"], 5]))
        if draw(st.booleans()):
            entry["request"]["ifMatch"] = draw(st.sampled_from(['W/"1"', 'W/"bogus"', 3]))
        if draw(st.integers(0, 5)) == 0:  # a conditional reference that holds a NUL
            entry.setdefault("resource", {"resourceType": "Patient"})["link"] = [
                {"other": {"reference": "Patient?_id=%00"}, "type": "seealso"}]
        entries.append(entry)
    bundle = {"resourceType": "Bundle", "type": draw(st.sampled_from(["transaction", "batch", "collection", 1])),
              "entry": entries}
    return json.dumps(bundle).encode()


_POINTERS = st.sampled_from(["/gender", "/id", "/resourceType", "/name/0/family", "/name/-", "/name/9", "",
                             "/meta/versionId", "/a~1b", "/~2", "gender", "/birthDate", 5, None])
_JSON_PATCH = st.lists(st.fixed_dictionaries(
    {"op": st.sampled_from(["add", "remove", "replace", "move", "copy", "test", "frob", 1])},
    optional={"path": _POINTERS, "from": _POINTERS,
              "value": _JSON | st.sampled_from(["female", [{"family": "f"}], {"x": 1}])}), max_size=3) | _JSON
_FHIRPATHS = st.sampled_from([
    "Patient", "Patient.gender", "Patient.name", "Patient.name[0]", "Patient.name[99].given", "Patient.id",
    "Patient.identifier.where(system='s')", "Patient.name.first()", "Patient.name.where(", "Patient.(", "",
    "Patient.name.resolve()", "Observation.subject", "Patient.name.where(family.exists() and %resource)",
])


@st.composite
def _fhirpath_patch(draw: Any) -> bytes:
    operations = []
    for _ in range(draw(st.integers(0, 3))):
        parts: list[Any] = [{"name": "type", "valueCode": draw(st.sampled_from(
            ["add", "insert", "delete", "replace", "move", "upsert", 3]))},
            {"name": "path", "valueString": draw(_FHIRPATHS)}]
        for name in draw(st.lists(st.sampled_from(["name", "value", "index", "source", "destination", "odd"]),
                                  max_size=4)):
            if name in ("index", "source", "destination"):
                parts.append({"name": name, "valueInteger": draw(st.sampled_from([0, 1, -1, 10 ** 12, "1"]))})
            elif name == "value":
                parts.append(draw(st.sampled_from([
                    {"name": "value", "valueCode": "female"}, {"name": "value", "valueString": "x"},
                    {"name": "value", "valueHumanName": {"family": "f"}}, {"name": "value"},
                    {"name": "value", "part": [{"name": "gender", "valueCode": "male"}]},
                    {"name": "value", "part": [{"name": "x", "part": []}]}, {"name": "value", "valueX": 1, "valueY": 2},
                ])))
            else:
                parts.append({"name": name, "valueString": draw(st.sampled_from(["birthDate", "name", "gender", ""]))})
        operations.append(draw(st.sampled_from([{"name": "operation", "part": parts}, {"name": "other"}, 1]))
                          if draw(st.integers(0, 9)) == 0 else {"name": "operation", "part": parts})
    return json.dumps({"resourceType": "Parameters", "parameter": operations}).encode()


@st.composite
def probes(draw: Any) -> Probe:
    """One request of the fuzzer."""
    rtype = draw(st.sampled_from(TYPES + ["Foo"]))
    rid = draw(_IDS)
    query = draw(_query())
    shape = draw(st.sampled_from([  # searches and writes twice as often as the rest
        "search", "search", "search-post", "read", "vread", "history", "history-type", "history-system",
        "create", "create", "update", "update", "conditional", "delete", "validate", "everything", "apply",
        "adherence", "evaluate-measure", "export", "bundle", "bundle", "metadata", "unknown", "patch", "patch", "compartment",
        "system", "terminology",
    ]))
    headers: dict[str, str] = {}
    if draw(st.booleans()):
        headers[draw(st.sampled_from(["If-Match", "If-None-Exist", "If-None-Match", "Prefer", "Accept",
                                      "If-Modified-Since", "Accept-Encoding"]))] = draw(st.sampled_from([
                                          'W/"1"', 'W/"bogus"', "*", "return=minimal", "respond-async",
                                          "application/xml", "identifier=s|1", "gender=%00", "garbage",
                                          "Sun, 06 Nov 1994 08:49:37 GMT", "gzip;q=0", "handling=strict",
                                          "identifier=%00"]))
    q = f"?{query}" if query else ""
    if shape == "search":
        return Probe("GET", f"{rtype}{q}", None, headers)
    if shape == "search-post":
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        return Probe("POST", f"{rtype}/_search", query.encode(), headers)
    if shape == "read":
        return Probe("GET", f"{rtype}/{rid}{q}", None, headers)
    if shape == "vread":
        version = draw(st.sampled_from(["1", "0", "-1", "99999999999999999999999", "x", "%00"]))
        return Probe("GET", f"{rtype}/{rid}/_history/{version}", None, headers)
    if shape == "history":
        return Probe("GET", f"{rtype}/{rid}/_history{q}", None, headers)
    if shape == "history-type":
        return Probe("GET", f"{rtype}/_history{q}", None, headers)
    if shape == "history-system":
        return Probe("GET", f"_history{q}", None, headers)
    if shape == "compartment":
        compartment = draw(st.sampled_from(["Patient", "Patient", "Observation", "Foo"]))
        return Probe("GET", f"{compartment}/{draw(st.sampled_from(['p1', 'p1', rid]))}/"
                            f"{draw(st.sampled_from([rtype, '*']))}{q}", None, headers)
    if shape == "system":
        return Probe("GET", q, None, headers)
    if shape == "patch":
        if draw(st.booleans()):
            headers["Content-Type"] = "application/json-patch+json"
            body = json.dumps(draw(_JSON_PATCH)).encode()
        else:
            headers["Content-Type"] = draw(st.sampled_from([FHIR, FHIR, "text/plain"]))
            body = draw(_fhirpath_patch() | _RAW_BODIES)
        return Probe("PATCH", f"{rtype}/{draw(st.sampled_from(['p1', 'p1', rid]))}", body, headers)
    headers.setdefault("Content-Type", FHIR)
    if shape == "create":  # with a search now and then: fhirpy's conditional create
        return Probe("POST", rtype + draw(st.sampled_from(["", "", q])), draw(_body(rtype, None)), headers)
    if shape == "update":
        return Probe("PUT", f"{rtype}/{rid}", draw(_body(rtype, rid)), headers)
    if shape == "conditional":
        method = draw(st.sampled_from(["PUT", "DELETE"]))
        return Probe(method, f"{rtype}{q}", draw(_body(rtype, None)) if method == "PUT" else None, headers)
    if shape == "delete":
        return Probe("DELETE", f"{rtype}/{rid}", None, headers)
    if shape == "validate":
        return Probe("POST", f"{rtype}/$validate{q}", draw(_body(rtype, None)), headers)
    if shape == "everything":
        return Probe("GET", f"Patient/{rid}/$everything{q}", None, headers)
    if shape == "apply":
        return Probe(draw(st.sampled_from(["GET", "POST"])), f"PlanDefinition/{rid}/$apply{q}",
                     draw(st.sampled_from([None, b"{}", b'{"resourceType":"Parameters","parameter":[1]}'])),
                     headers)
    if shape == "adherence":
        return Probe("GET", f"ResearchSubject/{rid}/$adherence{q}", None, headers)
    if shape == "evaluate-measure":
        inputs = draw(st.dictionaries(st.sampled_from(["periodStart", "periodEnd", "reportType", "subject", "persist",
                                                       "practitioner"]),
                                     _WEIRD_TEXT | st.sampled_from(["2026", "2026-02", "2026-02-30", "population",
                                                                    "subject-list", "Patient/p1", "Group/p1", "true"]),
                                     max_size=5))
        query = "?" + "&".join(f"{k}={v}" for k, v in inputs.items()) if inputs else q
        return Probe(draw(st.sampled_from(["GET", "POST"])), f"Measure/{rid}/$evaluate-measure{query}",
                     draw(st.sampled_from([None, b"{}", b'{"resourceType":"Parameters","parameter":[1]}'])),
                     headers)
    if shape == "terminology":
        from bench.fuzz_terminology import terminology
        return terminology(draw, rid, headers)
    if shape == "export":
        headers["Prefer"] = "respond-async"
        if draw(st.integers(0, 3)) == 0:  # a Parameters body, of the harness's kinds too
            return Probe("POST", "$export", draw(_RAW_BODIES | st.just(
                b'{"resourceType":"Parameters","parameter":[{"name":"_type","valueInteger":3}]}')), headers)
        return Probe("GET", draw(st.sampled_from(["$export", "Patient/$export", f"Group/{rid}/$export",
                                                  f"$export-status/{rid}", f"$export-file/{rid}/x.ndjson"]))
                     + q, None, headers)
    if shape == "bundle":
        return Probe("POST", "", draw(_bundle()), headers)
    if shape == "metadata":  # read only: any other method is a 405
        return Probe(draw(st.sampled_from(["GET", "GET", "DELETE", "POST", "PUT", "PATCH"])), f"metadata{q}",
                     None, headers)
    return Probe(draw(st.sampled_from(["GET", "PATCH", "OPTIONS", "POST"])),
                 draw(st.sampled_from(["nowhere", "Patient/p1/extra/parts", "%00", "_search"])), None, headers)


def send(session: requests.Session, base: str, probe: Probe) -> tuple[requests.Response, float]:
    started = time.perf_counter()
    response = session.request(probe.method, f"{base}/{probe.path}", data=probe.body, headers=probe.headers,
                               timeout=SLOW * 4, allow_redirects=False)
    return response, time.perf_counter() - started


def check(probe: Probe, response: requests.Response, seconds: float) -> list[str]:
    """What is wrong with an answer: a 5xx, an error that is not an OperationOutcome, slowness."""
    problems = []
    if response.status_code >= 500:
        problems.append(f"{response.status_code}: {response.text[:300]}")
    if response.status_code >= 400:
        try:
            kind = response.json().get("resourceType")
        except ValueError:
            kind = None
        if kind != "OperationOutcome":
            problems.append(f"{response.status_code} without an OperationOutcome: {response.text[:200]!r}")
    if seconds > SLOW:
        problems.append(f"took {seconds:.1f} s")
    return [f"{probe}: {p}" for p in problems]


@click.command()
@click.option("--minutes", type=float, default=1.0, show_default=True, help="How long to fuzz.")
@click.option("--db", default=None, help="Store URL (default: a new SQLite file in a temporary folder).")
@click.option("--seed", "seed_value", type=int, default=0, show_default=True, help="Random seed, for a repeatable run.")
def main(minutes: float, db: str | None, seed_value: int) -> None:
    """Fuzz a gateway on a loopback port and print the answers by status."""
    from werkzeug.serving import make_server

    from adapter.gateway.app import create_app

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request would drown the counts
    folder = tempfile.mkdtemp(prefix="fuzz-")
    app = create_app({"DATABASE_URL": db or f"sqlite:///{folder}/fuzz.db", "EXPORT_DIR": f"{folder}/exports",
                      "MAX_CONTENT_LENGTH": 1024 * 1024})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}/fhir"
    counts: collections.Counter[int] = collections.Counter()
    failures: list[str] = []
    deadline = time.monotonic() + minutes * 60

    class TimeUp(Exception):
        pass

    with requests.Session() as session:
        session.put(f"{base}/Patient/p1", json={"resourceType": "Patient", "id": "p1"}, headers={"Content-Type": FHIR})

        # Hypothesis drives the draws (generation only, no shrinking) until the time is up.
        @settings(max_examples=10 ** 9, deadline=None, database=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @seed(seed_value)
        @given(probe=probes())
        def fuzz(probe: Probe) -> None:
            if time.monotonic() > deadline:
                raise TimeUp
            response, seconds = send(session, base, probe)
            counts[response.status_code] += 1
            failures.extend(check(probe, response, seconds))

        try:
            fuzz()
        except TimeUp:
            pass
    server.shutdown()
    total = sum(counts.values())
    click.echo(f"{total:,} requests in {minutes:g} min; by status: "
               + ", ".join(f"{status}: {n:,}" for status, n in sorted(counts.items())))
    click.echo(f"server errors (5xx): {sum(n for s, n in counts.items() if s >= 500)}; problems: {len(failures)}")
    for failure in failures[:20]:
        click.echo(f"  {failure}")
    if failures:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
