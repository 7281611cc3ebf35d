"""Visits as data: one Encounter per visit of a record, and the visit's resources pointing to it.

A visit scope (a CSV row, a JSON visit item) that made at least one resource and has a visit
date gets an Encounter `{site}-{record}-{visit}` (status finished, class AMB, period the visit
date, start and end: without an end the period is ongoing and `date=` never matches it; the
research study extension), and every Observation, Procedure and AdverseEvent it
made gets `encounter` = that Encounter. A scope without a visit date makes no Encounter (an
Encounter without a date says nothing the resource ids do not; REDCap's repeating adverse-event
rows carry none), and its resources no `encounter`.

Encounter.type names the planned visit as the mapping knows it: a coding of `visit_system()`
with the visit key (baseline, injection-N, month-N). Those keys do not depend on the arm; with
the child's arm (ResearchSubject.assignedArm) each names one visit action of the arm's protocol
PlanDefinition (`protocol_visit`): what `$adherence` uses. R4 has no Encounter.instantiatesCanonical
and its workflow-instantiatesCanonical extension is not allowed on Encounter.
"""
from __future__ import annotations

import re
from typing import Any

from adapter.mapping.fields import Scope
from adapter.mapping.context import STUDY_EXTENSION, patient_id, safe_id
from adapter.protocol.schedule import visit_system
from adapter.mapping.spec import MappingSpec, Rule

__all__ = ["visit_encounter", "visit_system", "protocol_visit", "ENCOUNTER_OF", "ACT_CODE"]

ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
# The resource types of a visit that point to its Encounter (each has `encounter` in R4).
ENCOUNTER_OF = ("Observation", "Procedure", "AdverseEvent")
_VISIT = re.compile(r"^(baseline|injection-(\d+)|month-(\d+))$")


def visit_encounter(spec: MappingSpec, key: bytes, record: str, scope: Scope,
                    made: list[tuple[Rule, dict[str, Any]]]) -> list[tuple[Rule, dict[str, Any]]]:
    """The Encounter of a visit scope that made `made` (empty: none), linking them to it."""
    if not made or not scope.visit or scope.visit_date is None:
        return []
    catalogue = spec.catalogue
    encounter = {
        "resourceType": "Encounter", "id": safe_id(key, spec.site, record, scope.visit),
        "extension": [{"url": STUDY_EXTENSION, "valueReference": {"reference": f"ResearchStudy/{catalogue.study}"}}],
        "status": "finished",
        "class": {"system": ACT_CODE, "code": "AMB", "display": "ambulatory"},
        "type": [{"coding": [{"system": visit_system(catalogue.base, catalogue.study), "code": scope.visit}],
                  "text": scope.visit}],
        "subject": {"reference": f"Patient/{patient_id(spec, key, record)}"},
        "period": {"start": scope.visit_date, "end": scope.visit_date}}  # a finished visit of one day
    for _, resource in made:
        if resource["resourceType"] in ENCOUNTER_OF:
            resource["encounter"] = {"reference": f"Encounter/{encounter['id']}"}
    return [(made[0][0], encounter)]


def protocol_visit(visit: str, injection_visits: list[str]) -> str | None:
    """The protocol visit action a visit key names, given the ids of the arm's injection visits
    in date order: baseline -> baseline, injection-N -> the N-th, month-N -> fu-mN.

    Examples:
        >>> protocol_visit("injection-2", ["c1-d0", "c1-d7"]), protocol_visit("month-3", []), protocol_visit("x", [])
        ('c1-d7', 'fu-m3', None)
    """
    match = _VISIT.match(visit)
    if not match:
        return None
    if match.group(2):
        n = int(match.group(2))
        return injection_visits[n - 1] if 0 < n <= len(injection_visits) else None
    return f"fu-m{match.group(3)}" if match.group(3) else "baseline"
