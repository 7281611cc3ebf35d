"""The FHIR RESTful interactions (https://hl7.org/fhir/R4/http.html), free of any web framework.

Each handler takes a `FhirRequest` and the repository and returns a `FhirResponse`; the Flask
blueprint only converts HTTP to and from these. `ROUTES` lists every interaction once; the
CapabilityStatement is generated from it.
"""
from __future__ import annotations

import re
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl, urlencode

from adapter.fhir import jsonio
from adapter.fhir.definitions import SERVED_TYPES
from adapter.fhir.ids import check_id
from adapter.fhir.outcomes import (
    FhirError, Issue, bad_request, not_found, operation_outcome, precondition_failed, refused_resource,
)
from adapter.fhir.search import (
    DEFAULT_COUNT, SearchRequest, decode_cursor, encode_cursor, parse_count, parse_search, parse_since,
)
from adapter.fhir.subsetting import subset
from adapter.fhir.validation import validate
from adapter.gateway.core import FhirRequest, FhirResponse
from adapter.gateway.bundles import history_bundle, http_date, page_url, searchset
from adapter.gateway.conditional_read import modified_since, subsetting_params
from adapter.store.compartment import compartment_types
from adapter.store.repository import Repository, StoredResource, Transaction

__all__ = ["FhirRequest", "FhirResponse", "check_type", "parse_if_match", "validated", "written", "read", "vread",
           "search", "history", "create", "update", "conditional_update", "conditional_delete", "delete",
           "check_compartment"]


def check_type(resource_type: str | None) -> str:
    if resource_type not in SERVED_TYPES:
        raise not_found(f"resource type {resource_type!r} is not served here; see /metadata")
    return resource_type  # type: ignore[return-value]


def _version_headers(stored: StoredResource, location_base: str | None = None) -> dict[str, str]:
    headers = {"ETag": f'W/"{stored.version_id}"', "Last-Modified": http_date(stored.last_updated)}
    if location_base:
        headers["Location"] = (f"{location_base}/{stored.resource_type}/{stored.id}/_history/"
                               f"{stored.version_id}")
    return headers


def parse_version(raw: str, what: str) -> int:
    """A version id from a path or a (weak) ETag: `3`, `"3"`, `W/"3"`."""
    text = raw.strip()
    text = text[2:] if text.startswith("W/") else text
    text = text.strip('"')
    if not (text.isascii() and text.isdigit()):  # '²'.isdigit() is True, and int() refuses it
        raise bad_request(f"{what}: {raw!r} is not a version id of this server", what)
    return 2 ** 63 if len(text) > 18 else int(text)  # past any stored version: 404 or 412


_ETAG = re.compile(r'(?:W/)?"([A-Za-z0-9\-.]{1,64})"')  # a weak or strong ETag holding a FHIR id


def parse_if_match(raw: str, what: str = "If-Match") -> int:
    """The version an If-Match asks for. A well-formed ETag whose value is no version id of this
    server (`W/"bogus"`) cannot match the resource: 412, as for any other version; only a
    header that is no ETag at all is a 400."""
    etag = _ETAG.fullmatch(raw.strip())
    if etag and not etag.group(1).isdigit():
        raise precondition_failed(f"{what}: {raw!r} is not the current version of the resource")
    return parse_version(raw, what)


# -- read side ----------------------------------------------------------------------------------

def read(req: FhirRequest, repo: Repository) -> FhirResponse:
    rtype = check_type(req.resource_type)
    stored = repo.read(rtype, req.id or "")
    headers = _version_headers(stored)
    if_none_match = req.headers.get("If-None-Match")
    if if_none_match is not None:  # it overrides If-Modified-Since (RFC 7232 3.3)
        if if_none_match.strip() == headers["ETag"]:
            return FhirResponse(304, None, headers)
    elif (since := req.headers.get("If-Modified-Since")) and not modified_since(stored.last_updated, since):
        return FhirResponse(304, None, headers)
    if req.params:
        summary, elements = subsetting_params(req.params)
        return FhirResponse(200, subset(stored.data or b"{}", rtype, summary, elements), headers)
    return FhirResponse(200, stored.data, headers)


def vread(req: FhirRequest, repo: Repository) -> FhirResponse:
    rtype = check_type(req.resource_type)
    version = parse_version(req.version or "", "version")
    stored = repo.vread(rtype, req.id or "", version)
    return FhirResponse(200, stored.data, _version_headers(stored))


