"""What the request path hands to the audit writer: a small tuple, built in microseconds.

Everything that costs (the AuditEvent's JSON, its validation, its index rows, the database)
happens later in the writer's thread, off the request.
"""
from __future__ import annotations

from typing import NamedTuple

__all__ = ["AccessRecord"]


class AccessRecord(NamedTuple):
    method: str
    path: str  # under the service base, e.g. "Observation/o1/_history/2"
    query: str  # the raw query string (or a POST _search form, encoded)
    status: int
    interaction: str | None  # restful-interaction code, "operation", or None (no route matched)
    operation: str | None  # "$everything", "$export", ...
    resource_type: str | None
    resource_id: str | None
    version: str | None
    compartment: str | None  # Patient/x/Observation: "Patient", "x"
    compartment_id: str | None
    location: str | None  # Location or Content-Location of the answer, for the id of a create
    client: str | None  # None: no authenticated client (auth off, or refused before a grant)
    site: str | None
    auth_on: bool
    remote: str | None
    time: float  # seconds since the epoch
    body: bytes | None  # the answer, only where it names the patient (single reads) or the error
    # A person signed in to the pages (OpenID Connect): (issuer, subject); `client` is their name.
    # Last, with a default: records journaled before it still load.
    user: tuple[str, str] | None = None
