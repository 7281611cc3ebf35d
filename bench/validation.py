"""Validation: which layer catches which broken resource, and what each layer costs, in one run.

Usage: python -m bench.validation [--resources 5000]

The detection table: each broken resource below (one defect each, named) through this adapter's
validator (adapter/fhir/validation.py: the R4B models, the required bindings, the official R4
JSON Schema) and through each layer alone, and through fhirkit-rs (a Rust FHIR R4 validator,
`pip install fhirkit-rs`; left out when it is not installed). Then the cost per resource of each
on generated Observations (bench/ingest.py), all of one shape and each of a shape of its own:
the question is whether a faster structural layer can stand in for the R4B models on new
shapes without losing a check.

Example: python -m bench.validation --resources 2000
"""
from __future__ import annotations

import argparse
import copy
import itertools
import time
from collections.abc import Callable
from typing import Any

from adapter.fhir.validation import ShapeValidator, _binding_issues, _model_issues, _schema_issues, validate
from bench.ingest import generate

_OBS: dict[str, Any] = {
    "resourceType": "Observation", "id": "o1", "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
    "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2026-03-01",
    "valueQuantity": {"value": 15.2, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}}


def _obs(**change: Any) -> dict[str, Any]:
    resource = copy.deepcopy(_OBS)
    for key, value in change.items():
        if value is None:
            resource.pop(key, None)
        else:
            resource[key] = value
    return resource


BROKEN: list[tuple[str, dict[str, Any]]] = [
    ("required element missing (Observation.status)", _obs(status=None)),
    ("required element missing (Observation.code)", _obs(code=None)),
    ("code outside a required binding (status 'done')", _obs(status="done")),
    ("two value[x] (valueQuantity and valueString)", _obs(valueString="x")),
    ("date that is no date (effectiveDateTime 2026-13-45)", _obs(effectiveDateTime="2026-13-45")),
    ("unknown element ('colour')", _obs(colour="red")),
    ("R4B-only element (PlanDefinition.subjectCanonical)",
     {"resourceType": "PlanDefinition", "status": "active", "subjectCanonical": "http://x.org/a"}),
    ("datatype enum (Quantity.comparator '<<')",
     _obs(valueQuantity={"value": 1, "comparator": "<<", "unit": "kg"})),
    ("wrong datatype (code as a string)", _obs(code="29463-7")),
    ("id with a space", _obs(id="a b")),
    ("empty array (identifier: [])", _obs(identifier=[])),
    ("decimal as a string (value '12')", _obs(valueQuantity={"value": "12", "unit": "kg"})),
    ("reference as a bare string", _obs(subject="Patient/p1")),
    ("extension without url", _obs(extension=[{"valueString": "x"}])),
    ("empty string (status '')", _obs(status="")),
    ("R4 code of another resource (Procedure.status 'finished')",
     {"resourceType": "Procedure", "status": "finished", "subject": {"reference": "Patient/p1"}}),
    ("required element missing (AdverseEvent.actuality)",
     {"resourceType": "AdverseEvent", "subject": {"reference": "Patient/p1"}}),
    ("CodeableConcept of a required binding without its code (Condition.clinicalStatus)",
     {"resourceType": "Condition", "subject": {"reference": "Patient/p1"},
      "clinicalStatus": {"coding": [{"system": "http://example.org", "code": "on"}]}}),
    ("dateTime with a time but no zone (2026-03-01T10:00)", _obs(effectiveDateTime="2026-03-01T10:00")),
    ("integer out of range (Patient.multipleBirthInteger 2^40)",
     {"resourceType": "Patient", "multipleBirthInteger": 2 ** 40}),
]


def _layers() -> dict[str, Callable[[dict[str, Any]], bool]]:
    """name: resource -> caught?"""
    layers: dict[str, Callable[[dict[str, Any]], bool]] = {
        "adapter (all layers)": lambda r: bool(validate(r)),
        "R4B models alone": lambda r: any(True for _ in _model_issues(r["resourceType"], r)),
        "required bindings alone": lambda r: any(True for _ in _binding_issues(r["resourceType"], r)),
        "R4 JSON Schema alone": lambda r: any(True for _ in _schema_issues(r["resourceType"], r)),
    }
    try:
        import fhirkit  # type: ignore[import-not-found]
        layers[f"fhirkit-rs {fhirkit.__version__}"] = lambda r: any(
            i.severity == "error" for i in fhirkit.validate(r))
    except ImportError:
        print("fhirkit-rs is not installed (pip install fhirkit-rs): its column is left out")
    return layers


def _per_resource_us(check: Callable[[dict[str, Any]], Any], resources: list[dict[str, Any]]) -> float:
    started = time.perf_counter()
    for resource in resources:
        check(resource)
    return (time.perf_counter() - started) / len(resources) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     epilog="Example: python -m bench.validation --resources 2000")
    parser.add_argument("--resources", type=int, default=5000)
    args = parser.parse_args()
    layers = _layers()
    for _, resource in BROKEN:  # first use loads models and schemas: not part of any figure
        for caught in layers.values():
            caught(copy.deepcopy(resource))
    print(f"{'broken resource':<72}" + "".join(f"{name:>24}" for name in layers))
    totals = dict.fromkeys(layers, 0)
    for label, resource in BROKEN:
        row = []
        for name, caught in layers.items():
            hit = caught(copy.deepcopy(resource))
            totals[name] += hit
            row.append("caught" if hit else "MISSED")
        print(f"{label:<72}" + "".join(f"{cell:>24}" for cell in row))
    print(f"{'caught':<72}" + "".join(f"{f'{totals[n]} of {len(BROKEN)}':>24}" for n in layers))

    observations = [r for r in itertools.islice(generate(args.resources * 2), args.resources * 2)
                    if r["resourceType"] == "Observation"][: args.resources]
    # Each of a shape of its own: an extension of a different length on every resource.
    new_shapes = [{**r, "extension": [{"url": "http://example.org/n", "valueInteger": 1}] * (1 + i % 50),
                   "note": [{"text": "x"}] * (1 + i // 50)} for i, r in enumerate(observations)]
    shape_validator = ShapeValidator()
    costs = {"adapter, shape known (ShapeValidator)": (shape_validator, observations)}
    for r in observations[:10]:
        shape_validator(r)
    costs["adapter, every shape new (validate)"] = (validate, new_shapes)
    for name, caught in layers.items():
        if name != "adapter (all layers)":
            costs[f"{name}, every shape new"] = (caught, new_shapes)
    print(f"\n{len(observations):,} generated Observations; microseconds per resource")
    for name, (check, resources) in costs.items():
        print(f"{name:<60}{_per_resource_us(check, resources):>10.1f}")


if __name__ == "__main__":
    main()
