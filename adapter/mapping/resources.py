"""One builder per rule kind: source values (through the rule's field expressions) to FHIR.

Ids are deterministic, made of (site, record key, visit, item), so ingesting the same export
again updates the same resources, and references between them need no lookup. The MRN never
leaves this module in clear: the Patient carries a keyed hash (HMAC-SHA256 with the site's key).
Every hash of source values is keyed with it too: an unkeyed one could be recomputed over
candidate values by anyone holding the public mapping.
"""
from __future__ import annotations

import decimal
import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from adapter.mapping.fields import Problem, Scope, Value, date_of, decimal_of, evaluate, integer_of, text_of
from adapter.mapping.spec import MappingSpec, Rule

__all__ = ["Context", "safe_id", "keyed_hash", "BUILDERS", "patient_id", "UCUM", "STUDY_EXTENSION"]

UCUM = "http://unitsofmeasure.org"
STUDY_EXTENSION = "http://hl7.org/fhir/StructureDefinition/workflow-researchStudy"
_ID_SAFE = re.compile(r"^[A-Za-z0-9.\-]+$")


def safe_id(key: bytes, *parts: str) -> str:
    """A FHIR id from parts; a keyed hash of them when a part has other characters or it
    passes 64.

    >>> safe_id(b"k", "site-a", "A0001", "month-3", "barthel")
    'site-a-A0001-month-3-barthel'
    >>> safe_id(b"k", "site-c", "患者1") != safe_id(b"other key", "site-c", "患者1")
    True
    """
    joined = "-".join(parts)
    if len(joined) <= 64 and _ID_SAFE.match(joined):
        return joined
    return f"{parts[0][:30]}-{keyed_hash(key, joined.encode())[:32]}"


def keyed_hash(key: bytes, data: bytes) -> str:
    """HMAC-SHA256 (hex) with the site's pseudonym key."""
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def patient_id(spec: MappingSpec, key: bytes, record: str) -> str:
    return safe_id(key, spec.site, record)


@dataclass
class Context:
    spec: MappingSpec
    key: bytes  # the site's pseudonym key
    record: str
    scope: Scope

    @property
    def subject(self) -> dict[str, str]:
        return {"reference": f"Patient/{patient_id(self.spec, self.key, self.record)}"}

    @property
    def study(self) -> dict[str, str]:
        return {"reference": f"ResearchStudy/{self.spec.catalogue.study}"}

    def value(self, rule: Rule, name: str) -> Value:
        expr = rule.fields.get(name)
        return Value(None, name) if expr is None else evaluate(expr, self.scope)

    def required(self, rule: Rule, name: str, what: str) -> Value:
        value = self.value(rule, name)
        if value.empty:
            raise Problem(value.label, "", f"missing {what}")
        return value

    def date(self, value: Value) -> str:
        return date_of(value, self.spec.source["date_formats"])

    @property
    def decimal_mark(self) -> str:
        return str(self.spec.source.get("decimal_mark", "."))

    def decimal(self, value: Value) -> decimal.Decimal:
        return decimal_of(value, self.decimal_mark)

    def code(self, value: Value, table: str) -> Any:
        codes = self.spec.catalogue.codes(table)
        key = text_of(value.raw).strip()
        if key not in codes:
            raise Problem(value.label, value.raw, f"unknown {table} {key!r} (expected {', '.join(codes)})")
        return codes[key]

    def visit_date(self) -> str:
        if self.scope.visit_date is None:
            raise Problem(self.scope.get(self.spec.source["visit_date"]).label, "", "missing visit date")
        return self.scope.visit_date

    def id(self, *parts: str) -> str:
        return safe_id(self.key, self.spec.site, self.record, *parts)


def _concept(ctx: Context, coding: dict[str, Any]) -> dict[str, Any]:
    full = ctx.spec.catalogue.coding(coding)
    return {"coding": [full], "text": full.get("display", full["code"])}


