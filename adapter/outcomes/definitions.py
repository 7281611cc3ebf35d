"""The protocol's outcome measures as FHIR R4 Measure resources, and back.

A Measure says in words (description, population criteria) what is counted, and says it as data
in one extension, `outcome-definition` (the study, the Observation code, the baseline visit, the
follow-up visits, the summary; a ratio's two codes, a shift's categories, `per` body site): `$evaluate-measure` computes a MeasureReport from the stored
Measure alone, so a Measure a user writes the same way is evaluated the same way. One group per
follow-up visit (its code: the visit key, as Encounter.type names it), stratified by arm and by
site.
"""
from __future__ import annotations

from typing import Any

from adapter.fhir.outcomes import FhirError, Issue
from adapter.fhir.sites import SITE_SYSTEM
from adapter.outcomes.measures import Category, Outcome, RatioPart
from adapter.protocol.schedule import visit_system
from adapter.protocol.spec import Spec

__all__ = ["measure_resources", "outcome_of_measure", "definition_url", "POPULATION", "STRATIFIERS",
           "stratifier_system", "stratifier_concept", "population_code", "population_counts",
           "definition_base"]

POPULATION = "http://terminology.hl7.org/CodeSystem/measure-population"
_SCORING = "http://terminology.hl7.org/CodeSystem/measure-scoring"
_TYPE = "http://terminology.hl7.org/CodeSystem/measure-type"
STRATIFIERS = {"arm": "the child's arm (ResearchSubject.assignedArm)",
               "site": "the child's site (the site label of its ResearchSubject)"}


# The site of a child: its ResearchSubject's site security label (adapter/fhir/sites.py).
_SITE_LABEL = f"ResearchSubject.meta.security.where(system = '{SITE_SYSTEM}').code"


def definition_url(base: str) -> str:
    return f"{base}/StructureDefinition/outcome-definition"


def stratifier_system(base: str) -> str:
    return f"{base}/CodeSystem/outcome-stratifier"


def stratifier_concept(base: str, key: str) -> dict[str, Any]:
    """A stratifier's (or a component's) code, in the Measure and in its reports alike."""
    return {"coding": [{"system": stratifier_system(base), "code": key}], "text": key}


def population_code(code: str) -> dict[str, Any]:
    return {"coding": [{"system": POPULATION, "code": code}]}


def population_counts(**counts: int) -> list[dict[str, Any]]:
    """A report's populations: population_counts(initial_population=3, numerator=1)."""
    return [{"code": population_code(code.replace("_", "-")), "count": n} for code, n in counts.items()]


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
        "population": [{"code": population_code(code),
                        "criteria": _criteria(expression, words)}
                       for code, expression, words in populations],
        "stratifier": [{"code": stratifier_concept(spec.base, key),
                        "criteria": _criteria("ResearchSubject.assignedArm" if key == "arm"
                                              else _SITE_LABEL, words)}
                       for key, words in STRATIFIERS.items()],
    }


def _shift_group(spec: Spec, outcome: Outcome, visit: str) -> dict[str, Any]:
    group = _group(spec, outcome, visit)
    group["code"]["text"] = f"Shift from {outcome.baseline} at {visit}"
    group["description"] = (f"{outcome.title}: per {outcome.per.replace('-', ' ')}, the {outcome.baseline} category "
                            f"x the {visit} category ({', '.join(c.label for c in outcome.categories)}); counts, no means")
    group["population"] = [p for p in group["population"] if p["code"]["coding"][0]["code"] != "measure-observation"]
    value = (f"Observation.where(code.coding.where(system = '{outcome.system}' and code = '{outcome.code}')"
             ".exists()).value")
    words = {"baseline": f"the category at {outcome.baseline}", "follow-up": f"the category at {visit}", **STRATIFIERS}
    expressions = {"baseline": value, "follow-up": value, "arm": "ResearchSubject.assignedArm",
                   "site": _SITE_LABEL}
    group["stratifier"] = [
        {"component": [{"code": stratifier_concept(spec.base, part), "criteria": _criteria(expressions[part], words[part])}
                       for part in parts]}  # mea-1: components alone (the report names it `key`)
        for key, parts in (("shift", ("baseline", "follow-up")), ("arm-shift", ("arm", "baseline", "follow-up")),
                           ("site-shift", ("site", "baseline", "follow-up")))]
    return group


