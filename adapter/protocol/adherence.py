"""Adherence: how a child's recorded care follows the protocol, activity by activity.

Each planned activity of each visit is reported as done in its window, done outside it (by how
many days), done with the wrong route (an injection recorded with the other route's code),
missing (its window has passed), or not yet due; injections recorded that match no planned one
are reported as extra. Procedures and planned injections, both in date order, are aligned at
the least total distance in days (a wrong route counts `WRONG_ROUTE_DAYS` extra; nothing is
paired beyond `MATCH_DAYS`); Observations likewise, code by code. The adverse reaction review
of a visit is done by an Observation of its code (a site's "no adverse event" box) or by an
AdverseEvent recorded at the visit (dated by its Encounter). Each planned visit names the child's
Encounter of it, when the mapping made one (Encounter.type: the visit key, see
adapter/mapping/visits.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from adapter.fhir.outcomes import FhirError, Issue
from adapter.protocol.apply import arm_protocol, definition, read_json, search_all
from adapter.protocol.schedule import DatedVisit, protocol_visit, schedule
from adapter.store.repository import Repository

__all__ = ["Finding", "adherence", "as_parameters", "MATCH_DAYS", "STATUSES"]

MATCH_DAYS = 14
# A record with the other route counts as this many days farther than one with the right route:
# an intravenous dose on the day an intrathecal one was due is that dose by the wrong route, not
# next week's intravenous dose a week early.
WRONG_ROUTE_DAYS = 3
# The activity code an AdverseEvent also counts for (the protocol's adverse-reaction-review).
REVIEW_CODE = "adverse-reaction-review"
STATUSES = ("done-in-window", "done-out-of-window", "wrong-route", "missing", "not-yet-due", "extra")


@dataclass
class Finding:
    visit: str
    activity: str  # ActivityDefinition id, or "-" for an extra injection
    status: str
    planned: date | None
    earliest: date | None
    latest: date | None
    actual: date | None = None
    days_outside: int = 0  # negative: early, positive: late
    resource: str | None = None  # Procedure/..., Observation/... or AdverseEvent/...
    code: tuple[str, str] | None = None
    encounter: str | None = None  # Encounter/... of the child that is this planned visit


@dataclass
class _Planned:
    visit: DatedVisit
    activity: str
    code: tuple[str, str]
    finding: Finding | None = None
    # the codes that do it: its own, and those the protocol gives as alternatives (an absolute
    # lymphocyte count for the percentage)
    accepts: frozenset[tuple[str, str]] = frozenset()

    def done_by(self, codes: set[tuple[str, str]]) -> bool:
        return self.code in codes or bool(self.accepts & codes)


def _day(resource: dict[str, Any], *fields: str) -> date | None:
    for name in fields:
        value = resource.get(name)
        if isinstance(value, dict):
            value = value.get("start")
        if isinstance(value, str) and len(value) >= 10:
            return date.fromisoformat(value[:10])
    return None


def _codes(resource: dict[str, Any]) -> set[tuple[str, str]]:
    return {(c.get("system", ""), c.get("code", "")) for c in (resource.get("code") or {}).get("coding", [])}


def _status(planned: _Planned, actual: date, right_route: bool) -> tuple[str, int]:
    v = planned.visit
    outside = (actual - v.earliest).days if actual < v.earliest else (
        (actual - v.latest).days if actual > v.latest else 0)
    if not right_route:
        return "wrong-route", outside
    return ("done-in-window" if outside == 0 else "done-out-of-window"), outside


def _match(planned: list[_Planned], records: list[tuple[dict[str, Any], date, set[tuple[str, str]]]],
           kinds: set[tuple[str, str]], rtype: str) -> list[tuple[dict[str, Any], date]]:
    """Align planned activities and records, both in date order, at the least total cost (an
    edit distance): a pair costs its distance in days (plus WRONG_ROUTE_DAYS for the other
    route), leaving either side unpaired costs MATCH_DAYS + 1. Returns the records left over."""
    plan = sorted(range(len(planned)), key=lambda i: (planned[i].visit.target, planned[i].code))
    recs = sorted((j for j, r in enumerate(records) if r[2] & kinds),
                  key=lambda j: (records[j][1], sorted(records[j][2])))
    skip = MATCH_DAYS + 1
    n, m = len(plan), len(recs)
    cost = [[0.0] * (m + 1) for _ in range(n + 1)]
    for i in range(1, n + 1):
        cost[i][0] = i * skip
    for j in range(1, m + 1):
        cost[0][j] = j * skip
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            cost[i][j] = min(cost[i - 1][j] + skip, cost[i][j - 1] + skip,
                             cost[i - 1][j - 1] + _pair_cost(planned[plan[i - 1]], records[recs[j - 1]]))
    i, j, used = n, m, set()
    while i > 0 and j > 0:
        p, r = planned[plan[i - 1]], records[recs[j - 1]]
        if cost[i][j] == cost[i - 1][j - 1] + _pair_cost(p, r) and _pair_cost(p, r) < 2 * skip:
            status, outside = _status(p, r[1], p.done_by(r[2]))
            v = p.visit
            p.finding = Finding(v.visit.id, p.activity, status, v.target, v.earliest, v.latest,
                                r[1], outside, f"{r[0].get('resourceType') or rtype}/{r[0]['id']}", p.code)
            used.add(recs[j - 1])
            i, j = i - 1, j - 1
        elif cost[i][j] == cost[i - 1][j] + skip:
            i -= 1
        else:
            j -= 1
    return [(records[k][0], records[k][1]) for k in recs if k not in used]


def _pair_cost(planned: _Planned, record: tuple[dict[str, Any], date, set[tuple[str, str]]]) -> float:
    distance = abs((record[1] - planned.visit.target).days)
    if distance > MATCH_DAYS:
        return float("inf")
    return distance + (0 if planned.done_by(record[2]) else WRONG_ROUTE_DAYS)


def adherence(repo: Repository, subject_id: str, as_of: date,
              definitions: dict[Any, Any] | None = None) -> list[Finding]:
    """The findings of one child. `definitions`: the study's definitions read so far (shared by a
    caller checking many children, e.g. the study page's matrix: 81 searches a child otherwise)."""
    cache: dict[Any, Any] = {} if definitions is None else definitions
    subject, study, plan, start = _subject_plan(repo, subject_id, cache)
    patient = subject["individual"]["reference"]
    visits = schedule(plan, start)
    injections, assessments = _planned(repo, plan, visits, cache)
    procedures = [(p, d, _codes(p)) for p in search_all(repo, "Procedure", [("subject", patient)])
                  if (d := _day(p, "performedDateTime", "performedPeriod")) and p.get("status") != "entered-in-error"]
    extra = _match(injections, procedures, {p.code for p in injections}, "Procedure")
    wanted = {p.code for p in assessments} | {c for p in assessments for c in p.accepts}
    observations = [(o, d, _codes(o)) for o in search_all(repo, "Observation", [("subject", patient)])
                    if (d := _day(o, "effectiveDateTime", "effectivePeriod", "effectiveInstant"))
                    and o.get("status") not in ("entered-in-error", "cancelled") and _codes(o) & wanted]
    encounters = {e["id"]: e for e in search_all(repo, "Encounter", [("subject", patient)])
                  if e.get("status") not in ("entered-in-error", "cancelled")}
    observations += _reviews(repo, patient, encounters, {p.code for p in assessments if p.code[1] == REVIEW_CODE})
    for code in sorted({p.code for p in assessments}):
        mine = [p for p in assessments if p.code == code]
        _match(mine, observations, {code, *(c for p in mine for c in p.accepts)}, "Observation")
    findings = []
    for p in injections + assessments:
        if p.finding is None:
            v = p.visit
            status = "missing" if v.latest < as_of else "not-yet-due"
            p.finding = Finding(v.visit.id, p.activity, status, v.target, v.earliest, v.latest, code=p.code)
        findings.append(p.finding)
    _link_encounters(findings, visits, injections, encounters, study["id"])
    for resource, day in extra:
        findings.append(Finding("-", "-", "extra", None, None, None, day, 0,
                                f"Procedure/{resource['id']}", next(iter(_codes(resource)), None)))
    order = {v.visit.id: i for i, v in enumerate(visits)}
    findings.sort(key=lambda f: (order.get(f.visit, len(order)), f.activity, f.code or ("", "")))
    return findings


