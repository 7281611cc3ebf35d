"""One builder per rule kind: source values (through the rule's field expressions) to FHIR.

Ids are deterministic, made of (site, record key, visit, item), so ingesting the same export
again updates the same resources, and references between them need no lookup. The MRN never
leaves this module in clear: the Patient carries a keyed hash (HMAC-SHA256 with the site's key).
"""
from __future__ import annotations

import decimal
from collections.abc import Callable
from typing import Any

from adapter.mapping.catalogue import FIXED_SYSTEMS
from adapter.mapping.context import (PQ_TRANSLATION, STUDY_EXTENSION, UCUM, Context, coded, keyed_hash,
                                     patient_id, safe_id, ucum_quantity)
from adapter.mapping.fields import Problem, Value, integer_of, rounded, text_of
from adapter.mapping.instruments import instrument, instrument_keys
from adapter.mapping.spec import Rule

__all__ = ["Context", "safe_id", "keyed_hash", "BUILDERS", "intended", "patient_id", "UCUM", "STUDY_EXTENSION"]


def patient(ctx: Context, rule: Rule) -> dict[str, Any] | None:
    base, site = ctx.spec.catalogue.base, ctx.spec.site
    resource: dict[str, Any] = {
        "resourceType": "Patient", "id": patient_id(ctx.spec, ctx.key, ctx.record),
        "meta": {"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
                               "code": "PSEUDED", "display": "pseudonymized"}]},
        "identifier": [{"system": f"{base}/sid/{site}-subject", "value": ctx.record}]}
    if "when" not in rule.data and not rule.per_document and rule.fields and ctx.empty(rule):
        return None  # a row that is not the patient's (no `when:`, a flat export): no bare Patient
    if "mrn" in rule.fields:  # a site without MRNs has no mrn: the Patient keeps its subject identifier
        mrn = text_of(ctx.required(rule, "mrn", "MRN").raw).strip()
        pseudonym = keyed_hash(ctx.key, f"{site}|{mrn}".encode())
        resource["identifier"].insert(0, {"system": f"{base}/sid/{site}-mrn-hmac", "value": pseudonym})
    gender = ctx.value(rule, "gender")
    if not gender.empty:
        resource["gender"] = ctx.code(gender, "gender")
    birth = ctx.value(rule, "birth_date")
    if not birth.empty:
        resource["birthDate"] = ctx.date(birth)
    return resource


def condition(ctx: Context, rule: Rule) -> dict[str, Any]:
    cp = ctx.code(ctx.required(rule, "cp_type", "cerebral palsy type"), "cp-type")
    resource: dict[str, Any] = {
        "resourceType": "Condition", "id": ctx.id("cerebral-palsy"),
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                       "code": "active"}]},
        "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                                           "code": "confirmed"}]},
        "code": coded(ctx, cp), "subject": ctx.subject}
    gmfcs = ctx.value(rule, "gmfcs")
    if not gmfcs.empty:
        resource["stage"] = [{"summary": coded(ctx, ctx.code(gmfcs, "gmfcs")),
                              "type": {"text": "Gross Motor Function Classification System (GMFCS) level"}}]
    return resource


def research_subject(ctx: Context, rule: Rule) -> dict[str, Any]:
    from adapter.protocol.apply import resource_id  # the id $apply gives the same child's subject
    start = ctx.date(ctx.required(rule, "start", "study start date"))
    status = ctx.value(rule, "status")
    return {"resourceType": "ResearchSubject",
            "id": resource_id(ctx.spec.catalogue.study, patient_id(ctx.spec, ctx.key, ctx.record)),
            "status": "on-study" if status.empty else text_of(status.raw), "period": {"start": start},
            "study": ctx.study, "individual": ctx.subject, "assignedArm": _arm(ctx, rule)}


def _arm(ctx: Context, rule: Rule) -> str:
    """The child's arm: the rule's `arm` (a column, a code map, a constant), else the mapping's."""
    if "arm" not in rule.fields:
        return str(ctx.spec.data["mapping"]["arm"])  # load_mapping: present when a rule has no arm
    value = ctx.required(rule, "arm", "arm (randomisation)")
    arm = text_of(value.raw).strip()
    if arm not in ctx.spec.catalogue.arms:  # a column read as it is (a map's targets are checked at load)
        raise Problem(value.label, value.raw, f"unknown arm {arm!r} (the protocol has: "
                      f"{', '.join(ctx.spec.catalogue.arms)})")
    return arm