def _adverse_event_group(spec: Spec) -> dict[str, Any]:
    pid = spec.protocol["id"]
    enrolled = f"ResearchSubject.where(study.reference = 'ResearchStudy/{pid}')"
    populations = [
        ("initial-population", enrolled, "every child enrolled in the study (a ResearchSubject of it)"),
        ("denominator", enrolled, "the children enrolled in the group"),
        ("numerator", "AdverseEvent.where(actuality = 'actual').subject",
         "children with at least one actual AdverseEvent; events are also counted by CTCAE grade, "
         "seriousness and causality"),
    ]
    return {
        "code": stratifier_concept(spec.base, "adverse-events"),
        "description": "Children with at least one adverse event / children enrolled, per arm and site",
        "population": [{"code": population_code(code),
                        "criteria": _criteria(expression, words)} for code, expression, words in populations],
        "stratifier": [{"code": stratifier_concept(spec.base, key),
                        "criteria": _criteria("ResearchSubject.assignedArm" if key == "arm"
                                              else _SITE_LABEL, words)}
                       for key, words in STRATIFIERS.items()] + [
            {"code": stratifier_concept(spec.base, key), "criteria": _criteria(expression, f"events and children by {key}")}
            for key, expression in _AE_DIMENSIONS.items()] + [
            {"component": [  # mea-1: components alone (the report's stratifier is `arm-{key}`)
                {"code": stratifier_concept(spec.base, "arm"), "criteria": _criteria("ResearchSubject.assignedArm", STRATIFIERS["arm"])},
                {"code": stratifier_concept(spec.base, key), "criteria": _criteria(expression, f"events and children by {key}")}]}
            for key, expression in _AE_DIMENSIONS.items()],
    }


_AE_DIMENSIONS = {
    "grade": "AdverseEvent.extension.where(url.endsWith('/ctcae-grade')).value",
    "seriousness": "AdverseEvent.seriousness",
    "causality": "AdverseEvent.suspectEntity.causality.assessment",
}


# measure-scoring of each outcome summary (adapter/outcomes/measures.py SUMMARIES)
_SCORINGS = {"change": "continuous-variable", "shift": "cohort", "adverse-events": "proportion"}


def _definition_parts(spec: Spec, outcome: Outcome) -> list[dict[str, Any]]:
    """The outcome as data (the spec's `outcomes:` entry): what `outcome_of_measure` reads back."""
    parts: list[dict[str, Any]] = [{"url": "study", "valueReference": {"reference": f"ResearchStudy/{spec.protocol['id']}"}}]
    if outcome.code:
        parts.append({"url": "code", "valueCoding": {"system": outcome.system, "code": outcome.code}})
    if outcome.baseline:
        parts.append({"url": "baseline", "valueCode": outcome.baseline})
    parts += [{"url": "follow-up", "valueCode": visit} for visit in outcome.follow_up]
    parts.append({"url": "summary", "valueCode": outcome.summary})
    if outcome.summary != "adverse-events" and outcome.per != "child":
        parts.append({"url": "per", "valueCode": outcome.per})
    parts += [{"url": "ratio", "extension": [
        {"url": "numerator", "valueCoding": {"system": r.numerator[0], "code": r.numerator[1], "display": r.numerator_label}},
        {"url": "denominator", "valueCoding": {"system": r.denominator[0], "code": r.denominator[1],
                                               "display": r.denominator_label}}]} for r in outcome.ratio]
    parts += [{"url": "category", "valueCoding": {"system": c.system, "code": c.code, "display": c.label}}
              for c in outcome.categories]
    return parts


def measure_resource(spec: Spec, outcome: Outcome) -> dict[str, Any]:
    p = spec.protocol
    rid = f"{p['id']}-{outcome.key}"
    parts = _definition_parts(spec, outcome)
    if outcome.summary == "adverse-events":
        groups = [_adverse_event_group(spec)]
        description = (f"{outcome.title} in the {p['title']} study: per arm and site, the children enrolled, "
                       "their actual AdverseEvents and the children with at least one (the rate), by CTCAE grade, "
                       "seriousness and causality. What an event does not say is counted as such, never guessed.")
    else:
        groups = [(_shift_group if outcome.summary == "shift" else _group)(spec, outcome, visit)
                  for visit in outcome.follow_up]
        value = (f"numerator / denominator of {' or '.join(f'{r.numerator_label} / {r.denominator_label}' for r in outcome.ratio)}"
                 " at the same visit" if outcome.ratio else
                 f"the value of the Observation coded {outcome.system}|{outcome.code}")
        what = ("Each child's (and muscle's) shift is the category at the follow-up visit against the one at "
                f"{outcome.baseline}" if outcome.summary == "shift" else
                f"Each child's change is the follow-up value minus the {outcome.baseline} value")
        description = (f"{outcome.title} in the {p['title']} study. {what}, {value}, placed at its visit by its "
                       "Encounter. Missing values are counted by reason and never imputed; values outside their "
                       "visit's window are reported apart.")
    return {
        "resourceType": "Measure", "id": rid, "url": f"{spec.base}/Measure/{rid}", "version": p["version"],
        "name": "".join(part.capitalize() for part in rid.split("-")), "title": outcome.title,
        "status": "active", "date": p["date"],
        "extension": [{"url": definition_url(spec.base), "extension": parts}],
        "subjectCodeableConcept": {"coding": [{"system": "http://hl7.org/fhir/resource-types", "code": "Patient"}]},
        "description": description,
        "scoring": {"coding": [{"system": _SCORING, "code": _SCORINGS[outcome.summary]}]},
        "type": [{"coding": [{"system": _TYPE, "code": "outcome"}]}],
        "group": groups,
    }


