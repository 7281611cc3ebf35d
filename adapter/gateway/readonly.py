"""Types no client may write: the audit trail is written by the server alone, so that no one,
however authorised, can add, change or remove a record of what was done."""
from __future__ import annotations

from adapter.fhir.definitions import AUDIT_TYPE
from adapter.fhir.outcomes import FhirError, Issue

__all__ = ["READ_ONLY_TYPES", "refuse_write"]

READ_ONLY_TYPES = frozenset({AUDIT_TYPE})
_VERBS = {"POST": "created", "PUT": "created or changed", "PATCH": "changed", "DELETE": "deleted"}


def refuse_write(resource_type: str | None, method: str, expression: str | None = None) -> None:
    """405 for a write (POST, PUT, PATCH, DELETE) of a read-only type; reads pass."""
    if resource_type in READ_ONLY_TYPES and method in _VERBS:
        raise FhirError(405, [Issue("not-supported", (
            f"{resource_type} is written by this server only: it cannot be {_VERBS[method]} through "
            "the API"), expression)], {"Allow": "GET, HEAD"})
