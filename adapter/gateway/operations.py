"""FHIR operations of the protocol (https://hl7.org/fhir/R4/operations.html), framework-free.

Inputs come from the query string (GET) or a Parameters body (POST); both may be combined.
"""
from __future__ import annotations

from datetime import date
from typing import Any

from adapter.fhir import jsonio
from adapter.fhir.definitions import SERVED_TYPES
from adapter.fhir.outcomes import FhirError, Issue, bad_request, operation_outcome
from adapter.fhir.search import DEFAULT_COUNT, decode_cursor, encode_cursor, parse_count, parse_since
from adapter.fhir.validation import validate
from adapter.gateway.bundles import page_url, searchset
from adapter.gateway.evaluate_measure import DEFINITION as _EVALUATE_MEASURE, evaluate_measure_get, evaluate_measure_post
from adapter.gateway.core import FhirRequest, FhirResponse, Route
from adapter.gateway.interactions import check_type
from adapter.gateway.operation_inputs import operation_inputs, parameters_of
from adapter.gateway.terminology import TERMINOLOGY_ROUTES
from adapter.protocol.adherence import adherence, as_parameters
from adapter.protocol.apply import apply_plan
from adapter.store.repository import Repository

__all__ = ["apply_operation", "adherence_operation", "validate_operation", "OPERATION_ROUTES",
           "operations_of"]


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
    """PlanDefinition/{id}/$apply: subject (Patient/ID), start (date of the first injection; by
    default the child's ResearchSubject period.start, else today, as a CarePlan.note says),
    persist (true: store the CarePlan and create or update the ResearchSubject)."""
    values = operation_inputs(req)
    if not values.get("subject"):
        raise bad_request("parameter 'subject' (Patient/ID) is required", "subject")
    persist = values.get("persist", "false").lower()
    if persist not in ("true", "false"):
        raise bad_request("parameter 'persist' must be true or false", "persist")
    start = _date(values, "start") if "start" in values else None  # None: the child's or today
    care_plan = apply_plan(repo, req.id or "", values["subject"], start, persist == "true")
    return FhirResponse(200, jsonio.dumps(care_plan))


def apply_get(req: FhirRequest, repo: Repository) -> FhirResponse:
    """GET $apply only computes: a link or an image on another site can make a browser send a
    GET, so persist=true (which writes) is taken by POST only."""
    if any(k == "persist" and v.lower() == "true" for k, v in req.params):
        raise FhirError(405, [Issue("not-supported", "persist=true stores the CarePlan: send $apply "
                                    "by POST to persist", "persist")], {"Allow": "POST"})
    return apply_operation(req, repo)


def adherence_operation(req: FhirRequest, repo: Repository) -> FhirResponse:
    """ResearchSubject/{id}/$adherence: as-of (date; default today)."""
    values = operation_inputs(req)
    as_of = _date(values, "as-of", date.today())
    report: dict[str, Any] = as_parameters(req.id or "", as_of, adherence(repo, req.id or "", as_of))
    return FhirResponse(200, jsonio.dumps(report))


def validate_operation(req: FhirRequest, repo: Repository) -> FhirResponse:
    """[type]/$validate and [type]/[id]/$validate (https://hl7.org/fhir/R4/resource-operation-validate.html).

    The resource is the body, or the `resource` parameter of a Parameters body; on an instance
    without a body, the stored resource. The answer is 200 with an OperationOutcome whether or
    not the resource is valid: errors as error issues, else one information issue.
    """
    rtype = check_type(req.resource_type)
    repo.require(rtype, "cu", f"$validate of {rtype}")  # asked before writing one
    if req.body:
        resource = jsonio.parse(req.body)
        if isinstance(resource, dict) and resource.get("resourceType") == "Parameters":
            resource = next((p.get("resource") for p in parameters_of(resource)
                             if p.get("name") == "resource"), None)
            if resource is None:
                raise bad_request("a Parameters body needs a 'resource' parameter", "resource")
    elif req.id:
        resource = jsonio.parse(repo.read(rtype, req.id).data or b"{}")
    else:
        raise bad_request("send the resource to validate as the body", code="required")
    issues = validate(resource, expected_type=rtype)
    if not issues and req.id and resource.get("id") not in (None, req.id):
        issues = [Issue("invalid", f"the body's id {resource.get('id')!r} does not match the URL's "
                        f"id {req.id!r}", f"{rtype}.id")]
    if not issues:
        issues = [Issue("informational", "no problems found: valid FHIR R4 for this server",
                        severity="information")]
    return FhirResponse(200, jsonio.dumps(operation_outcome(issues)))