def measure_resources(spec: Spec, outcomes: dict[str, Outcome]) -> list[dict[str, Any]]:
    return [measure_resource(spec, outcome) for outcome in outcomes.values()]


def _unprocessable(message: str, path: str) -> FhirError:
    return FhirError(422, [Issue("not-supported", message, path)])


def _ratio_part(extension: dict[str, Any]) -> RatioPart:
    """A `ratio` part of the definition: its numerator and denominator Codings."""
    found = {p.get("url"): p.get("valueCoding") for p in extension.get("extension", [])}
    top, bottom = found["numerator"], found["denominator"]
    return RatioPart((top["system"], top["code"]), (bottom["system"], bottom["code"]),
                     str(top.get("display", "numerator")), str(bottom.get("display", "denominator")))


def _definition(measure: dict[str, Any]) -> dict[str, Any] | None:
    return next((e for e in measure.get("extension", []) if str(e.get("url", "")).endswith(definition_url(""))),
                None)


def definition_base(measure: dict[str, Any]) -> str:
    """The base of the Measure's own outcome-definition extension ("" without one): the reports'
    extensions are named under it."""
    definition = _definition(measure)
    return str(definition["url"])[:-len(definition_url(""))] if definition else ""


def _check_types(parts: dict[str, list[Any]]) -> None:
    """KeyError unless each part has the type outcome_of_measure reads (a Measure written by hand
    may give a visit as an integer: a 422, not a traceback)."""
    reference = (parts.get("study") or [None])[0]
    if not isinstance(reference, dict) or not str(reference.get("reference", "")).startswith("ResearchStudy/"):
        raise KeyError("study")
    for name in ("baseline", "follow-up", "summary", "per"):
        if not all(isinstance(v, str) and v for v in parts.get(name, [])):
            raise KeyError(name)
    for name in ("code", "category"):
        if not all(isinstance(v, dict) and isinstance(v.get("system"), str) and isinstance(v.get("code"), str)
                   and isinstance(v.get("display", ""), str) for v in parts.get(name, [])):
            raise KeyError(name)


def outcome_of_measure(measure: dict[str, Any]) -> tuple[Outcome, str]:
    """The Outcome a stored Measure defines, and its study's id; 422 naming the element when the
    Measure is not one this server can evaluate."""
    definition = _definition(measure)
    if definition is None:
        raise _unprocessable(f"Measure/{measure.get('id')} has no outcome-definition extension: this "
                             "server evaluates the protocol's outcome measures (see `protocol build`)",
                             "Measure.extension")
    parts: dict[str, list[Any]] = {}
    for part in definition.get("extension", []):
        value = next((v for k, v in part.items() if k.startswith("value")), None)
        parts.setdefault(part.get("url", ""), []).append(value)
    summary = str((parts.get("summary") or ["change"])[0])
    if summary not in _SCORINGS:
        raise _unprocessable(f"summary {summary!r} is not one this server evaluates (it evaluates "
                             f"{', '.join(_SCORINGS)})", "Measure.extension")
    try:
        _check_types(parts)
        study = parts["study"][0]["reference"].split("/", 1)[1]
        if summary == "adverse-events":
            return Outcome(str(measure.get("id")), str(measure.get("title", measure.get("id"))), "", "", "", (),
                           summary), study
        coding = parts["code"][0]
        ratio = tuple(_ratio_part(e) for e in definition.get("extension", []) if e.get("url") == "ratio")
        categories = tuple(Category(str(c["display"]), c["system"], c["code"]) for c in parts.get("category", []))
        if summary == "shift" and not categories:
            raise KeyError("category")
        outcome = Outcome(str(measure.get("id")), str(measure.get("title", measure.get("id"))),
                          coding["system"], coding["code"], parts["baseline"][0], tuple(parts["follow-up"]),
                          summary, per=str((parts.get("per") or ["child"])[0]), ratio=ratio, categories=categories)
    except (KeyError, IndexError, TypeError, AttributeError):
        raise _unprocessable("the outcome-definition extension needs study (a ResearchStudy reference), code "
                             "(a Coding), baseline and follow-up (visit keys), and for a shift its categories "
                             "(Codings with a display)", "Measure.extension") from None
    return outcome, study
