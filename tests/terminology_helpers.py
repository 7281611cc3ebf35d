"""Terminology the terminology tests write: a hierarchical CodeSystem, value sets over it, and
a helper to call an operation over HTTP and check what comes back is valid R4."""
from __future__ import annotations

import json
from typing import Any

import requests

from adapter.fhir.validation import validate
from r4schema import assert_r4

LIMBS = "http://example.org/fhir/CodeSystem/limbs"
GENDER = "http://hl7.org/fhir/administrative-gender"
LOCAL_VS = "http://ucmsc-cp.example.org/fhir/ValueSet/ucmsc-cp-local"
LOCAL_CS = "http://ucmsc-cp.example.org/fhir/CodeSystem/ucmsc-cp-local"
FHIR = {"Content-Type": "application/fhir+json"}


def _prop(code: str, kind: str, value: Any) -> dict[str, Any]:
    return {"code": code, f"value{kind}": value}


# limb (abstract) > leg > left-leg, right-leg; limb > arm > left-arm; knee under leg by a
# `parent` property, not by nesting; old-thing retired.
LIMBS_CS = {
    "resourceType": "CodeSystem", "id": "limbs", "url": LIMBS, "version": "2", "name": "Limbs",
    "status": "active", "content": "complete", "caseSensitive": True, "hierarchyMeaning": "is-a",
    "property": [{"code": "laterality", "type": "code", "description": "Which side"},
                 {"code": "parent", "type": "code"}, {"code": "notSelectable", "type": "boolean"},
                 {"code": "status", "type": "code"}],
    "concept": [
        {"code": "limb", "display": "Limb", "designation": [{"language": "fr", "value": "Membre"}],
         "property": [_prop("notSelectable", "Boolean", True)],
         "concept": [
             {"code": "leg", "display": "Leg", "concept": [
                 {"code": "left-leg", "display": "Left leg", "property": [_prop("laterality", "Code", "left")]},
                 {"code": "right-leg", "display": "Right leg", "property": [_prop("laterality", "Code", "right")]}]},
             {"code": "arm", "display": "Arm", "concept": [
                 {"code": "left-arm", "display": "Left arm", "property": [_prop("laterality", "Code", "left")]}]}]},
        {"code": "knee", "display": "Knee", "property": [_prop("parent", "Code", "leg")]},
        {"code": "old-thing", "display": "Old thing", "property": [_prop("status", "Code", "retired")]},
    ],
}


def value_set(vid: str, include: list[dict[str, Any]], exclude: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    compose: dict[str, Any] = {"include": include} | ({"exclude": exclude} if exclude else {})
    return {"resourceType": "ValueSet", "id": vid, "url": f"http://example.org/fhir/ValueSet/{vid}",
            "status": "active", "compose": compose}


def vs_url(vid: str) -> str:
    return f"http://example.org/fhir/ValueSet/{vid}"


VALUE_SETS = [
    value_set("limbs-all", [{"system": LIMBS}]),
    value_set("legs", [{"system": LIMBS, "filter": [{"property": "concept", "op": "is-a", "value": "leg"}]}]),
    value_set("below-leg", [{"system": LIMBS, "filter": [{"property": "concept", "op": "descendent-of", "value": "leg"}]}]),
    value_set("left", [{"system": LIMBS, "filter": [{"property": "laterality", "op": "=", "value": "left"}]}]),
    value_set("legs-no-knee-and-male", [{"valueSet": [vs_url("legs")]},
                                        {"system": GENDER, "concept": [{"code": "male"}]}],
              [{"system": LIMBS, "concept": [{"code": "knee"}]}]),
    value_set("abstract-too", [{"system": LIMBS, "concept": [{"code": "limb"}, {"code": "leg"}]}]),
    value_set("regex", [{"system": LIMBS, "filter": [{"property": "concept", "op": "regex", "value": "l.*"}]}]),
    value_set("all-loinc", [{"system": "http://loinc.org"}]),
    value_set("some-loinc", [{"system": "http://loinc.org", "concept": [{"code": "29463-7", "display": "Body weight"}]}]),
    value_set("cycle", [{"valueSet": [vs_url("cycle")]}]),
    {"resourceType": "ValueSet", "id": "pre-expanded", "url": vs_url("pre-expanded"), "status": "active",
     "expansion": {"timestamp": "2026-01-01T00:00:00Z", "contains": [
         {"abstract": True, "display": "Sides", "contains": [  # a grouping without a code: no member
             {"system": LIMBS, "code": "left-leg", "display": "Left leg"},
             {"system": LIMBS, "code": "right-leg", "display": "Right leg", "inactive": True}]}]}},
]


def call(http: requests.Session, url: str, params: dict[str, Any] | list[tuple[str, Any]] | None = None,
         body: dict[str, Any] | None = None, status: int = 200) -> dict[str, Any]:
    """GET (params) or POST (body, a Parameters) an operation; the answer, checked valid R4."""
    if body is None:
        response = http.get(url, params=params)
    else:
        response = http.post(url, params=params, data=json.dumps(body), headers=FHIR)
    assert response.status_code == status, response.text
    answer: dict[str, Any] = response.json()
    assert_r4(answer)
    if answer["resourceType"] == "ValueSet":  # the validator serves ValueSet; Parameters: the schema alone
        assert validate(answer) == [], answer
    return answer


def values(answer: dict[str, Any], name: str) -> list[Any]:
    """The values (or part lists) of the parameters called `name`."""
    return [next((v for k, v in p.items() if k.startswith("value")), p.get("part"))
            for p in answer["parameter"] if p["name"] == name]


def one(answer: dict[str, Any], name: str) -> Any:
    found = values(answer, name)
    assert len(found) == 1, (name, answer)
    return found[0]


def parts(group: list[dict[str, Any]]) -> dict[str, Any]:
    return {p["name"]: next(v for k, v in p.items() if k.startswith("value")) for p in group}


def params(*items: tuple[str, str, Any]) -> dict[str, Any]:
    """A Parameters body: params(("url", "Uri", "http://..."), ...)."""
    return {"resourceType": "Parameters", "parameter": [{"name": n, f"value{k}": v} for n, k, v in items]}