def everything_operation(req: FhirRequest, repo: Repository) -> FhirResponse:
    """Patient/{id}/$everything: the patient and every resource that references it, paged
    (_count, next links), optionally only some types (_type) or changes since an instant (_since)."""
    types, since, count, cursor = SERVED_TYPES, None, DEFAULT_COUNT, None
    kept: list[tuple[str, str]] = []
    for name, value in req.params:
        if name == "_type":
            types = tuple(t.strip() for t in value.split(",") if t.strip())
            unknown = [t for t in types if t not in SERVED_TYPES]
            if unknown:
                raise bad_request(f"_type: {', '.join(unknown)} not served here", "_type")
        elif name == "_since":
            since = parse_since(value)
        elif name == "_count":
            count = max(parse_count(value), 1)
        elif name == "_cursor":
            cursor = decode_cursor(value)
            if len(cursor) != 2 or not all(isinstance(part, str) for part in cursor):
                raise bad_request("_cursor: not a $everything cursor of this server", "_cursor")
            continue
        kept.append((name, value))
    page = repo.everything(req.id or "", types, since, count, cursor)
    path = f"Patient/{req.id}/$everything"
    next_url = page_url(req.base, path, kept + [("_cursor", encode_cursor(page.next_cursor))]) \
        if page.next_cursor else None
    return FhirResponse(200, searchset(req.base, page, page_url(req.base, path, req.params), next_url, []))


_VALIDATE = "http://hl7.org/fhir/OperationDefinition/Resource-validate"
_EVERYTHING = "http://hl7.org/fhir/OperationDefinition/Patient-everything"
_APPLY = "http://hl7.org/fhir/OperationDefinition/PlanDefinition-apply"
_ADHERENCE = "http://ucmsc-cp.example.org/fhir/OperationDefinition/ResearchSubject-adherence"
OPERATION_ROUTES: tuple[Route, ...] = (
    Route("POST", "/<resource_type>/$validate", "operation", validate_operation, "validate", _VALIDATE),
    Route("POST", "/<resource_type>/<id>/$validate", "operation", validate_operation, "validate", _VALIDATE),
    Route("GET", "/<resource_type>/<id>/$validate", "operation", validate_operation, "validate", _VALIDATE),
) + tuple(
    Route(method, f"/{rtype}/<id>/${name}", "operation", handler, name, definition)
    for rtype, name, definition, get, post in (
        ("Patient", "everything", _EVERYTHING, everything_operation, everything_operation),
        ("PlanDefinition", "apply", _APPLY, apply_get, apply_operation),
        ("ResearchSubject", "adherence", _ADHERENCE, adherence_operation, adherence_operation),
        ("Measure", "evaluate-measure", _EVALUATE_MEASURE, evaluate_measure_get, evaluate_measure_post))
    for method, handler in (("GET", get), ("POST", post))) + TERMINOLOGY_ROUTES


def operations_of(resource_type: str) -> list[Route]:
    """The operations on a type, once each (for the CapabilityStatement)."""
    found = {r.operation: r for r in OPERATION_ROUTES
             if r.path.startswith((f"/{resource_type}/", "/<resource_type>/"))
             and resource_type in SERVED_TYPES}
    return list(found.values())
