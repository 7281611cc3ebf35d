"""FHIR R4 terminology services over the repository (https://hl7.org/fhir/R4/terminology-service.html):
$lookup, $validate-code, $subsumes, $expand and $translate.

Free of any web framework and of SQL: each operation takes the repository (a client's guarded
one in the gateway, so the usual scopes apply) and plain inputs, and returns a Parameters or
ValueSet resource as a dict, or raises a `FhirError`. The terminology is what the store holds
(the protocol's and the catalogue's CodeSystems and ValueSets, ConceptMaps) plus the R4 core
value sets of the served types' required bindings, read-only (core.py).
"""
from __future__ import annotations

from adapter.terminology.codesystem import lookup, subsumes, validate_code_in_system
from adapter.terminology.expand import expand
from adapter.terminology.translate import translate
from adapter.terminology.valueset import validate_code_in_value_set

__all__ = ["lookup", "subsumes", "validate_code_in_system", "expand", "validate_code_in_value_set",
           "translate"]