def injection(ctx: Context, rule: Rule) -> list[dict[str, Any]] | None:
    given = ctx.value(rule, "date")
    if given.empty:  # no injection recorded at this visit
        return None
    day = ctx.date(given)
    said = ctx.required(rule, "route", "route")
    keys = said.raw if isinstance(said.raw, list) else [said.raw]  # a combined session: a Procedure per route
    routes = [ctx.code(Value(key, said.label), "route") for key in keys]
    procedures: list[dict[str, Any]] = [{
        "resourceType": "Procedure", "id": ctx.id(ctx.scope.visit or "injection", *([key] if i else [])),
        "extension": [{"url": STUDY_EXTENSION, "valueReference": ctx.study}],
        "instantiatesCanonical": [ctx.spec.catalogue.activities[route["activity"]]],
        "status": "completed", "code": coded(ctx, route["code"]), "subject": ctx.subject,
        "performedDateTime": day} for i, (key, route) in enumerate(zip(keys, routes, strict=True))]
    procedure = procedures[0]  # the session's: its dose and lot (the others say where they are)
    for other in procedures[1:]:
        other["note"] = [{"text": f"one session with Procedure/{procedure['id']} ({' + '.join(map(str, keys))}): "
                                  "the session's cells given and lot are recorded there"}]
    out = list(procedures)
    cells = ctx.value(rule, "cells_million")
    if not cells.empty:
        number = ctx.decimal(cells) * rule.derived.get("cells_million", 1)
        if not 0 < number <= MAX_CELLS_MILLION:  # before rounding: 1E+300 is no dose
            raise Problem(cells.label, cells.raw if not isinstance(cells.raw, decimal.Decimal) else f"{number:f}"[:40],
                          f"not a number of cells given (more than 0, at most {MAX_CELLS_MILLION:,} x 10^6)")
        procedure["extension"].append({
            "url": f"{ctx.spec.catalogue.base}/StructureDefinition/administered-cells",
            "valueQuantity": {"value": _cells(number, rule.rounding.get("cells_million")),
                              "unit": "10^6 cells", "system": UCUM, "code": "10*6"}})
    lot = ctx.value(rule, "lot")
    if not lot.empty:
        lot_text = text_of(lot.raw).strip()
        product = {"resourceType": "BiologicallyDerivedProduct", "id": safe_id(ctx.key, ctx.spec.site, "lot", lot_text),
                   "identifier": [{"system": f"{ctx.spec.catalogue.base}/sid/{ctx.spec.site}-lot", "value": lot_text}],
                   "productCategory": "cells",
                   "productCode": {"text": "Umbilical cord mesenchymal stem cells (UC-MSC)"}}
        procedure["usedReference"] = [{"reference": f"BiologicallyDerivedProduct/{product['id']}"}]
        out.append(product)
    return out


# An injection's cells, in millions: the protocol gives 1 x 10^6/kg (REFERENCE.md: trials gave
# 2 x 10^7 to 5.5 x 10^7 a dose); 10^10 is far above any, and below it a typo still passes.
MAX_CELLS_MILLION = 10_000


def _adverse_event_id(ctx: Context, rule: Rule) -> str:
    """The id an adverse event would have had, for a rejection to name; where a value it rests
    on is what failed (or a list it comes from), the id's prefix and `*`."""
    try:
        term = ctx.value(rule, "term")
        onset = ctx.value(rule, "onset")
        after = ctx.value(rule, "after_injection")
        visit = f"injection-{integer_of(after, ctx.decimal_mark)}" if not after.empty else ctx.scope.visit
        day = ctx.date(onset) if not onset.empty else ""
        if not term.empty:
            return f"AdverseEvent/{ctx.id(visit or 'no-visit', 'ae', text_of(term.raw), day)}"
    except Problem:
        pass
    return f"AdverseEvent/{ctx.id(ctx.scope.visit or 'no-visit', 'ae')}-*"


def _cells(number: decimal.Decimal, places: int | None) -> decimal.Decimal:
    """Cells given, to 0.01 million at most: a per-kg dose times a weight has more digits than meaning."""
    if places is not None:
        return rounded(number, places)
    return rounded(number, 2) if number.as_tuple().exponent < -2 else number  # type: ignore[operator]


