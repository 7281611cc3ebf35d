"""Evaluate a stored outcome Measure over the store: the service behind `$evaluate-measure`.

The repository is the one the request may use (held to its token's scopes and site), so a
report never counts a child its reader could not read.
"""
from __future__ import annotations

from datetime import date
from typing import Any

from adapter.fhir import jsonio
from adapter.fhir.outcomes import FhirError, Issue, bad_request
from adapter.outcomes.definitions import definition_base, outcome_of_measure
from adapter.outcomes.cache import changes as cached_changes
from adapter.outcomes.adverse_events import adverse_event_rows, study_events
from adapter.outcomes.cohort import Cohort, cohort
from adapter.outcomes.measures import Outcome
from adapter.outcomes.memo import remember
from adapter.outcomes.reports import REPORT_TYPES, measure_report, report_header, statistics_url
from adapter.outcomes.shifts import child_shifts, shift_table
from adapter.outcomes.tabulated_reports import adverse_event_groups, shift_groups
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
    days = (period[0].isoformat(), period[1].isoformat())
    base = definition_base(measure)
    visit_system = next((c.get("system") for g in measure.get("group", [])[:1]
                         for c in (g.get("code") or {}).get("coding", [])[:1] if g.get("code")), None) \
        or f"{base}/CodeSystem/{study}-visit"
    if outcome.summary == "change":
        changes = [c for c in cached_changes(repo, outcome, study, days) if members is None or c.patient in members]
        report = measure_report(measure, outcome, base, visit_system, changes, report_type, period, subject)
    else:
        report = _tabulated(repo, measure, outcome, study, base, visit_system, report_type, period, subject, members)
    if persist:
        report = jsonio.parse(repo.create(report).data or b"{}")
    return report


def _tabulated(repo: Repository, measure: dict[str, Any], outcome: Outcome, study: str, base: str,
               visit_system: str, report_type: str, period: tuple[date, date], subject: str | None,
               members: set[str] | None) -> dict[str, Any]:
    """The report of a shift or adverse-event Measure: tables of counts (tabulated_reports.py)."""
    if report_type == "subject-list":
        raise bad_request(f"reportType subject-list lists children per population of a change outcome; "
                          f"{outcome.key} is a {outcome.summary} measure: ask for population or subject", "reportType")
    days = (period[0].isoformat(), period[1].isoformat())
    children = cohort(repo, study)
    if members is not None:
        children = Cohort(children.study, {p: c for p, c in children.children.items() if p in members}, children.plans)
    report = report_header(measure, report_type, period, subject)
    if outcome.summary == "shift":
        shifts = [s for s in remember(repo, "outcome-shifts", (outcome, study, days),
                                      lambda: child_shifts(repo, outcome, study, cohort(repo, study), days))
                  if members is None or s.patient in members]
        rows = {by: shift_table(outcome, shifts, by) for by in (None, "arm", "site")}
        report["group"] = shift_groups(base, statistics_url(base), outcome, visit_system, rows)
    else:
        events = study_events(repo, children, days)
        report["group"] = adverse_event_groups(base, {by: adverse_event_rows(repo, study, by, children, outcome.key,
                                                                             events=events)
                                                      for by in (None, "arm", "site")})
    return report
