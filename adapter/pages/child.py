"""What the child page shows: planned and actual visits, each outcome score over time, adverse
events, and for every value the Provenance that targets it (site file, row, record, mapping)."""
from __future__ import annotations

import collections
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from adapter.fhir import jsonio
from adapter.fhir.outcomes import FhirError
from adapter.outcomes.measures import outcomes_of
from adapter.pages.figures import series_figure, timeline_figure
from adapter.pages.study import causality_of, grade_of, spec
from adapter.protocol.adherence import Finding, adherence
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
    for name, value in observation.items():
        if name == "valueQuantity":
            return value.get("value"), value.get("unit") or value.get("code") or ""
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


def _timeline(findings: list[Finding]) -> dict[str, Any]:
    planned, seen = [], set()
    for f in findings:
        if f.planned is not None and f.earliest is not None and f.latest is not None and f.visit not in seen:
            seen.add(f.visit)
            planned.append({"visit": f.visit, "target": f.planned, "earliest": f.earliest, "latest": f.latest})
    actual = [{"visit": f.visit, "date": f.actual, "status": f.status, "label": f.activity}
              for f in findings if f.actual is not None]
    return timeline_figure("Planned visits (window) and what was done", planned, actual)


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
    observations = sorted(search_all(repo, "Observation", [("subject", f"Patient/{patient_id}")]),
                          key=lambda o: (str(o.get("effectiveDateTime", "")), o["id"]))
    visits = {f"Encounter/{e['id']}": _label((e.get("type") or [{}])[0])
              for e in search_all(repo, "Encounter", [("subject", f"Patient/{patient_id}")])}
    by_code: dict[tuple[str, str], list[tuple[str, float, str]]] = collections.defaultdict(list)
    values = []
    for o in observations:
        value, unit = _value(o)
        visit = visits.get((o.get("encounter") or {}).get("reference", ""), "")
        when = str(o.get("effectiveDateTime") or (o.get("effectivePeriod") or {}).get("start") or "")
        values.append({"id": o["id"], "code": _label(o.get("code")), "date": when, "value": value, "unit": unit,
                       "visit": visit})
        if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
            for c in (o.get("code") or {}).get("coding", []):
                by_code[(c.get("system", ""), str(c.get("code", "")))].append((when, float(value), visit))
    scores = []
    for key, outcome in outcomes_of(spec()).items():
        points = by_code.get((outcome.system, outcome.code))
        if points:
            scores.append((key, series_figure(outcome.title, "score", points)))
    events = []
    for e in sorted(search_all(repo, "AdverseEvent", [("subject", f"Patient/{patient_id}")]),
                    key=lambda e: (str(e.get("date", "")), e["id"])):
        events.append({"id": e["id"], "date": e.get("date", ""), "event": _label(e.get("event")),
                       "grade": grade_of(e), "seriousness": _label(e.get("seriousness")),
                       "causality": ", ".join(causality_of(e)), "outcome": _label(e.get("outcome"))})
    shown = [f"Patient/{patient_id}", *(f"Observation/{v['id']}" for v in values[:MAX_VALUES]),
             *(f"AdverseEvent/{e['id']}" for e in events), *(f.resource for f in findings if f.resource)]
    return ChildPage(patient, subject, _timeline(findings) if findings else None, findings, problem, scores,
                     values[:MAX_VALUES], len(values), events, _provenance(repo, list(dict.fromkeys(shown)), notes),
                     notes)
