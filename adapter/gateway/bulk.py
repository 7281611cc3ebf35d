"""Bulk Data export over HTTP (Bulk Data Access IG v2): kick-off at [base]/$export,
[base]/Patient/$export and [base]/Group/{id}/$export (Prefer: respond-async -> 202 with
Content-Location), status polling (202 with X-Progress, then 200 with the manifest), the NDJSON
files, and DELETE to cancel and remove a job. The jobs themselves: adapter/exchange/export.py.
"""
from __future__ import annotations

import pathlib
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson
from flask import Blueprint, Response, current_app, request, send_file

from adapter.exchange.export import (
    ExportRequest, active_jobs, cancel_job, expire_jobs, expires_at, read_job, start_job,
)
from adapter.store.repository import Repository
from adapter.fhir import jsonio
from adapter.fhir.definitions import DATA_TYPES, SERVED_TYPES
from adapter.fhir.outcomes import FhirError, Issue, bad_request, forbidden, not_found
from adapter.fhir.search import parse_search, parse_since
from adapter.gateway.access import client_name, current_access, repository
from adapter.gateway.base import service_base
from adapter.gateway.body import read_body
from adapter.gateway.operation_inputs import parameters_of
from adapter.store.compartment import compartment_types

__all__ = ["register", "EXPORT_OPERATIONS", "export_root"]

EXPORT_DEFINITION = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"
# For the CapabilityStatement: (type or None for system level, operation name).
EXPORT_OPERATIONS = ((None, "export"), ("Patient", "export"), ("Group", "export"))
_FORMATS = ("application/fhir+ndjson", "application/ndjson", "ndjson")
_KNOWN = {"_outputFormat", "_type", "_since", "_typeFilter", "_pretty"}
# Defaults of the app config keys EXPORT_MAX_JOBS (unfinished jobs per client) and
# EXPORT_RETENTION (seconds a finished job and its files are kept).
MAX_JOBS = 2
RETENTION = 24 * 3600


def _client() -> str:
    """Who asks: the authenticated client; with authorisation off, the remote address."""
    return client_name() or request.remote_addr or ""


def _owned(job_id: str) -> dict[str, Any]:
    """The job, if the client asking started it: another client may not poll, download or
    cancel it (its files hold what that client's scopes and site let it see)."""
    job = read_job(export_root(), job_id)
    if job is None or job["status"] == "cancelled":
        raise not_found(f"no export job {job_id}")
    if current_access() is not None and job.get("client", "") != _client():
        raise forbidden(f"export {job_id} was started by another client; only it may poll, download or cancel it")
    return job


def export_root() -> pathlib.Path:
    return pathlib.Path(current_app.config["EXPORT_DIR"])


def _kick_off(level: str, group: str | None = None) -> Response:
    if "respond-async" not in request.headers.get("Prefer", ""):
        raise bad_request("a Bulk Data export runs asynchronously: send Prefer: respond-async", "Prefer")
    params = _export_params()
    values = _values(params)
    store = repository()
    allowed = SERVED_TYPES if level == "system" else compartment_types()
    types = _types(store, values, level, allowed)
    since = parse_since(values["_since"][0]) if values.get("_since") else None
    filters = _type_filters(store, values, types)
    if group is not None:
        store.read("Group", group)  # 404 for an unknown group
    base = service_base()
    path = "$export" if level == "system" else "Patient/$export" if level == "patient" else f"Group/{group}/$export"
    url = f"{base}/{path}" + (f"?{urlencode(params)}" if params else "")
    root, client = export_root(), _client()
    expire_jobs(root, current_app.config.get("EXPORT_RETENTION", RETENTION))
    limit = current_app.config.get("EXPORT_MAX_JOBS", MAX_JOBS)
    if active_jobs(root, client) >= limit:
        raise FhirError(429, [Issue("throttled", f"{limit} export jobs of this client are still running: "
                                    "wait for one to finish, or cancel one (DELETE its status URL)")],
                        {"Retry-After": "10"})
    job = start_job(root, store, ExportRequest(level, types, since, tuple(filters), url, group), client)
    return Response(status=202, headers={"Content-Location": f"{base}/$export-status/{job}"})


def _export_params() -> list[tuple[str, str]]:
    """The kick-off's parameters, from the URL and (POST) a Parameters body; unknown ones refused."""
    params = list(request.args.items(multi=True))
    if request.method == "POST" and (request.content_length or "chunked" in request.headers.get(
            "Transfer-Encoding", "").lower()):
        params += _parameters(read_body(request))
    unknown = sorted({k for k, _ in params} - _KNOWN)
    if unknown:
        raise bad_request(f"export parameters not supported here: {', '.join(unknown)}", unknown[0],
                          code="not-supported")
    return params


def _values(params: list[tuple[str, str]]) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for key, value in params:
        if key == "_typeFilter":  # a search may hold commas: one filter per parameter
            values.setdefault(key, []).append(value)
        else:
            values.setdefault(key, []).extend(v for v in value.split(",") if v)
    fmt = (values.get("_outputFormat") or ["application/fhir+ndjson"])[0]
    if fmt not in _FORMATS:
        raise bad_request(f"_outputFormat {fmt!r}: only {', '.join(_FORMATS)}", "_outputFormat")
    return values