def _subject_plan(repo: Repository, subject_id: str, cache: dict[Any, Any]
                  ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], date]:
    """(the ResearchSubject, its study, its arm's protocol PlanDefinition, its first injection day)."""
    subject = read_json(repo, "ResearchSubject", subject_id)
    start = (subject.get("period") or {}).get("start")
    arm = subject.get("assignedArm")
    if not start or not arm or len(start) < 10:
        raise FhirError(422, [Issue("processing", f"ResearchSubject/{subject_id} needs period.start (the "
                                    "day of the first injection, a full date) and assignedArm to be "
                                    "checked against the protocol", "ResearchSubject.period.start")])
    study_id = subject["study"]["reference"].split("/")[-1]
    if ("ResearchStudy", study_id) not in cache:
        cache[("ResearchStudy", study_id)] = read_json(repo, "ResearchStudy", study_id)
    study = cache[("ResearchStudy", study_id)]
    plan_id = arm_protocol(study, arm)
    if ("PlanDefinition", plan_id) not in cache:
        cache[("PlanDefinition", plan_id)] = read_json(repo, "PlanDefinition", plan_id)
    return subject, study, cache[("PlanDefinition", plan_id)], date.fromisoformat(start[:10])


def _planned(repo: Repository, plan: dict[str, Any], visits: list[DatedVisit], cache: dict[Any, Any]
             ) -> tuple[list[_Planned], list[_Planned]]:
    """The planned injections and assessments of the dated visits, from their definitions."""
    actions = {a["id"]: a for a in plan.get("action", [])}
    injections: list[_Planned] = []
    assessments: list[_Planned] = []
    for dated in visits:
        visit_def = definition(repo, actions[dated.visit.id]["definitionCanonical"], "PlanDefinition", cache)
        for i, action in enumerate(visit_def.get("action", [])):
            if not action.get("definitionCanonical"):
                raise FhirError(422, [Issue("processing", f"PlanDefinition/{visit_def.get('id')}: a visit's "
                                            "activity needs a definitionCanonical",
                                            f"PlanDefinition.action[{i}]")])
            activity = definition(repo, action["definitionCanonical"], "ActivityDefinition", cache)
            if activity.get("dosage"):
                injections.append(_Planned(dated, activity["id"], _injection_code(activity)))
            others = _alternatives(activity)
            for ext in activity.get("extension", []):
                if ext["url"].endswith("/produces-observation-code"):
                    c = ext["valueCoding"]
                    code = (c["system"], c["code"])
                    assessments.append(_Planned(dated, activity["id"], code, accepts=others.get(code, frozenset())))
    return injections, assessments


