"""The CapabilityStatement, generated from what the server really does
(https://hl7.org/fhir/R4/capabilitystatement.html): the route table, the served types and the
search parameters the store indexes.
"""
from __future__ import annotations

from typing import Any

from adapter import __version__
from adapter.fhir.dates import now_instant
from adapter.fhir.definitions import SERVED_TYPES, search_params
from adapter.gateway.routes import SYSTEM_INTERACTIONS, TYPE_INTERACTIONS
from adapter.gateway.bulk import EXPORT_DEFINITION, EXPORT_OPERATIONS
from adapter.gateway.operations import operations_of
from adapter.gateway.readonly import READ_ONLY_TYPES
from adapter.gateway.transactions import BUNDLE_INTERACTIONS

__all__ = ["capability_statement"]


_WRITES = ("create", "update", "patch", "delete")


def _resource(rtype: str, enforced: bool) -> dict[str, Any]:
    writable = rtype not in READ_ONLY_TYPES  # the audit trail: read and searched only
    return {
        "type": rtype,
        "profile": f"http://hl7.org/fhir/StructureDefinition/{rtype}",
        "interaction": [{"code": code} for code in TYPE_INTERACTIONS if writable or code not in _WRITES],
        "versioning": "versioned",
        "readHistory": True,
        "updateCreate": writable,
        "conditionalCreate": writable,
        "conditionalRead": "not-supported",
        "conditionalUpdate": writable,
        "conditionalDelete": "single" if writable else "not-supported",
        # literal references to served types must resolve on write unless the setting is off
        "referencePolicy": ["literal", "logical", *(["enforced"] if enforced else [])],
        "searchInclude": ["*", *(f"{rtype}:{p.code}" for p in search_params(rtype).values()
                                 if p.type == "reference")],
        "searchRevInclude": [f"{source}:{p.code}" for source in SERVED_TYPES
                             for p in search_params(source).values()
                             if p.type == "reference" and rtype in p.target],
        "searchParam": [
            {"name": p.code, "definition": p.url, "type": p.type}
            for p in search_params(rtype).values()
        ],
    } | ({"operation": [{"name": r.operation, "definition": r.definition} for r in ops]
                        + [{"name": name, "definition": EXPORT_DEFINITION}
                           for level, name in EXPORT_OPERATIONS if level == rtype]}
         if (ops := operations_of(rtype)) or rtype in ("Patient", "Group") else {})


def _security(token_url: str) -> dict[str, Any]:
    """SMART on FHIR: where to get a token (https://hl7.org/fhir/smart-app-launch/conformance.html)."""
    return {
        "extension": [{"url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                       "extension": [{"url": "token", "valueUri": token_url}]}],
        "service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                 "code": "SMART-on-FHIR"}],
                     "text": "OAuth 2.0 (SMART Backend Services: client_credentials, private_key_jwt)"}],
        "description": "Every request needs a bearer token from the token endpoint; see "
                       ".well-known/smart-configuration.",
    }


def capability_statement(base: str, started: str | None = None, references_enforced: bool = True,
                         token_url: str | None = None) -> dict[str, Any]:
    """The server's CapabilityStatement; `started` (an instant) becomes its date; `token_url`
    (auth on) adds the SMART security element."""
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": started or now_instant(),
        "publisher": "UC-MSC CP FHIR adapter",
        "kind": "instance",
        "software": {"name": "ucmsc-fhir-adapter", "version": __version__},
        "implementation": {"description": "UC-MSC cerebral palsy protocol FHIR R4 gateway",
                           "url": base},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [{
            "mode": "server",
            **({"security": _security(token_url)} if token_url else {}),
            "resource": [_resource(rtype, references_enforced) for rtype in SERVED_TYPES],
            "interaction": [{"code": code} for code in (*BUNDLE_INTERACTIONS, *SYSTEM_INTERACTIONS)],
            "operation": [{"name": name, "definition": EXPORT_DEFINITION} for level, name in EXPORT_OPERATIONS
                          if level is None],
            # GET Patient/[id]/[type] and Patient/[id]/* (interactions.search, system_search)
            "compartment": ["http://hl7.org/fhir/CompartmentDefinition/patient"],
        }],
    }