def _types(store: Repository, values: dict[str, list[str]], level: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    """The types exported: without _type, what the client may export (the audit trail only when
    named); a _type outside its scopes is refused. 300 repeats: one file."""
    types = tuple(dict.fromkeys(values.get("_type") or store.permitted(
        DATA_TYPES if level == "system" else allowed, "s")))
    wrong = [t for t in types if t not in allowed]
    if wrong:
        raise bad_request(f"_type: {', '.join(wrong)} cannot be exported at this level", "_type")
    refused = [t for t in types if t in allowed and t not in store.permitted((t,), "s")]
    if refused or not types:
        raise forbidden(f"_type: {', '.join(refused) or 'nothing'} outside this client's scopes: an export "
                        "needs system/[type].s (or .read) for each type", "_type")
    return types


def _type_filters(store: Repository, values: dict[str, list[str]], types: tuple[str, ...]) -> list[tuple[str, str]]:
    filters = []
    for raw in values.get("_typeFilter", []):
        rtype, _, query = raw.partition("?")
        if rtype not in types or not query:
            raise bad_request(f"_typeFilter {raw!r}: expected Type?search for one of the exported types",
                              "_typeFilter")
        # refused now, not when the job runs
        store.screen(parse_search(rtype, parse_qsl(query, keep_blank_values=True), strict=True))
        filters.append((rtype, query))
    return filters


def _parameters(body: bytes) -> list[tuple[str, str]]:
    """The export's inputs from a Parameters body: each a name and a string value (a value of
    any other kind is refused, never turned into text)."""
    out = []
    for p in parameters_of(jsonio.parse(body)):
        value = next((v for k, v in p.items() if k.startswith("value")), None)
        if value is None:
            continue
        if not isinstance(value, str) or not isinstance(p.get("name"), str):
            raise bad_request("an export parameter has a name and a string value (valueString, valueCode, "
                              "valueInstant...)", "Parameters.parameter")
        out.append((p["name"], value))
    return out


def _status(job_id: str) -> Response:
    retention = current_app.config.get("EXPORT_RETENTION", RETENTION)
    expire_jobs(export_root(), retention)
    job = _owned(job_id)
    if job["status"] == "failed":
        raise FhirError(500, [Issue("exception", f"export {job_id} failed; the error has been logged")])
    if job["status"] != "completed":
        return Response(status=202, headers={"X-Progress": job.get("progress", ""), "Retry-After": "1"})
    base = service_base()
    manifest: dict[str, Any] = {
        "transactionTime": job["transactionTime"], "request": job["request"]["request_url"],
        "requiresAccessToken": current_access() is not None,
        "output": [{"type": o["type"], "url": f"{base}/$export-file/{job_id}/{o['file']}", "count": o["count"]}
                   for o in job["output"]],
        "error": [],
        # Bulk Data v2: with _since, the resources deleted since, as Bundles of DELETE entries
        "deleted": [{"type": "Bundle", "url": f"{base}/$export-file/{job_id}/{d['file']}", "count": d["count"]}
                    for d in job.get("deleted", [])]}
    expires = format_datetime(expires_at(job, retention), usegmt=True)
    return Response(orjson.dumps(manifest), 200, content_type="application/json",
                    headers={"Expires": expires, "Cache-Control": "no-store"})


def _delete(job_id: str) -> Response:
    _owned(job_id)
    if not cancel_job(export_root(), job_id):
        raise not_found(f"no export job {job_id}")
    return Response(status=202)


def _file(job_id: str, name: str) -> Response:
    expire_jobs(export_root(), current_app.config.get("EXPORT_RETENTION", RETENTION))
    job = _owned(job_id)
    types = {o["file"]: o["type"] for o in job["output"]} | {d["file"]: d["of"] for d in job.get("deleted", [])} \
        if job["status"] == "completed" else {}
    if name not in types:
        raise not_found(f"no file {name} in export {job_id}")
    access = current_access()  # this token's scopes: a later, narrower token of the client
    if access is not None and not access.scopes.allows(types[name], "s"):  # gets no more than it grants
        raise forbidden(f"the {types[name]} file of an export needs the scope system/{types[name]}.s "
                        f"(or system/*.s); this token has: {access.scopes or 'no scopes'}")
    return send_file(export_root() / job_id / name, mimetype="application/fhir+ndjson", conditional=False)


def register(blueprint: Blueprint) -> None:
    for method in ("GET", "POST"):
        blueprint.add_url_rule("/$export", f"export_system_{method}", lambda: _kick_off("system"), methods=[method])
        blueprint.add_url_rule("/Patient/$export", f"export_patient_{method}", lambda: _kick_off("patient"),
                               methods=[method])
        blueprint.add_url_rule("/Group/<group>/$export", f"export_group_{method}",
                               lambda group: _kick_off("group", group), methods=[method])
    blueprint.add_url_rule("/$export-status/<job_id>", "export_status", _status, methods=["GET"])
    blueprint.add_url_rule("/$export-status/<job_id>", "export_delete", _delete, methods=["DELETE"])
    blueprint.add_url_rule("/$export-file/<job_id>/<name>", "export_file", _file, methods=["GET"])