def adverse_event(ctx: Context, rule: Rule) -> dict[str, Any]:
    term_key = text_of(ctx.required(rule, "term", "adverse event term").raw)
    term = ctx.code(ctx.value(rule, "term"), "adverse-event")
    onset = ctx.value(rule, "onset")
    day = ctx.date(onset) if not onset.empty else None
    resource: dict[str, Any] = {
        "resourceType": "AdverseEvent", "id": "", "actuality": "actual", "event": coded(ctx, term),
        "subject": ctx.subject, "study": [ctx.study]}
    if day:
        resource["date"] = day
    grade = ctx.value(rule, "grade")
    if not grade.empty:
        number = str(integer_of(grade, ctx.decimal_mark, "not a CTCAE grade (1-5)"))
        entry = ctx.code(Value(number, grade.label), "ctcae-grade")
        resource["extension"] = [{"url": f"{ctx.spec.catalogue.base}/StructureDefinition/ctcae-grade",
                                  "valueCodeableConcept": coded(ctx, entry["code"])}]
        resource["severity"] = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/adverse-event-severity",
                                            "code": entry["severity"]}]}
    serious = ctx.value(rule, "serious")
    if not serious.empty:
        resource["seriousness"] = {"coding": [{"system": FIXED_SYSTEMS["seriousness"],
                                               "code": ctx.code(serious, "seriousness")}]}
    outcome = ctx.value(rule, "outcome")
    if not outcome.empty:
        resource["outcome"] = {"coding": [{"system": FIXED_SYSTEMS["outcome"],
                                           "code": ctx.code(outcome, "outcome")}]}
    after = ctx.value(rule, "after_injection")
    visit = f"injection-{integer_of(after, ctx.decimal_mark)}" if not after.empty else \
        ctx.scope.visit if (ctx.scope.visit or "").startswith("injection-") else None
    if visit:
        suspect: dict[str, Any] = {"instance": {"reference": f"Procedure/{ctx.id(visit)}"}}
        causality = ctx.value(rule, "causality")
        if not causality.empty:
            suspect["causality"] = [{"assessment": {"coding": [{
                "system": FIXED_SYSTEMS["causality"],
                "code": ctx.code(causality, "causality")}]}}]
        resource["suspectEntity"] = [suspect]
    resource["id"] = ctx.id(visit or ctx.scope.visit or "no-visit", "ae", term_key, day or "")
    return resource


def checked_number(ctx: Context, value: Value, concept: dict[str, Any], factor: decimal.Decimal,
                    places: int | None = None) -> decimal.Decimal:
    """The value in the concept's unit (rounded to `places`), if the reference's rule for it
    (section 4) holds."""
    number = ctx.decimal(value) * factor
    if places is not None:
        number = rounded(number, places)
    check = concept["check"]
    low, high = (decimal.Decimal(str(check[k])) if k in check else None for k in ("min", "max"))
    if (low is not None and number < low) or (high is not None and number > high):
        raise Problem(value.label, value.raw, check["reason"])  # before any arithmetic on 1E+100
    if concept.get("value") == "integer" and number != number.to_integral_value():
        raise Problem(value.label, value.raw, check["reason"])
    if "step" in check and number % decimal.Decimal(str(check["step"])) != 0:
        raise Problem(value.label, value.raw, check["reason"])
    if number.as_tuple().exponent > 0:  # type: ignore[operator]  # 1E+3 is written 1000
        number = number.quantize(decimal.Decimal(1))
    return number


def _source_unit(ctx: Context, rule: Rule) -> tuple[decimal.Decimal, str, str]:
    """The factor into the concept's unit, and the unit the site wrote (its spelling, and UCUM)."""
    if "value" in rule.derived:
        expr = rule.fields["value"]
        said = expr.get("unit", "") if "field" in expr else ""  # a field with its unit, not arithmetic
        return rule.derived["value"], said, said
    unit = rule.fields.get("unit")
    if unit is None or rule.factors is None:
        return decimal.Decimal(1), "", ""
    if isinstance(unit, str):
        return rule.factors[unit], unit, unit
    given = ctx.scope.get(unit["field"])
    spelling = text_of(given.raw).strip()
    if spelling not in rule.factors:
        raise Problem(given.label, given.raw, f"unknown unit (expected {' or '.join(rule.factors)})")
    return rule.factors[spelling], spelling, unit["units"][spelling]