def search(req: FhirRequest, repo: Repository) -> FhirResponse:
    """GET [type]?..., and GET Patient/[id]/[type]?... (the search within a patient's compartment)."""
    rtype = check_type(req.resource_type)
    strict = req.prefer("handling") == "strict"
    request = parse_search(rtype, req.params, strict=strict)
    path = rtype
    if req.compartment is not None:
        patient = check_compartment(req, repo, rtype)
        request = replace(request, compartment=patient)
        path = f"Patient/{patient}/{rtype}"
    page = repo.search(request)
    used = [(k, v) for k, v in request.used_params() if k != "_cursor"]

    def at(cursor: tuple[Any, ...] | None, before: bool = False) -> str | None:
        return None if cursor is None else page_url(req.base, path, used + [("_cursor", encode_cursor(cursor, before))])

    warnings = [Issue("not-supported", f"unknown search parameter {name!r} was ignored", name,
                      severity="warning") for name in request.ignored] + list(request.notes)
    return FhirResponse(200, searchset(req.base, page, page_url(req.base, path, request.used_params()),
                                       at(page.next_cursor), warnings, request.summary, request.elements,
                                       at(page.previous_cursor, before=True), page_url(req.base, path, used)),
                        included=len(page.included))


def check_compartment(req: FhirRequest, repo: Repository, rtype: str | None = None) -> str:
    """The patient whose compartment a search is in: 404 unless the compartment is a patient's
    and the patient exists (410 once deleted), 400 for a type no patient's compartment holds."""
    if req.compartment != "Patient":
        raise FhirError(404, [Issue("not-found", f"{req.compartment!r} is no compartment here; the "
                                    "Patient compartment is (Patient/[id]/[type])")])
    patient = check_id(req.compartment_id, "Patient.id")
    repo.read("Patient", patient)
    if rtype is not None and rtype not in compartment_types():
        raise bad_request(f"{rtype} is not in the Patient compartment: no {rtype} search parameter "
                          "refers to a Patient", code="not-supported")
    return patient


def history(req: FhirRequest, repo: Repository) -> FhirResponse:
    rtype = check_type(req.resource_type) if req.resource_type else None
    since, count, cursor = None, DEFAULT_COUNT, None
    kept: list[tuple[str, str]] = []
    for name, value in req.params:
        if name == "_since":
            since = parse_since(value)
        elif name == "_count":
            count = parse_count(value)
        elif name == "_cursor":
            decoded = decode_cursor(value)
            if len(decoded) != 1 or not isinstance(decoded[0], int):
                raise bad_request("_cursor: not a history cursor of this server", "_cursor")
            cursor = decoded[0]
            continue
        else:
            continue
        kept.append((name, value))
    page = repo.history(rtype, req.id, since, count, cursor)
    path = "/".join(p for p in (rtype, req.id, "_history") if p)
    self_url = page_url(req.base, path, req.params)
    next_url = None
    if page.next_cursor is not None:
        next_url = page_url(req.base, path, kept + [("_cursor", encode_cursor((page.next_cursor,)))])
    return FhirResponse(200, history_bundle(req.base, page, self_url, next_url))


# -- write side ---------------------------------------------------------------------------------

def _resource_body(req: FhirRequest, rtype: str) -> dict[str, Any]:
    if not req.body:
        raise bad_request("the request has no body; send a FHIR resource", code="required")
    resource = jsonio.parse(req.body)
    if not isinstance(resource, dict):
        raise bad_request("the body must be a JSON object (a FHIR resource)", code="structure")
    if resource.get("resourceType") != rtype:
        raise bad_request(f"resourceType {resource.get('resourceType')!r} does not match the "
                          f"URL's type {rtype!r}", "resourceType")
    return resource


def validated(resource: dict[str, Any]) -> dict[str, Any]:
    issues = validate(resource)
    if issues:
        raise refused_resource(issues)
    return resource


def written(req: FhirRequest, stored: StoredResource, status: int) -> FhirResponse:
    headers = _version_headers(stored, location_base=req.base)
    wanted = req.prefer("return")
    if wanted == "minimal":
        return FhirResponse(status, None, headers)
    if wanted == "operationoutcome":
        verb = "created" if status == 201 else "updated"
        outcome = operation_outcome([Issue(
            "informational", f"{stored.resource_type}/{stored.id} {verb}, version "
            f"{stored.version_id}", severity="information")])
        return FhirResponse(status, jsonio.dumps(outcome), headers)
    return FhirResponse(status, stored.data, headers)