def _alternatives(activity: dict[str, Any]) -> dict[tuple[str, str], frozenset[tuple[str, str]]]:
    """Per code the activity produces, the codes its `-alternative` extensions say do the same."""
    found: dict[tuple[str, str], set[tuple[str, str]]] = {}
    for ext in activity.get("extension", []):
        if ext["url"].endswith("/produces-observation-code-alternative"):
            parts = {p["url"]: p["valueCoding"] for p in ext.get("extension", [])}
            if "for" in parts and "code" in parts:
                found.setdefault((parts["for"]["system"], parts["for"]["code"]), set()).add(
                    (parts["code"]["system"], parts["code"]["code"]))
    return {k: frozenset(v) for k, v in found.items()}


def _injection_code(activity: dict[str, Any]) -> tuple[str, str]:
    coding = ((activity.get("code") or {}).get("coding") or [{}])[0]
    if not coding.get("code"):
        raise FhirError(422, [Issue("processing", f"ActivityDefinition/{activity.get('id')} "
                                    "has a dosage but no coded code: its injections cannot "
                                    "be checked", "ActivityDefinition.code")])
    return coding["system"], coding["code"]


def _reviews(repo: Repository, patient: str, encounters: dict[str, dict[str, Any]],
             codes: set[tuple[str, str]]) -> list[tuple[dict[str, Any], date, set[tuple[str, str]]]]:
    """AdverseEvents as records of the adverse reaction review: an event recorded at a visit shows
    the review was done there, dated by its Encounter (else by its own date, the onset)."""
    if not codes:
        return []
    found = []
    for event in search_all(repo, "AdverseEvent", [("subject", patient)]):
        if event.get("actuality") == "potential":
            continue
        at = encounters.get(((event.get("encounter") or {}).get("reference") or "").removeprefix("Encounter/"))
        day = _day(at, "period") if at else _day(event, "date")
        if day:
            found.append((event, day, codes))
    return found