def stored_number(ctx: Context, rule: Rule, value: Value) -> tuple[decimal.Decimal, str, str]:
    """The number an observation rule stores for `value` (in its concept's unit, rounded, checked:
    a Problem when the check fails), and the unit the site wrote (spelling, UCUM). What a lookup
    of the value takes too (adapter/mapping/lookups.py), so that the two cannot differ."""
    assert rule.concept is not None
    factor, spelling, ucum = _source_unit(ctx, rule)
    return checked_number(ctx, value, rule.concept, factor, rule.rounding.get("value")), spelling, ucum


def _as_sent(quantity: dict[str, Any], value: Value, ctx: Context, spelling: str, ucum: str) -> None:
    """Keep what the site sent beside a converted value: its number and unit (R4's
    iso21090-PQ-translation, "the same quantity in a different unit"), so that an auditor can
    see it was 5230 /uL before it was 5.23 10*9/L."""
    quantity["extension"] = [{"url": PQ_TRANSLATION, "valueQuantity": {
        "value": ctx.decimal(value), "unit": spelling, "system": UCUM, "code": ucum}}]


def observation(ctx: Context, rule: Rule) -> dict[str, Any] | None:
    concept = rule.concept
    assert concept is not None  # compiled: an unknown concept is a SpecError
    resource: dict[str, Any] = {
        "resourceType": "Observation", "id": ctx.id(ctx.scope.visit or "", rule.name),
        "extension": [{"url": STUDY_EXTENSION, "valueReference": ctx.study}],
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                  "code": concept["category"]}]}],
        "code": coded(ctx, concept["code"]), "subject": ctx.subject}
    if concept["value"] == "components":
        parts = {name: ctx.value(rule, name) for name in concept["components"]}
        if all(v.empty for v in parts.values()):
            return None
        resource["effectiveDateTime"] = ctx.visit_date()
        resource["component"] = [
            {"code": coded(ctx, spec["code"]),
             "valueQuantity": ucum_quantity(checked_number(ctx, parts[name], spec, rule.derived.get(name, decimal.Decimal(1)),
                                                        rule.rounding.get(name)), spec["unit"])}
            for name, spec in concept["components"].items() if not parts[name].empty]
        return resource
    value = ctx.value(rule, "value")
    if value.empty:
        return None
    resource["effectiveDateTime"] = ctx.visit_date()
    if concept["value"] == "coded":
        grade = text_of(value.raw).strip()
        if grade not in concept["codes"]:
            raise Problem(value.label, value.raw, concept["check"]["reason"])
        resource["valueCodeableConcept"] = coded(ctx, concept["codes"][grade])
    else:
        number, spelling, ucum = stored_number(ctx, rule, value)
        resource["valueQuantity"] = ucum_quantity(number, concept["unit"])
        if ucum and ucum != concept["unit"]:  # converted, or only relabelled (10*3/uL is 10*9/L)
            _as_sent(resource["valueQuantity"], value, ctx, spelling, ucum)
    if "body_site" in rule.data:
        site = rule.data["body_site"]
        resource["bodySite"] = coded(ctx, {"system": "local", "code": site,
                                              "display": ctx.spec.catalogue.data["body_sites"][site]})
    return resource


def intended(ctx: Context, rule: Rule) -> list[str]:
    """"Type/id" of what a rule would have made here, for a rejection to name (and to find what
    else of the record refers to it); the type alone where the id rests on the values."""
    from adapter.protocol.apply import resource_id
    patient = patient_id(ctx.spec, ctx.key, ctx.record)
    visit = ctx.scope.visit or ""
    return {"patient": [f"Patient/{patient}"],
            "condition": [f"Condition/{ctx.id('cerebral-palsy')}"],
            "research_subject": [f"ResearchSubject/{resource_id(ctx.spec.catalogue.study, patient)}"],
            "injection": [f"Procedure/{ctx.id(visit or 'injection')}"],
            "adverse_event": [_adverse_event_id(ctx, rule)],
            "observation": [f"Observation/{ctx.id(visit, rule.name)}"],
            "instrument": [f"Observation/{ctx.id(visit, key)}" for key in instrument_keys(ctx, rule)]}[rule.kind]


BUILDERS: dict[str, Callable[[Context, Rule], Any]] = {
    "patient": patient, "condition": condition, "research_subject": research_subject,
    "injection": injection, "adverse_event": adverse_event, "observation": observation,
    "instrument": instrument}
