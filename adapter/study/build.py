"""The protocol spec as FHIR R4 definitions, after the Vulcan Schedule of Activities IG (STU1).

ResearchStudy -> protocol PlanDefinition per arm (type clinical-protocol; its actions are the
visits, timed by relatedAction from the first injection or the last one, windows in the
AcceptableOffsetRangeSoa extension) -> a PlanDefinition per visit -> ActivityDefinitions; plus
the CodeSystem and ValueSet of the local codes; the sponsor's and the sites' Organizations and
the sites' Locations (organisations.py), which the ResearchStudy names; a Measure per outcome measure
(adapter/outcomes/definitions.py). Ids and canonical URLs come from the spec and
nothing depends on the clock, so building twice gives the same bytes.
"""
from __future__ import annotations

import json
from typing import Any

from adapter.fhir.ids import computable_name
from adapter.outcomes.definitions import measure_resources
from adapter.outcomes.measures import outcomes_of
from adapter.protocol.organisations import (organisation_resources, site_code_system, site_location_references,
                                            sponsor_reference)
from adapter.protocol.schedule import INDEX, WINDOW_EXTENSION as WINDOW, Visit, visit_plan
from adapter.protocol.spec import Spec

__all__ = ["build_bundle", "build_resources", "bundle_bytes", "produces_url", "WINDOW"]

UCUM = "http://unitsofmeasure.org"
DAYS_PER_MONTH = 30.4375  # UCUM "mo"; follow-up windows in FHIR are given in days with it


def produces_url(spec: Spec) -> str:
    """Extension on ActivityDefinition: an Observation code the activity produces."""
    return f"{spec.base}/StructureDefinition/produces-observation-code"


def _coding(spec: Spec, coding: dict[str, Any]) -> dict[str, Any]:
    local = spec.data["local_codes"]
    out = {"system": spec.system(coding["system"]), "code": str(coding["code"])}
    display = coding.get("display") or (local.get(coding["code"]) if coding["system"] == "local" else None)
    if display:
        out["display"] = display
    return out


def _common(spec: Spec, rtype: str, rid: str, name: str, title: str) -> dict[str, Any]:
    p = spec.protocol
    return {"resourceType": rtype, "id": rid, "url": f"{spec.base}/{rtype}/{rid}",
            "version": p["version"], "name": name, "title": title, "status": "active",
            "date": p["date"]}


def _canonical(resource: dict[str, Any]) -> str:
    return f"{resource['url']}|{resource['version']}"  # as Spec.canonical() names it


def _code_system(spec: Spec) -> tuple[dict[str, Any], dict[str, Any]]:
    pid = spec.protocol["id"]
    cs = _common(spec, "CodeSystem", f"{pid}-local", computable_name(f"{pid}-local"),
                 f"Local codes of the {spec.protocol['title']} protocol")
    cs.update({"valueSet": f"{spec.base}/ValueSet/{pid}-local", "content": "complete",
               "caseSensitive": True,
               "concept": [{"code": c, "display": d} for c, d in spec.data["local_codes"].items()]})
    vs = _common(spec, "ValueSet", f"{pid}-local", computable_name(f"{pid}-local"),
                 f"All local codes of the {spec.protocol['title']} protocol")
    vs["compose"] = {"include": [{"system": cs["url"], "version": cs["version"]}]}
    return cs, vs


def _activity(spec: Spec, key: str, activity: dict[str, Any]) -> dict[str, Any]:
    pid = spec.protocol["id"]
    ad = _common(spec, "ActivityDefinition", f"{pid}-{key}", computable_name(key), activity["title"])
    ad["kind"] = "ServiceRequest"
    ad["intent"] = "proposal"
    if activity["kind"] == "procedure":
        ad["code"] = {"coding": [_coding(spec, activity["code"])], "text": activity["title"]}
        dosage: dict[str, Any] = {"text": activity["title"],
                                  "route": {"coding": [_coding(spec, activity["route"])]}}
        if activity.get("dose"):
            dose = spec.data["parameters"]["dose"]
            dosage["doseAndRate"] = [{"doseQuantity": {
                "value": dose["value"], "unit": dose.get("display", dose["unit"]),
                "system": UCUM, "code": dose["unit"]}}]
        ad["dosage"] = [dosage]
        if activity.get("product"):
            # a dose of a product by a route is what a MedicationRequest carries (dosageInstruction,
            # medication); a ServiceRequest has no place for either, so $apply could not pass them on
            ad["kind"] = "MedicationRequest"
            ad["productCodeableConcept"] = {"coding": [_coding(spec, activity["product"])]}
        return ad
    codings = [_coding(spec, c) for c in activity["codes"]]
    ad["code"] = {"coding": codings[:1], "text": activity["title"]} if len(codings) == 1 \
        else {"text": activity["title"]}
    ad["extension"] = [{"url": produces_url(spec), "valueCoding": c} for c in codings]
    for primary in activity["codes"]:  # codes that do the same: $adherence counts either
        for other in activity.get("alternatives", {}).get(str(primary["code"]), []):
            ad["extension"].append({"url": f"{produces_url(spec)}-alternative", "extension": [
                {"url": "for", "valueCoding": _coding(spec, primary)}, {"url": "code", "valueCoding": _coding(spec, other)}]})
    return ad


