"""Check FHIR output against the official R4 JSON Schema (the committed subset of it).

Independent of the validator's own schema layer: this one uses the `jsonschema` package.
Every nested resource (Bundle entries, contained) is checked against its own definition.
"""
from __future__ import annotations

import functools
from typing import Any

import jsonschema

from adapter.fhir.definitions import r4_schema


@functools.cache
def _validator(rtype: str) -> jsonschema.Draft6Validator:
    schema = r4_schema()
    return jsonschema.Draft6Validator({"$ref": f"#/definitions/{rtype}",
                                       "definitions": schema["definitions"]})


def problems(resource: dict[str, Any]) -> list[str]:
    found = []
    rtype = resource.get("resourceType")
    if rtype not in r4_schema()["definitions"]:
        return [f"unknown resourceType {rtype!r}"]
    for err in _validator(rtype).iter_errors(resource):
        found.append(f"{rtype}.{'.'.join(map(str, err.absolute_path))}: {err.message[:200]}")
    for entry in resource.get("entry", []) if rtype == "Bundle" else []:
        if "resource" in entry:
            found.extend(problems(entry["resource"]))
    for contained in resource.get("contained", []):
        found.extend(problems(contained))
    return found


def assert_r4(resource: dict[str, Any]) -> None:
    issues = problems(resource)
    assert not issues, "\n".join(issues)
