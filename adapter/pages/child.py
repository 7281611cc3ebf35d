"""What the child page shows: each outcome's change from baseline, planned and actual visits
(one state a visit, as the study grid), adverse events, and for every value the Provenance that
targets it (site file, row, record, mapping)."""
from __future__ import annotations

import collections
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from adapter.fhir import jsonio
from adapter.fhir.outcomes import FhirError
from adapter.outcomes.cache import changes
from adapter.outcomes.measures import VOID, outcomes_of
from adapter.pages.figures import series_figure, timeline_figure, with_unit
from adapter.pages.states import activity_name, describe
from adapter.pages.study import causality_of, grade_of, spec
from adapter.pages.units import display_unit
from adapter.protocol.adherence import Finding, adherence
from adapter.protocol.visit_states import VisitState, visit_states
from adapter.protocol.apply import search_all
from adapter.store.repository import Repository

__all__ = ["ChildPage", "child_page", "MAX_VALUES"]

MAX_VALUES = 1000  # rows of the values table; a child has ~150 in the protocol's 12 months
_OR_LIMIT = 100  # values ORed in one search parameter (adapter/fhir/search.py MAX_VALUES)


@dataclass
class Source:
    """Where a value came from: a Provenance of the mapping (adapter/mapping/engine.py)."""
    provenance: str
    entity: str  # "site-a export.csv line 2 (record A0001)"
    mapping: str  # the mapping's canonical URL and version (Provenance.policy)
    recorded: str


@dataclass
class ChildPage:
    patient: dict[str, Any]
    subject: dict[str, Any] | None
    timeline: dict[str, Any] | None
    findings: list[Finding]
    adherence_problem: str
    scores: list[tuple[str, dict[str, Any]]]  # (outcome key, figure)
    values: list[dict[str, Any]]
    values_total: int
    events: list[dict[str, Any]]
    sources: dict[str, Source]
    notes: list[str] = field(default_factory=list)
    states: list[tuple[VisitState, str]] = field(default_factory=list)  # (state, what was done and not)

    def activity(self, finding: Finding) -> str:
        return activity_name(finding)


def _provenance(repo: Repository, targets: list[str], notes: list[str]) -> dict[str, Source]:
    """Each target reference -> its Source. Searched by target, 100 ORed references a search
    (the parameter's limit): a mapped row's Provenance names the Patient only in the row that
    made it, so `patient=` would miss the later visits. A token without Provenance read gets a
    note, not an error page: the values are still its to see."""
    sources: dict[str, Source] = {}
    found: list[dict[str, Any]] = []
    try:
        for start in range(0, len(targets), _OR_LIMIT):
            found += search_all(repo, "Provenance", [("target", ",".join(targets[start:start + _OR_LIMIT]))])
    except FhirError as error:
        notes.append(f"Provenance not shown: {error}")
        return sources
    for prov in sorted(found, key=lambda p: p.get("recorded", "")):
        entity = "; ".join(str((e.get("what") or {}).get("display") or "") for e in prov.get("entity", []))
        source = Source(prov["id"], entity, ", ".join(prov.get("policy", [])), prov.get("recorded", ""))
        for target in prov.get("target", []):
            sources[target.get("reference", "")] = source  # the latest recording wins
    return sources


def _value(observation: dict[str, Any]) -> tuple[Any, str]:
    """(value, unit as people write it)."""
    for name, value in observation.items():
        if name == "valueQuantity":
            code = str((((observation.get("code") or {}).get("coding") or [{}])[0]).get("code", ""))
            return value.get("value"), display_unit(str(value.get("code") or value.get("unit") or ""), code)
        if name.startswith("value") and name != "valueQuantity":
            if isinstance(value, dict):
                return (value.get("text") or (value.get("coding") or [{}])[0].get("display")
                        or (value.get("coding") or [{}])[0].get("code")), ""
            return value, ""
    if observation.get("component"):
        return "; ".join(f"{_label(c.get('code'))} {_value(c)[0]}" for c in observation["component"]), ""
    return None, ""


def _label(concept: dict[str, Any] | None) -> str:
    coding = ((concept or {}).get("coding") or [{}])[0]
    return str((concept or {}).get("text") or coding.get("display") or coding.get("code") or "")


def _timeline(described: list[tuple[VisitState, str]]) -> dict[str, Any]:
    planned = [{"visit": v.visit, "target": v.planned, "earliest": v.findings[0].earliest,
                "latest": v.findings[0].latest} for v, _ in described
               if v.planned is not None and v.findings[0].earliest is not None and v.findings[0].latest is not None]
    # each visit once, at the day it was first done (else its planned day), in its state's colour
    actual = [{"visit": v.visit, "date": v.first_done or v.planned, "state": v.state, "label": label}
              for v, label in described if v.planned is not None]
    return timeline_figure("Planned visits (window) and what was done", planned, actual)


Point = tuple[str, float, str, str, str]  # (date, value, visit, Observation id, body site or "")


