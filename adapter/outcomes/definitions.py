"""The protocol's outcome measures as FHIR R4 Measure resources, and back.

A Measure says in words (description, population criteria) what is counted, and says it as data
in one extension, `outcome-definition` (the study, the Observation code, the baseline visit, the
follow-up visits, the summary): `$evaluate-measure` computes a MeasureReport from the stored
Measure alone, so a Measure a user writes the same way is evaluated the same way. One group per
follow-up visit (its code: the visit key, as Encounter.type names it), stratified by arm and by
site.
"""
from __future__ import annotations

from typing import Any

from adapter.fhir.outcomes import FhirError, Issue
from adapter.outcomes.measures import Outcome
from adapter.protocol.schedule import visit_system
from adapter.protocol.spec import Spec

__all__ = ["measure_resources", "outcome_of_measure", "definition_url", "POPULATION", "STRATIFIERS",
           "stratifier_system"]

POPULATION = "http://terminology.hl7.org/CodeSystem/measure-population"
_SCORING = "http://terminology.hl7.org/CodeSystem/measure-scoring"
_TYPE = "http://terminology.hl7.org/CodeSystem/measure-type"
STRATIFIERS = {"arm": "the child's arm (ResearchSubject.assignedArm)",
               "site": "the child's site (the site label of its ResearchSubject)"}


def definition_url(base: str) -> str:
    return f"{base}/StructureDefinition/outcome-definition"


def stratifier_system(base: str) -> str:
    return f"{base}/CodeSystem/outcome-stratifier"


def _criteria(expression: str, description: str) -> dict[str, Any]:
    # FHIRPath over the resource the population is made of, with the rule in words beside it.
    return {"description": description, "language": "text/fhirpath", "expression": expression}


def _group(spec: Spec, outcome: Outcome, visit: str) -> dict[str, Any]:
    pid = spec.protocol["id"]
    observation = (f"Observation.where(code.coding.where(system = '{outcome.system}' and code = "
                   f"'{outcome.code}').exists())")
    populations = [
        ("initial-population", f"ResearchSubject.where(study.reference = 'ResearchStudy/{pid}')",
         "every child enrolled in the study (a ResearchSubject of it)"),
        ("measure-population", f"{observation}.encounter.resolve().type.coding.code",
         f"children with a value at {outcome.baseline} and at {visit}, each in its visit's window "
         "and in the report period; the others are counted as missing, by reason, never imputed"),
        ("measure-population-exclusion", f"{observation}.encounter.resolve().type.coding.code",
         f"children whose {outcome.baseline} or {visit} value was taken outside the visit's window "
         "(per $adherence): reported apart, never mixed in"),
        ("measure-observation", f"{observation}.value",
         f"the change: the {visit} value minus the {outcome.baseline} value"),
    ]
    return {
        "code": {"coding": [{"system": visit_system(spec.base, pid), "code": visit}],
                 "text": f"Change from {outcome.baseline} at {visit}"},
        "description": f"{outcome.title}: {visit} minus {outcome.baseline}, per child; per population "
                       "n, mean, SD, 95% CI (Student's t), median and IQR",
        "population": [{"code": {"coding": [{"system": POPULATION, "code": code}]},
                        "criteria": _criteria(expression, words)}
                       for code, expression, words in populations],
        "stratifier": [{"code": {"coding": [{"system": stratifier_system(spec.base), "code": key}], "text": key},
                        "criteria": _criteria("ResearchSubject.assignedArm" if key == "arm"
                                              else "ResearchSubject.identifier.system", words)}
                       for key, words in STRATIFIERS.items()],
    }


def measure_resource(spec: Spec, outcome: Outcome) -> dict[str, Any]:
    p = spec.protocol
    rid = f"{p['id']}-{outcome.key}"
    parts: list[dict[str, Any]] = [
        {"url": "study", "valueReference": {"reference": f"ResearchStudy/{p['id']}"}},
        {"url": "code", "valueCoding": {"system": outcome.system, "code": outcome.code}},
        {"url": "baseline", "valueCode": outcome.baseline},
        *({"url": "follow-up", "valueCode": visit} for visit in outcome.follow_up),
        {"url": "summary", "valueCode": "change"},
    ]
    return {
        "resourceType": "Measure", "id": rid, "url": f"{spec.base}/Measure/{rid}", "version": p["version"],
        "name": "".join(part.capitalize() for part in rid.split("-")), "title": outcome.title,
        "status": "active", "date": p["date"],
        "extension": [{"url": definition_url(spec.base), "extension": parts}],
        "subjectCodeableConcept": {"coding": [{"system": "http://hl7.org/fhir/resource-types", "code": "Patient"}]},
        "description": f"{outcome.title} in the {p['title']} study. Each child's change is the follow-up "
                       f"value minus the {outcome.baseline} value of the Observation coded {outcome.system}|"
                       f"{outcome.code}, placed at its visit by its Encounter. Missing values are counted by "
                       "reason and never imputed; values outside their visit's window are reported apart.",
        "scoring": {"coding": [{"system": _SCORING, "code": "continuous-variable"}]},
        "type": [{"coding": [{"system": _TYPE, "code": "outcome"}]}],
        "group": [_group(spec, outcome, visit) for visit in outcome.follow_up],
    }


def measure_resources(spec: Spec, outcomes: dict[str, Outcome]) -> list[dict[str, Any]]:
    return [measure_resource(spec, outcome) for outcome in outcomes.values()]


def _unprocessable(message: str, path: str) -> FhirError:
    return FhirError(422, [Issue("not-supported", message, path)])


def outcome_of_measure(measure: dict[str, Any]) -> tuple[Outcome, str]:
    """The Outcome a stored Measure defines, and its study's id; 422 naming the element when the
    Measure is not one this server can evaluate."""
    definition = next((e for e in measure.get("extension", [])
                       if str(e.get("url", "")).endswith(definition_url(""))), None)
    if definition is None:
        raise _unprocessable(f"Measure/{measure.get('id')} has no outcome-definition extension: this "
                             "server evaluates the protocol's outcome measures (see `protocol build`)",
                             "Measure.extension")
    parts: dict[str, list[Any]] = {}
    for part in definition.get("extension", []):
        value = next((v for k, v in part.items() if k.startswith("value")), None)
        parts.setdefault(part.get("url", ""), []).append(value)
    try:
        study = parts["study"][0]["reference"].split("/", 1)[1]
        coding = parts["code"][0]
        outcome = Outcome(str(measure.get("id")), str(measure.get("title", measure.get("id"))),
                          coding["system"], coding["code"], parts["baseline"][0], tuple(parts["follow-up"]))
    except (KeyError, IndexError, TypeError, AttributeError):
        raise _unprocessable("the outcome-definition extension needs study (a ResearchStudy reference), code "
                             "(a Coding), baseline and follow-up (visit keys)", "Measure.extension") from None
    summary = (parts.get("summary") or ["change"])[0]
    if summary != "change":
        raise _unprocessable(f"summary {summary!r} is not one this server evaluates", "Measure.extension")
    return outcome, study
