"""Measure/[id]/$evaluate-measure (https://hl7.org/fhir/R4/measure-operation-evaluate-measure.html).

Inputs by query string (GET) or Parameters body (POST): periodStart and periodEnd (dates, 1..1
in R4; YYYY and YYYY-MM name their first and last day), reportType (subject, subject-list or
population; by default subject when a subject is given, else population), subject (Patient/ID
or Group/ID). `persist=true` stores the report, by POST only, like $apply. R4's practitioner and
lastReceivedOn are refused as not supported rather than ignored.
"""
from __future__ import annotations

import calendar
import re
from datetime import date

from adapter.fhir import jsonio
from adapter.fhir.outcomes import FhirError, Issue, bad_request
from adapter.gateway.core import FhirRequest, FhirResponse
from adapter.gateway.interactions import written
from adapter.gateway.operation_inputs import operation_inputs
from adapter.outcomes.evaluate import evaluate_measure
from adapter.store.repository import Repository

__all__ = ["evaluate_measure_get", "evaluate_measure_post", "DEFINITION"]

DEFINITION = "http://hl7.org/fhir/OperationDefinition/Measure-evaluate-measure"
_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")
_KNOWN = {"periodStart", "periodEnd", "reportType", "subject", "persist"}


def _day(values: dict[str, str], name: str, last: bool) -> date:
    raw = values.get(name)
    if raw is None:
        raise bad_request(f"parameter {name!r} (a date: YYYY, YYYY-MM or YYYY-MM-DD) is required", name)
    match = _DATE.match(raw.strip())
    try:
        if not match:
            raise ValueError
        year, month, day = int(match[1]), int(match[2] or (12 if last else 1)), match[3]
        if day is None:
            return date(year, month, calendar.monthrange(year, month)[1] if last else 1)
        return date(year, month, int(day))
    except ValueError:
        raise bad_request(f"parameter {name!r}: {raw!r} is not a date (YYYY, YYYY-MM or YYYY-MM-DD)", name) from None


def _evaluate(req: FhirRequest, repo: Repository, may_persist: bool) -> FhirResponse:
    values = operation_inputs(req)
    unknown = sorted(set(values) - _KNOWN)
    if unknown:
        raise FhirError(400, [Issue("not-supported", f"parameter {name!r} is not supported by this server's "
                                    f"$evaluate-measure (it takes {', '.join(sorted(_KNOWN))})", name)
                              for name in unknown])
    persist = values.get("persist", "false").lower()
    if persist not in ("true", "false"):
        raise bad_request("parameter 'persist' must be true or false", "persist")
    if persist == "true" and not may_persist:
        raise FhirError(405, [Issue("not-supported", "persist=true stores the MeasureReport: send "
                                    "$evaluate-measure by POST to persist", "persist")], {"Allow": "POST"})
    subject = values.get("subject") or None
    report_type = values.get("reportType") or ("subject" if subject else "population")
    period = (_day(values, "periodStart", last=False), _day(values, "periodEnd", last=True))
    report = evaluate_measure(repo, req.id or "", report_type, subject, period)
    if persist == "true":  # a create like any other: Location and ETag with it, Prefer honoured
        return written(req, repo.create(report), 201)
    return FhirResponse(200, jsonio.dumps(report))


def evaluate_measure_get(req: FhirRequest, repo: Repository) -> FhirResponse:
    return _evaluate(req, repo, may_persist=False)


def evaluate_measure_post(req: FhirRequest, repo: Repository) -> FhirResponse:
    return _evaluate(req, repo, may_persist=True)
