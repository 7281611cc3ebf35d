"""The interaction core's types, free of HTTP frameworks and SQL: a request as the handlers see
it, their answer, and a route of the one route table (adapter/gateway/routes.py)."""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from adapter.store.repository import Repository

__all__ = ["FhirRequest", "FhirResponse", "Route"]


@dataclass(slots=True)  # built once per request: slots, not frozen, keep that cheap
class FhirRequest:
    # The absolute service base (e.g. http://127.0.0.1:8080/fhir): a str, or a function that
    # works it out, since reads never need it.
    base_url: str | Callable[[], str]
    resource_type: str | None = None
    id: str | None = None
    version: str | None = None
    params: list[tuple[str, str]] = field(default_factory=list)
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None
    compartment: str | None = None  # GET [compartment]/[compartment_id]/[type]: e.g. Patient
    compartment_id: str | None = None

    @property
    def base(self) -> str:
        return self.base_url if isinstance(self.base_url, str) else self.base_url()

    def prefer(self, name: str) -> str | None:
        """A token of the Prefer header (RFC 7240), e.g. prefer("return") -> "minimal"."""
        for part in re.split(r"[;,]", self.headers.get("Prefer", "")):
            key, _, value = part.strip().partition("=")
            if key.strip().lower() == name:
                return value.strip().strip('"').lower()
        return None


@dataclass(slots=True)
class FhirResponse:
    status: int
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    included: int = 0  # resources _include/_revinclude brought: a batch counts them (transactions.py)


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # Flask rule under the service base
    interaction: str  # CapabilityStatement interaction code, or "operation"
    handler: Callable[[FhirRequest, Repository], FhirResponse]
    operation: str | None = None  # for operations: name, e.g. "apply"
    definition: str | None = None  # for operations: the OperationDefinition's canonical URL