def _link_encounters(findings: list[Finding], visits: list[DatedVisit], injections: list[_Planned],
                     encounters: dict[str, dict[str, Any]], study: str) -> None:
    """Each planned visit's finding names the child's Encounter of that visit: Encounter.type
    holds the visit key (adapter/mapping/visits.py), which the arm's plan turns into its visit."""
    order = [d.visit.id for d in visits]
    injected = sorted({p.visit.visit.id for p in injections}, key=order.index)
    by_visit: dict[str, str] = {}
    for encounter in encounters.values():
        for concept in encounter.get("type") or []:
            for coding in concept.get("coding") or []:
                if str(coding.get("system", "")).endswith(f"/CodeSystem/{study}-visit"):
                    planned = protocol_visit(str(coding.get("code", "")), injected)
                    if planned:
                        by_visit.setdefault(planned, f"Encounter/{encounter['id']}")
    for finding in findings:
        finding.encounter = by_visit.get(finding.visit)


def as_parameters(subject_id: str, as_of: date, findings: list[Finding]) -> dict[str, Any]:
    """The report as an R4 Parameters resource: a summary, then one `finding` per activity."""
    counts = {s: sum(1 for f in findings if f.status == s) for s in STATUSES}
    params: list[dict[str, Any]] = [
        {"name": "subject", "valueReference": {"reference": f"ResearchSubject/{subject_id}"}},
        {"name": "asOf", "valueDate": as_of.isoformat()},
        {"name": "summary", "part": [{"name": s, "valueInteger": n} for s, n in counts.items()]},
    ]
    for f in findings:
        part: list[dict[str, Any]] = [{"name": "visit", "valueString": f.visit},
                                      {"name": "activity", "valueString": f.activity},
                                      {"name": "status", "valueCode": f.status}]
        if f.code:
            part.append({"name": "code", "valueCoding": {"system": f.code[0], "code": f.code[1]}})
        for name, value in (("plannedDate", f.planned), ("windowStart", f.earliest),
                            ("windowEnd", f.latest), ("actualDate", f.actual)):
            if value:
                part.append({"name": name, "valueDate": value.isoformat()})
        if f.status in ("done-out-of-window", "wrong-route") and f.days_outside:
            part.append({"name": "daysOutsideWindow", "valueInteger": f.days_outside})
        if f.resource:
            part.append({"name": "resource", "valueReference": {"reference": f.resource}})
        if f.encounter:
            part.append({"name": "encounter", "valueReference": {"reference": f.encounter}})
        params.append({"name": "finding", "part": part})
    return {"resourceType": "Parameters", "parameter": params}
