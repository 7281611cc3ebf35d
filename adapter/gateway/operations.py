"""FHIR operations of the protocol (https://hl7.org/fhir/R4/operations.html), framework-free.

Inputs come from the query string (GET) or a Parameters body (POST); both may be combined.
"""
from __future__ import annotations

from datetime import date
from typing import Any

from adapter.fhir import jsonio
from adapter.fhir.outcomes import bad_request
from adapter.gateway.interactions import FhirRequest, FhirResponse, Route
from adapter.protocol.adherence import adherence, as_parameters
from adapter.protocol.apply import apply_plan
from adapter.store.repository import Repository

__all__ = ["apply_operation", "adherence_operation", "OPERATION_ROUTES", "operations_of"]


def _inputs(req: FhirRequest) -> dict[str, str]:
    values = {k: v for k, v in req.params if not k.startswith("_")}
    if req.body:
        body = jsonio.parse(req.body)
        if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
            raise bad_request("an operation's POST body must be a Parameters resource", "resourceType")
        for param in body.get("parameter") or []:
            value = next((v for k, v in param.items() if k.startswith("value")), None)
            if isinstance(value, dict):
                value = value.get("reference")
            if value is not None:
                values[param.get("name", "")] = str(value).lower() if isinstance(value, bool) else str(value)
    return values


def _date(values: dict[str, str], name: str, default: date | None = None) -> date:
    raw = values.get(name)
    if raw is None:
        if default is None:
            raise bad_request(f"parameter {name!r} (a date, YYYY-MM-DD) is required", name)
        return default
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise bad_request(f"parameter {name!r}: {raw!r} is not a date (YYYY-MM-DD)", name) from None


def apply_operation(req: FhirRequest, repo: Repository) -> FhirResponse:
    """PlanDefinition/{id}/$apply: subject (Patient/ID), start (date of the first injection),
    persist (true: store the CarePlan and create or update the ResearchSubject)."""
    values = _inputs(req)
    if not values.get("subject"):
        raise bad_request("parameter 'subject' (Patient/ID) is required", "subject")
    persist = values.get("persist", "false").lower()
    if persist not in ("true", "false"):
        raise bad_request("parameter 'persist' must be true or false", "persist")
    care_plan = apply_plan(repo, req.id or "", values["subject"], _date(values, "start"), persist == "true")
    return FhirResponse(200, jsonio.dumps(care_plan))


def adherence_operation(req: FhirRequest, repo: Repository) -> FhirResponse:
    """ResearchSubject/{id}/$adherence: as-of (date; default today)."""
    values = _inputs(req)
    as_of = _date(values, "as-of", date.today())
    report: dict[str, Any] = as_parameters(req.id or "", as_of, adherence(repo, req.id or "", as_of))
    return FhirResponse(200, jsonio.dumps(report))


_APPLY = "http://hl7.org/fhir/OperationDefinition/PlanDefinition-apply"
_ADHERENCE = "http://ucmsc-cp.example.org/fhir/OperationDefinition/ResearchSubject-adherence"
OPERATION_ROUTES: tuple[Route, ...] = tuple(
    Route(method, f"/{rtype}/<id>/${name}", "operation", handler, name, definition)
    for rtype, name, definition, handler in (
        ("PlanDefinition", "apply", _APPLY, apply_operation),
        ("ResearchSubject", "adherence", _ADHERENCE, adherence_operation))
    for method in ("GET", "POST"))


def operations_of(resource_type: str) -> list[Route]:
    """The operations on a type, once each (for the CapabilityStatement)."""
    return [r for r in OPERATION_ROUTES if r.method == "GET" and r.path.startswith(f"/{resource_type}/")]
