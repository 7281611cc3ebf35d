"""OperationOutcome: the one shape every error takes (https://hl7.org/fhir/R4/operationoutcome.html).

Raise `FhirError` anywhere; the gateway answers it with its status and `outcome()`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from adapter.errors import AdapterError

__all__ = [
    "Issue", "FhirError", "operation_outcome", "bad_request", "invalid", "refused_resource", "not_found", "gone",
    "conflict", "precondition_failed", "not_supported", "method_not_allowed", "too_large",
    "unsupported_media_type", "not_acceptable", "internal_error",
]


@dataclass(frozen=True)
class Issue:
    """One OperationOutcome.issue; `code` is from http://hl7.org/fhir/issue-type."""

    code: str
    diagnostics: str
    expression: str | None = None
    severity: str = "error"

    def to_json(self) -> dict[str, Any]:
        issue: dict[str, Any] = {"severity": self.severity, "code": self.code,
                                 "diagnostics": self.diagnostics}
        if self.expression:
            issue["expression"] = [self.expression]
        return issue


def operation_outcome(issues: list[Issue]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [i.to_json() for i in issues]}


@dataclass
class FhirError(AdapterError):
    """An error answered as an OperationOutcome with an HTTP status."""

    status: int
    issues: list[Issue] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return "; ".join(i.diagnostics for i in self.issues)

    def outcome(self) -> dict[str, Any]:
        return operation_outcome(self.issues)


def bad_request(message: str, expression: str | None = None, code: str = "invalid") -> FhirError:
    return FhirError(400, [Issue(code, message, expression)])


def invalid(issues: list[Issue], status: int = 422) -> FhirError:
    return FhirError(status, issues)


def refused_resource(issues: list[Issue]) -> FhirError:
    """A resource the validator refuses: 400 when it cannot be read as its type (structure,
    a required element, past a size bound), else 422 (read, but against a rule)."""
    return FhirError(400 if any(i.code in ("structure", "required", "too-costly") for i in issues) else 422, issues)


def forbidden(message: str, expression: str | None = None) -> FhirError:
    """403: who asks may not do this (scopes, site); nothing was done."""
    return FhirError(403, [Issue("forbidden", message, expression)])


def not_found(message: str) -> FhirError:
    return FhirError(404, [Issue("not-found", message)])


def gone(message: str, version_id: str | None = None) -> FhirError:
    headers = {"ETag": f'W/"{version_id}"'} if version_id else {}
    return FhirError(410, [Issue("deleted", message)], headers)


def conflict(message: str) -> FhirError:
    return FhirError(409, [Issue("conflict", message)])


def precondition_failed(message: str) -> FhirError:
    return FhirError(412, [Issue("conflict", message)])


def not_supported(message: str, expression: str | None = None) -> FhirError:
    return FhirError(400, [Issue("not-supported", message, expression)])


def method_not_allowed(message: str, allowed: list[str]) -> FhirError:
    return FhirError(405, [Issue("not-supported", message)], {"Allow": ", ".join(allowed)})


def too_large(limit: int, what: str = "request body", expression: str | None = None) -> FhirError:
    return FhirError(413, [Issue("too-costly", f"{what} exceeds the limit of {limit} bytes", expression)])


def unsupported_media_type(content_type: str) -> FhirError:
    return FhirError(415, [Issue(
        "not-supported",
        f"request body type {content_type!r} is not supported; send application/fhir+json",
    )])


def not_acceptable(accept: str) -> FhirError:
    return FhirError(406, [Issue(
        "not-supported",
        f"cannot answer in {accept!r}; this server speaks application/fhir+json and application/json",
    )])


def internal_error() -> FhirError:
    return FhirError(500, [Issue("exception", "internal server error; the error has been logged")])
