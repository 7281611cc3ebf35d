"""ActivityDefinition/$apply for one child and one dated visit: the request an ActivityDefinition
defines (https://hl7.org/fhir/R4/activitydefinition-operation-apply.html and "Applying an
ActivityDefinition" in https://hl7.org/fhir/R4/activitydefinition.html), as PlanDefinition/$apply
nests it in its CarePlan.

The request is of the definition's `kind`, carrying what R4 maps onto it from the definition
(https://hl7.org/fhir/R4/activitydefinition-mappings.html): a MedicationRequest has the product as
its medication and the definition's dosage (route, dose) with the visit's timing; a
ServiceRequest has the code and the visit's timing as its occurrence.
"""
from __future__ import annotations

from typing import Any

from adapter.fhir.outcomes import FhirError, Issue

__all__ = ["activity_request", "KINDS"]

KINDS = ("MedicationRequest", "ServiceRequest")  # what this server makes of an ActivityDefinition


def _canonical(resource: dict[str, Any]) -> str:
    return f"{resource['url']}|{resource['version']}" if resource.get("version") else resource["url"]


def activity_request(activity: dict[str, Any], request_id: str, subject: dict[str, Any],
                     timing: dict[str, Any]) -> dict[str, Any]:
    """The request `activity` defines for `subject` at `timing` (a Timing: the visit's target day
    and window), to be contained in the CarePlan: intent `option`, as R4 has a request that is a
    component of a RequestGroup; status `active`, as the plan it belongs to."""
    kind = activity.get("kind")
    base = {"id": request_id, "instantiatesCanonical": [_canonical(activity)], "status": "active",
            "intent": "option"}
    if kind == "MedicationRequest":
        if not activity.get("productCodeableConcept"):
            raise _unusable(activity, "is of kind MedicationRequest but names no productCodeableConcept "
                            "(the medication)", "ActivityDefinition.product[x]")
        dosages = activity.get("dosage") or [{}]
        return {"resourceType": "MedicationRequest", **base,
                "medicationCodeableConcept": activity["productCodeableConcept"], "subject": subject,
                "dosageInstruction": [{**dosage, "timing": timing} for dosage in dosages]}
    if kind == "ServiceRequest":
        if not activity.get("code"):
            raise _unusable(activity, "is of kind ServiceRequest but has no code", "ActivityDefinition.code")
        return {"resourceType": "ServiceRequest", **base, "code": activity["code"], "subject": subject,
                "occurrenceTiming": timing}
    raise _unusable(activity, f"is of kind {kind!r}: $apply here makes {' and '.join(KINDS)}s",
                    "ActivityDefinition.kind")


def _unusable(activity: dict[str, Any], message: str, where: str) -> FhirError:
    return FhirError(422, [Issue("processing", f"ActivityDefinition/{activity.get('id')} {message}", where)])