def patient(ctx: Context, rule: Rule) -> dict[str, Any]:
    mrn = text_of(ctx.required(rule, "mrn", "MRN").raw).strip()
    base, site = ctx.spec.catalogue.base, ctx.spec.site
    pseudonym = keyed_hash(ctx.key, f"{site}|{mrn}".encode())
    resource: dict[str, Any] = {
        "resourceType": "Patient", "id": patient_id(ctx.spec, ctx.key, ctx.record),
        "meta": {"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
                               "code": "PSEUDED", "display": "pseudonymized"}]},
        "identifier": [{"system": f"{base}/sid/{site}-mrn-hmac", "value": pseudonym},
                       {"system": f"{base}/sid/{site}-subject", "value": ctx.record}]}
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
        "code": _concept(ctx, cp), "subject": ctx.subject}
    gmfcs = ctx.value(rule, "gmfcs")
    if not gmfcs.empty:
        resource["stage"] = [{"summary": _concept(ctx, ctx.code(gmfcs, "gmfcs")),
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
    route = ctx.code(ctx.required(rule, "route", "route"), "route")
    procedure: dict[str, Any] = {
        "resourceType": "Procedure", "id": ctx.id(ctx.scope.visit or "injection"),
        "extension": [{"url": STUDY_EXTENSION, "valueReference": ctx.study}],
        "instantiatesCanonical": [ctx.spec.catalogue.activities[route["activity"]]],
        "status": "completed", "code": _concept(ctx, route["code"]), "subject": ctx.subject,
        "performedDateTime": day}
    out = [procedure]
    cells = ctx.value(rule, "cells_million")
    if not cells.empty:
        procedure["extension"].append({
            "url": f"{ctx.spec.catalogue.base}/StructureDefinition/administered-cells",
            "valueQuantity": {"value": ctx.decimal(cells), "unit": "10^6 cells", "system": UCUM, "code": "10*6"}})
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


def adverse_event(ctx: Context, rule: Rule) -> dict[str, Any]:
    term_key = text_of(ctx.required(rule, "term", "adverse event term").raw)
    term = ctx.code(ctx.value(rule, "term"), "adverse-event")
    onset = ctx.value(rule, "onset")
    day = ctx.date(onset) if not onset.empty else None
    resource: dict[str, Any] = {
        "resourceType": "AdverseEvent", "id": "", "actuality": "actual", "event": _concept(ctx, term),
        "subject": ctx.subject, "study": [ctx.study]}
    if day:
        resource["date"] = day
    grade = ctx.value(rule, "grade")
    if not grade.empty:
        number = str(integer_of(grade, ctx.decimal_mark, "not a CTCAE grade (1-5)"))
        entry = ctx.code(Value(number, grade.label), "ctcae-grade")
        resource["extension"] = [{"url": f"{ctx.spec.catalogue.base}/StructureDefinition/ctcae-grade",
                                  "valueCodeableConcept": _concept(ctx, entry["code"])}]
        resource["severity"] = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/adverse-event-severity",
                                            "code": entry["severity"]}]}
    serious = ctx.value(rule, "serious")
    if not serious.empty:
        resource["seriousness"] = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/adverse-event-seriousness",
                                               "code": ctx.code(serious, "seriousness")}]}
    outcome = ctx.value(rule, "outcome")
    if not outcome.empty:
        resource["outcome"] = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/adverse-event-outcome",
                                           "code": ctx.code(outcome, "outcome")}]}
    after = ctx.value(rule, "after_injection")
    visit = f"injection-{integer_of(after, ctx.decimal_mark)}" if not after.empty else \
        ctx.scope.visit if (ctx.scope.visit or "").startswith("injection-") else None
    if visit:
        suspect: dict[str, Any] = {"instance": {"reference": f"Procedure/{ctx.id(visit)}"}}
        causality = ctx.value(rule, "causality")
        if not causality.empty:
            suspect["causality"] = [{"assessment": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/adverse-event-causality-assess",
                "code": ctx.code(causality, "causality")}]}}]
        resource["suspectEntity"] = [suspect]
    resource["id"] = ctx.id(visit or ctx.scope.visit or "no-visit", "ae", term_key, day or "")
    return resource


def _checked_number(ctx: Context, value: Value, concept: dict[str, Any], factor: decimal.Decimal) -> decimal.Decimal:
    """The value in the concept's unit, if the reference's rule for it (section 4) holds."""
    number = ctx.decimal(value) * factor
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


def _quantity(number: decimal.Decimal, unit: str) -> dict[str, Any]:
    return {"value": number, "unit": unit, "system": UCUM, "code": unit}


def _factor(ctx: Context, rule: Rule) -> decimal.Decimal:
    unit = rule.fields.get("unit")
    if unit is None or rule.factors is None:
        return decimal.Decimal(1)
    if isinstance(unit, str):
        return rule.factors[unit]
    given = ctx.scope.get(unit["field"])
    spelling = text_of(given.raw).strip()
    if spelling not in rule.factors:
        raise Problem(given.label, given.raw, f"unknown unit (expected {' or '.join(rule.factors)})")
    return rule.factors[spelling]


def observation(ctx: Context, rule: Rule) -> dict[str, Any] | None:
    concept = rule.concept
    assert concept is not None  # compiled: an unknown concept is a SpecError
    resource: dict[str, Any] = {
        "resourceType": "Observation", "id": ctx.id(ctx.scope.visit or "", rule.name),
        "extension": [{"url": STUDY_EXTENSION, "valueReference": ctx.study}],
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                  "code": concept["category"]}]}],
        "code": _concept(ctx, concept["code"]), "subject": ctx.subject}
    if concept["value"] == "components":
        parts = {name: ctx.value(rule, name) for name in concept["components"]}
        if all(v.empty for v in parts.values()):
            return None
        resource["effectiveDateTime"] = ctx.visit_date()
        resource["component"] = [
            {"code": _concept(ctx, spec["code"]),
             "valueQuantity": _quantity(_checked_number(ctx, parts[name], spec, decimal.Decimal(1)), spec["unit"])}
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
        resource["valueCodeableConcept"] = _concept(ctx, concept["codes"][grade])
    else:
        number = _checked_number(ctx, value, concept, _factor(ctx, rule))
        resource["valueQuantity"] = _quantity(number, concept["unit"])
    if "body_site" in rule.data:
        site = rule.data["body_site"]
        resource["bodySite"] = _concept(ctx, {"system": "local", "code": site,
                                              "display": ctx.spec.catalogue.data["body_sites"][site]})
    return resource


BUILDERS: dict[str, Callable[[Context, Rule], Any]] = {
    "patient": patient, "condition": condition, "research_subject": research_subject,
    "injection": injection, "adverse_event": adverse_event, "observation": observation}
