"""The terminology operations' share of the HTTP fuzzer (bench/fuzz.py): $lookup, $expand,
$translate, ... with odd inputs, by GET and by POST."""
from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

from bench.fuzz import _WEIRD_TEXT, Probe

__all__ = ["terminology"]

_TERMINOLOGY = {  # each operation with the inputs it takes, so that most calls get past the names
    "CodeSystem/$lookup": ["system", "code", "coding", "version", "property"],
    "CodeSystem/$validate-code": ["url", "code", "coding", "display", "codeSystem", "codeableConcept"],
    "CodeSystem/$subsumes": ["system", "codeA", "codeB", "codingA", "codingB"],
    "ValueSet/$expand": ["url", "filter", "count", "offset", "valueSet", "activeOnly", "includeDesignations"],
    "ValueSet/$validate-code": ["url", "system", "code", "coding", "display", "codeableConcept", "abstract"],
    "ConceptMap/$translate": ["url", "system", "code", "coding", "conceptMap", "reverse", "targetsystem"],
}
_GENDER = "http://hl7.org/fhir/administrative-gender"
_TERMINOLOGY_SOUND = {
    "CodeSystem/$lookup": {"system": _GENDER, "code": "male"},
    "CodeSystem/$validate-code": {"url": _GENDER, "code": "female", "display": "Female"},
    "CodeSystem/$subsumes": {"system": _GENDER, "codeA": "male", "codeB": "other"},
    "ValueSet/$expand": {"url": "http://hl7.org/fhir/ValueSet/administrative-gender", "filter": "a", "count": "2"},
    "ValueSet/$validate-code": {"url": "http://hl7.org/fhir/ValueSet/observation-status",
                                "system": "http://hl7.org/fhir/observation-status", "code": "final"},
    "ConceptMap/$translate": {"system": _GENDER, "code": "male"},
}
_TERMINOLOGY_VALUES = st.sampled_from([
    "http://hl7.org/fhir/administrative-gender", "http://hl7.org/fhir/ValueSet/administrative-gender",
    "male", "http://hl7.org/fhir/administrative-gender|male", "-1", "0", "99999999999999", "true", "maybe",
    "http://loinc.org", "http://ucmsc-cp.example.org/fhir/ValueSet/ucmsc-cp-local",
    "http://ucmsc-cp.example.org/fhir/CodeSystem/ucmsc-cp-local", "gmfcs-1", "ucmsc-it"]) | _WEIRD_TEXT
_TERMINOLOGY_BODY_VALUES = st.sampled_from([
    {"valueString": "male"}, {"valueCoding": {"code": 1}}, {"valueCoding": {"system": "x", "code": "y"}},
    {"valueCodeableConcept": {"coding": []}}, {"valueCodeableConcept": {"coding": [{"code": "male"}]}},
    {"valueInteger": -5}, {"valueBoolean": True}, {"resource": {"resourceType": "ValueSet", "status": "draft",
                                                                "compose": {"include": [{"system": "http://loinc.org"}]}}},
    {"resource": {"resourceType": "ConceptMap", "status": 3}}, {"resource": "x"}, {"part": []}, {}])


def terminology(draw: Any, rid: str, headers: dict[str, str]) -> Probe:
    """A terminology operation ($lookup, $expand, $translate, ...) with odd inputs, either way."""
    operation = draw(st.sampled_from(sorted(_TERMINOLOGY)))
    names = st.sampled_from(_TERMINOLOGY[operation] + ["date"])
    inputs = draw(st.lists(st.tuples(names, _TERMINOLOGY_VALUES), max_size=4))
    path = operation
    if draw(st.booleans()):
        rtype, _, name = operation.partition("/")
        path = f"{rtype}/{rid}/{name}"
    elif draw(st.booleans()):  # a call that works on the core value sets, one input drawn anew
        sound = dict(_TERMINOLOGY_SOUND[operation])
        sound.update(inputs[:1])
        inputs = list(sound.items())
    if draw(st.booleans()):
        query = "&".join(f"{k}={v}" for k, v in inputs)
        return Probe("GET", f"{path}?{query}" if query else path, None, headers)
    parameter = [{"name": k, "valueString": v} for k, v in inputs]
    parameter += [{"name": draw(names), **draw(_TERMINOLOGY_BODY_VALUES)}
                  for _ in range(draw(st.integers(0, 2)))]
    return Probe("POST", path, json.dumps({"resourceType": "Parameters", "parameter": parameter}).encode(), headers)


