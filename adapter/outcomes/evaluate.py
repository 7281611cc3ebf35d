"""Evaluate a stored outcome Measure over the store: the service behind `$evaluate-measure`.

The repository is the one the request may use (held to its token's scopes and site), so a
report never counts a child its reader could not read.
"""
from __future__ import annotations

from datetime import date
from typing import Any

from adapter.fhir import jsonio
from adapter.fhir.outcomes import FhirError, Issue, bad_request
from adapter.outcomes.definitions import outcome_of_measure
from adapter.outcomes.cache import changes as cached_changes
from adapter.outcomes.reports import REPORT_TYPES, measure_report
from adapter.protocol.apply import read_json
from adapter.store.repository import Repository

__all__ = ["evaluate_measure", "REPORT_TYPES"]


def _members(repo: Repository, subject: str) -> set[str]:
    """The Patients a subject stands for: itself, or a Group's members."""
    kind, _, rid = subject.partition("/")
    if kind not in ("Patient", "Group") or not rid or "/" in rid:
        raise bad_request(f"subject {subject!r}: give Patient/ID or Group/ID", "subject")
    resource = read_json(repo, kind, rid)  # 404 / 410 when it is not there
    if kind == "Patient":
        return {subject}
    members = {str(m.get("entity", {}).get("reference", "")) for m in resource.get("member", [])
               if not m.get("inactive")}
    if any(not m.startswith("Patient/") for m in members):
        raise FhirError(422, [Issue("not-supported", f"{subject} has members that are not Patients: a "
                                    "measure counts children", "subject")])
    return members


def evaluate_measure(repo: Repository, measure_id: str, report_type: str, subject: str | None,
                     period: tuple[date, date], persist: bool = False) -> dict[str, Any]:
    """The MeasureReport of Measure/`measure_id` for `subject` (a Patient, a Group, or None: every
    child of the study) over `period`: values taken on other days are left out. With `persist`
    the report is stored (through the same write path as every create) and returned as stored."""
    if report_type not in REPORT_TYPES:
        raise bad_request(f"reportType {report_type!r}: one of {', '.join(REPORT_TYPES)}", "reportType")
    if report_type == "subject" and (subject is None or not subject.startswith("Patient/")):
        raise bad_request("reportType subject needs subject=Patient/ID (a Group: use subject-list or population)",
                          "subject")
    if period[0] > period[1]:
        raise bad_request(f"periodStart {period[0]} is after periodEnd {period[1]}", "periodStart")
    measure = read_json(repo, "Measure", measure_id)
    outcome, study = outcome_of_measure(measure)
    members = _members(repo, subject) if subject else None
    changes = [c for c in cached_changes(repo, outcome, study, (period[0].isoformat(), period[1].isoformat()))
               if members is None or c.patient in members]
    visit_system = next((c.get("system") for g in measure.get("group", [])[:1]
                         for c in (g.get("code") or {}).get("coding", [])[:1]), None)
    base = str(measure.get("url", "")).rsplit("/Measure/", 1)[0]
    report = measure_report(measure, outcome, base, visit_system or f"{base}/CodeSystem/{study}-visit", changes,
                            report_type, period, subject)
    if persist:
        report = jsonio.parse(repo.create(report).data or b"{}")
    return report