def _scores(by_code: dict[tuple[str, str], list[Point]], baselines: dict[str, set[str]],
            units: dict[tuple[str, str], str]) -> list[tuple[str, dict[str, Any]]]:
    """Each outcome's change from its baseline value, one line per body site for a per-muscle
    outcome. The baseline is the study's own (`baselines`: the Observations the outcome reports
    took as this child's baseline, adapter/outcomes/measures.py), so the page and the study's
    tables say the same change. A muscle without a baseline value is named in the title; an
    outcome without any is drawn as its values, and titled so."""
    scores = []
    for key, outcome in outcomes_of(spec()).items():
        code = (outcome.system, outcome.code)
        if not by_code.get(code):
            continue
        unit, name = units.get(code, ""), outcome.title.replace(", change from baseline", "")
        lines: dict[str, list[Point]] = collections.defaultdict(list)
        for point in by_code[code]:
            lines[point[4]].append(point)
        changes, kept, without = {}, {}, []
        for site, points in lines.items():
            baseline = next((p[1] for p in points if p[3] in baselines.get(key, ())), None)
            if baseline is None:
                without.append(site)
                continue
            changes[site] = [(p[0], p[1] - baseline, p[2], p[3], p[4]) for p in points]
            kept[site] = [p[1] for p in points]
        if changes:
            title = name + (f" (no baseline value: {', '.join(without)})" if without else "")
            scores.append((key, series_figure(title, with_unit("change from baseline", unit), changes, unit, kept)))
        else:
            scores.append((key, series_figure(f"{name}: values (no baseline value)", with_unit("value", unit),
                                              dict(lines), unit)))
    return scores


def child_page(repo: Repository, patient_id: str, as_of: date) -> ChildPage:
    """Raises the repository's FhirError (404 unknown, or another site's child: the same)."""
    patient = jsonio.parse(repo.read("Patient", patient_id).data or b"{}")
    notes: list[str] = []
    subject = next(search_all(repo, "ResearchSubject", [("individual", f"Patient/{patient_id}")]), None)
    findings: list[Finding] = []
    problem = ""
    if subject is not None:
        try:
            findings = adherence(repo, subject["id"], as_of)
        except FhirError as error:
            problem = str(error)
    described = [(v, describe(v)) for v in visit_states(findings).values()]
    observations = sorted(search_all(repo, "Observation", [("subject", f"Patient/{patient_id}")]),
                          key=lambda o: (str(o.get("effectiveDateTime", "")), o["id"]))
    # a visit by the protocol's name (c1-d0, fu-m3: as the study grid), else as the site named it
    planned_visit = {f.encounter: f.visit for f in findings if f.encounter}
    visits = {f"Encounter/{e['id']}": planned_visit.get(f"Encounter/{e['id']}") or _label((e.get("type") or [{}])[0])
              for e in search_all(repo, "Encounter", [("subject", f"Patient/{patient_id}")])}
    study, patient_ref = spec().protocol["id"], f"Patient/{patient_id}"
    baselines = {key: {c.baseline_observation.removeprefix("Observation/") for c in changes(repo, outcome, study)
                       if c.patient == patient_ref and c.baseline_observation}
                 for key, outcome in outcomes_of(spec()).items()} if subject is not None else {}
    by_code: dict[tuple[str, str], list[Point]] = collections.defaultdict(list)
    units: dict[tuple[str, str], str] = {}
    values = []
    for o in observations:
        value, unit = _value(o)
        visit = visits.get((o.get("encounter") or {}).get("reference", ""), "")
        when = str(o.get("effectiveDateTime") or (o.get("effectivePeriod") or {}).get("start") or "")
        values.append({"id": o["id"], "code": _label(o.get("code")), "date": when, "value": value, "unit": unit,
                       "visit": visit})
        if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool) and o.get("status") not in VOID:
            for c in (o.get("code") or {}).get("coding", []):
                code = (c.get("system", ""), str(c.get("code", "")))
                by_code[code].append((when, float(value), visit, o["id"], _label(o.get("bodySite"))))
                units.setdefault(code, unit)
    scores = _scores(by_code, baselines, units)
    events = []
    for e in sorted(search_all(repo, "AdverseEvent", [("subject", f"Patient/{patient_id}")]),
                    key=lambda e: (str(e.get("date", "")), e["id"])):
        events.append({"id": e["id"], "date": e.get("date", ""), "event": _label(e.get("event")),
                       "grade": grade_of(e), "seriousness": _label(e.get("seriousness")),
                       "causality": ", ".join(causality_of(e)), "outcome": _label(e.get("outcome"))})
    shown = [f"Patient/{patient_id}", *(f"Observation/{v['id']}" for v in values[:MAX_VALUES]),
             *(f"AdverseEvent/{e['id']}" for e in events), *(f.resource for f in findings if f.resource)]
    return ChildPage(patient, subject, _timeline(described) if described else None, findings, problem, scores,
                     values[:MAX_VALUES], len(values), events, _provenance(repo, list(dict.fromkeys(shown)), notes),
                     notes, described)
