"""An operation's inputs: the query string (GET) and a Parameters body (POST), combined.

`operation_inputs` flattens them to one string each, for operations whose inputs are all
simple; `operation_values` keeps every input as given (repeats, Codings, CodeableConcepts,
resources), for those that take more (the terminology operations)."""
from __future__ import annotations

from typing import Any

from adapter.fhir import jsonio
from adapter.fhir.outcomes import bad_request
from adapter.gateway.core import FhirRequest

__all__ = ["operation_inputs", "operation_values", "parameters_of"]


def parameters_of(body: Any) -> list[dict[str, Any]]:
    """The `parameter` list of a Parameters body; 400 for anything else."""
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise bad_request("an operation's POST body must be a Parameters resource", "resourceType")
    params = body.get("parameter") or []
    if not isinstance(params, list) or not all(isinstance(p, dict) for p in params):
        raise bad_request("Parameters.parameter must be a list of parameters", "Parameters.parameter")
    return params


def operation_inputs(req: FhirRequest) -> dict[str, str]:
    """operation_values flattened: one string per name (the last given wins), a Reference as
    its reference, a boolean as true/false; resources and parts left out."""
    values: dict[str, str] = {}
    for name, value in operation_values(req):
        if isinstance(value, dict):
            value = value.get("reference") if "resourceType" not in value and "part" not in value else None
        if value is not None:
            values[name] = str(value).lower() if isinstance(value, bool) else str(value)
    return values


def operation_values(req: FhirRequest) -> list[tuple[str, Any]]:
    """Every input as (name, value), in order, repeats kept: a query-string value as its
    string; a Parameters body's value[x] as given (a Coding or CodeableConcept as its JSON
    object) and a `resource` as the resource; a parameter without a value (parts only, as
    R4's `dependency`, or a name alone) as the parameter itself."""
    values: list[tuple[str, Any]] = [(k, v) for k, v in req.params if not k.startswith("_")]
    if req.body:
        for param in parameters_of(jsonio.parse(req.body)):
            name = param.get("name")
            if not isinstance(name, str) or not name:
                raise bad_request("every parameter of a Parameters body needs a name", "Parameters.parameter.name")
            if "resource" in param:
                values.append((name, param["resource"]))
                continue
            value = next((v for k, v in param.items() if k.startswith("value")), None)
            # a parameter of parts only (R4's `dependency`), or of a name and nothing: as itself,
            # so that an operation refuses it by name rather than never seeing it
            values.append((name, value if value is not None else param))
    return values