def _visit_definition(spec: Spec, arm: str, visit: Visit, activities: dict[str, dict[str, Any]]) -> dict[str, Any]:
    pid = spec.protocol["id"]
    pd = _common(spec, "PlanDefinition", f"{pid}-{arm}-{visit.id}", computable_name(f"{arm}-{visit.id}"),
                 visit.title)
    pd["type"] = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/plan-definition-type",
                              "code": "order-set"}]}
    pd["action"] = [{"id": key, "title": activities[key]["title"],
                     "definitionCanonical": _canonical(activities[key])} for key in visit.activities]
    return pd


def _days(value: float) -> dict[str, Any]:
    return {"value": round(value), "unit": "days", "system": UCUM, "code": "d"}


def _timing(visit: Visit, last_injection: str) -> list[dict[str, Any]]:
    """relatedAction of a visit action: offset from the index or the last injection, and window."""
    if visit.id == INDEX:
        return []
    if visit.anchor == "index":
        before = visit.offset < 0
        offset = abs(visit.offset)
        low, high = sorted(abs(visit.offset + w) for w in visit.window)
        related = {"actionId": INDEX, "relationship": "before-start" if before else "after-start",
                   "offsetDuration": {"value": offset, "unit": "days", "system": UCUM, "code": "d"}}
        window = {"low": _days(low), "high": _days(high)}
    else:
        related = {"actionId": last_injection, "relationship": "after-end",
                   "offsetDuration": {"value": visit.offset, "unit": "months", "system": UCUM, "code": "mo"}}
        middle = visit.offset * DAYS_PER_MONTH
        window = {"low": _days(middle + visit.window[0]), "high": _days(middle + visit.window[1])}
    return [{**related, "extension": [{"url": WINDOW, "valueRange": window}]}]


def build_resources(spec: Spec) -> list[dict[str, Any]]:
    p = spec.protocol
    pid = p["id"]
    cs, vs = _code_system(spec)
    activities = {key: _activity(spec, key, a) for key, a in spec.data["activities"].items()}
    out: list[dict[str, Any]] = []
    protocols = []
    for arm_id, arm in spec.data["arms"].items():
        plan = visit_plan(spec, arm_id)
        last_injection = [v.id for v in plan if v.injection][-1]
        visits = [_visit_definition(spec, arm_id, v, activities) for v in plan]
        protocol = _common(spec, "PlanDefinition", f"{pid}-{arm_id}", computable_name(f"{pid}-{arm_id}"),
                           f"{p['title']}: {arm['title']}")
        protocol["type"] = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/plan-definition-type",
                                        "code": "clinical-protocol"}]}
        protocol["description"] = arm["title"]
        protocol["action"] = []
        for visit, definition in zip(plan, visits, strict=True):
            action: dict[str, Any] = {"id": visit.id, "title": visit.title,
                                      "definitionCanonical": _canonical(definition)}
            related = _timing(visit, last_injection)
            if related:
                action["relatedAction"] = related
            else:  # the index visit: its window around the planned start date
                action["timingRange"] = {"low": _days(visit.window[0]), "high": _days(visit.window[1])}
            protocol["action"].append(action)
        protocols.append(protocol)
        out.extend(visits)
    study = {
        "resourceType": "ResearchStudy", "id": pid,
        "identifier": [dict(i) for i in p.get("identifiers", [])],
        "title": p["title"],
        "protocol": [{"reference": f"PlanDefinition/{pd['id']}", "display": pd["title"]} for pd in protocols],
        "status": p["status"],
        "phase": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/research-study-phase",
                              "code": p["phase"]}]},
        "condition": [{"coding": [_coding(spec, p["condition"])]}],
        "description": p.get("description", "") + "".join(
            f"\n\nEligibility: {c}" for c in p.get("eligibility", [])),
        "arm": [{"name": arm_id, "description": arm["title"]} for arm_id, arm in spec.data["arms"].items()],
    }
    if sponsor_reference(spec):
        study["sponsor"] = sponsor_reference(spec)
    if site_location_references(spec):
        study["site"] = site_location_references(spec)
    sites = [site_code_system(spec)] if spec.sites else []  # after the local codes: those come first
    return [*organisation_resources(spec), study, *protocols, *out, *activities.values(), cs, vs, *sites,
            *measure_resources(spec, outcomes_of(spec))]


def build_bundle(spec: Spec) -> dict[str, Any]:
    resources = build_resources(spec)
    return {"resourceType": "Bundle", "id": f"{spec.protocol['id']}-definitions-{spec.protocol['version']}",
            "type": "collection",
            "entry": [{"fullUrl": f"{spec.base}/{r['resourceType']}/{r['id']}", "resource": r}
                      for r in resources]}


def bundle_bytes(spec: Spec) -> bytes:
    """The Bundle as the bytes `protocol build` writes: stable order, indented, UTF-8."""
    return (json.dumps(build_bundle(spec), indent=1, ensure_ascii=False) + "\n").encode("utf-8")