def condition(rtype: str, query: str | list[tuple[str, str]], what: str) -> SearchRequest:
    """The search of a conditional interaction: strict (an unknown parameter must not match
    everything), at most 2 matches needed to tell none, one and several apart."""
    params = parse_qsl(query, keep_blank_values=True) if isinstance(query, str) else query
    params = [(k, v) for k, v in params if k not in ("_format", "_pretty", "_count", "_sort", "_total", "_cursor")]
    if not params:
        raise bad_request(f"{what}: a conditional interaction needs search parameters", what)
    return replace(parse_search(rtype, params, strict=True), count=2, total="none", sort=())


def condition_key(request: SearchRequest) -> tuple[str, str]:
    """The lock a conditional write takes: the same search, the same key, whatever the order."""
    return request.resource_type, "?" + urlencode(sorted(request.used_params()))


def matches(tx: Transaction, request: SearchRequest, what: str) -> list[StoredResource]:
    found = tx.search(request).entries
    if len(found) > 1:
        raise precondition_failed(f"{what} matches more than one {request.resource_type}: "
                                  "make the criteria more selective")
    return found


def create(req: FhirRequest, repo: Repository) -> FhirResponse:
    rtype = check_type(req.resource_type)
    if asked := sorted({k for k, _ in req.params} - {"_format", "_pretty"}):
        # how fhirpy sends a conditional create (POST Patient?identifier=...): taken as a plain
        # create, it made a new resource each time
        raise bad_request(f"POST {rtype} takes no search parameters ({', '.join(asked)}): a conditional create "
                          "sends its search in the If-None-Exist header (If-None-Exist: identifier=...)",
                          "If-None-Exist")
    resource = _resource_body(req, rtype)
    # The server assigns the id (http.html#create): a client-supplied one is ignored.
    resource.pop("id", None)
    resource = validated(resource)
    wanted = req.headers.get("If-None-Exist")
    if not wanted:
        return written(req, repo.create(resource), 201)
    request = condition(rtype, wanted, "If-None-Exist")
    with repo.transaction() as tx:  # the search and the create under one lock: race-free
        tx.lock([condition_key(request)])
        found = matches(tx, request, "If-None-Exist")
        stored = found[0] if found else tx.create(resource)
    return written(req, stored, 200 if found else 201)


def conditional_update(req: FhirRequest, repo: Repository) -> FhirResponse:
    """PUT [type]?[search]: update the one match, create when none, 412 when several."""
    rtype = check_type(req.resource_type)
    resource = validated(_resource_body(req, rtype))
    request = condition(rtype, req.params, "conditional update")
    with repo.transaction() as tx:
        tx.lock([condition_key(request)])
        found = matches(tx, request, "the conditional update's search")
        if found and resource.get("id") not in (None, found[0].id):
            raise bad_request(f"the body's id {resource['id']!r} is not the matching resource's "
                              f"{found[0].id!r}", f"{rtype}.id")
        if found:
            stored = tx.update({**resource, "id": found[0].id})
        else:
            stored = tx.create(resource, resource.get("id"))
    return written(req, stored, 200 if found else 201)


def conditional_delete(req: FhirRequest, repo: Repository) -> FhirResponse:
    """DELETE [type]?[search]: delete the one match (none: nothing to do), 412 when several."""
    rtype = check_type(req.resource_type)
    request = condition(rtype, req.params, "conditional delete")
    with repo.transaction() as tx:
        tx.lock([condition_key(request)])
        found = matches(tx, request, "the conditional delete's search")
        stored = tx.delete(rtype, found[0].id) if found else None
    return FhirResponse(204, None, {"ETag": f'W/"{stored.version_id}"'} if stored else {})


def update(req: FhirRequest, repo: Repository) -> FhirResponse:
    rtype = check_type(req.resource_type)
    check_id(req.id, f"{rtype}.id")
    resource = _resource_body(req, rtype)
    if resource.get("id") != req.id:
        raise bad_request(f"the body's id {resource.get('id')!r} does not match the URL's id "
                          f"{req.id!r}", f"{rtype}.id")
    if_match = req.headers.get("If-Match")
    version = parse_if_match(if_match) if if_match else None
    stored = repo.update(validated(resource), if_match=version)
    return written(req, stored, 201 if stored.created else 200)


def delete(req: FhirRequest, repo: Repository) -> FhirResponse:
    rtype = check_type(req.resource_type)
    stored = repo.delete(rtype, check_id(req.id, f"{rtype}.id"))  # DELETE Patient/_history is no delete
    headers = {"ETag": f'W/"{stored.version_id}"'} if stored else {}
    return FhirResponse(204, None, headers)
