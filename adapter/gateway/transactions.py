"""Batch and transaction Bundles (https://hl7.org/fhir/R4/http.html#transaction), POST [base].

A transaction is all or nothing: every entry is checked, then processed in one store
transaction in the spec's order (DELETE, POST, PUT, GET); `urn:uuid:` full URLs are given ids
first and every reference to them rewritten; conditional references (`Patient?identifier=...`)
are resolved to the one resource they match. A batch processes each entry on its own, as if it
were a separate request; one failing entry does not stop the others.
"""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson

from adapter.fhir import jsonio
from adapter.fhir.dates import now_instant
from adapter.fhir.definitions import SERVED_TYPES
from adapter.fhir.outcomes import FhirError, Issue, bad_request, not_found, precondition_failed, refused_resource
from adapter.fhir.search import parse_search
from adapter.fhir.ids import check_id
from adapter.fhir.validation import validate
from adapter.gateway.bundles import page_url, searchset
from adapter.gateway.readonly import refuse_write
from adapter.gateway.core import FhirRequest, FhirResponse, Route
from adapter.gateway.interactions import check_type, condition, condition_key, matches, parse_if_match
from adapter.gateway.routes import ROUTES
from adapter.store.integrity import DanglingReferences
from adapter.store.repository import Repository, StoredResource, Transaction

__all__ = ["bundle", "BUNDLE_ROUTES", "BUNDLE_INTERACTIONS", "MAX_BUNDLE_ENTRIES"]

# Entries of one batch or transaction: 1,000 take 1-3 s, well inside a request's time; 23,000
# outlasted the worker. Larger loads go through `fhir-adapter load` or ingest.
MAX_BUNDLE_ENTRIES = 1000
# What the answers of one batch or transaction may add up to: each entry's search is bounded as a
# request's is (store/budget.py, store/includes.py), but 40 of them built 226 MB in 10-21 s.
# Past either, a batch's remaining reads are not run (413 each), a transaction fails (413).
MAX_ANSWER_BYTES = 32 << 20
MAX_ANSWER_INCLUDED = 10_000
_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "GET": 3}


@dataclass
class _Entry:
    index: int
    method: str
    rtype: str
    id: str | None  # from the URL (Type/id)
    query: str  # from the URL (Type?query)
    resource: dict[str, Any] | None
    full_url: str | None
    if_none_exist: str | None
    if_match: str | None

    @property
    def where(self) -> str:
        return f"Bundle.entry[{self.index}]"


def _entries(body: dict[str, Any]) -> Iterator[_Entry]:
    for i, entry in enumerate(body.get("entry") or []):
        where = f"Bundle.entry[{i}]"
        request = entry.get("request") if isinstance(entry, dict) else None
        if not isinstance(request, dict) or not isinstance(request.get("url"), str):
            raise bad_request("each entry needs request.method and request.url", f"{where}.request")
        method = str(request.get("method", "")).upper()
        if method not in _ORDER:
            raise bad_request(f"request.method {request.get('method')!r} is not supported here (GET, POST, "
                              "PUT, DELETE)", f"{where}.request.method", code="not-supported")
        parts = urlsplit(request["url"])
        path = parts.path.strip("/").split("/")
        resource = entry.get("resource")
        if resource is not None and not isinstance(resource, dict):
            raise bad_request("entry.resource must be a JSON object", f"{where}.resource")
        for key in ("ifNoneExist", "ifMatch"):
            if key in request and not isinstance(request[key], str):
                raise bad_request(f"request.{key} must be a string", f"{where}.request.{key}")
        if not isinstance(entry.get("fullUrl", ""), str):
            raise bad_request("fullUrl must be a string", f"{where}.fullUrl")
        yield _Entry(i, method, path[0], path[1] if len(path) > 1 else None, parts.query, resource,
                     entry.get("fullUrl"), request.get("ifNoneExist"), request.get("ifMatch"))


def _check(entry: _Entry) -> None:
    try:
        check_type(entry.rtype)
    except FhirError:
        raise bad_request(f"{entry.rtype!r} is not a type served here", f"{entry.where}.request.url") from None
    refuse_write(entry.rtype, entry.method, f"{entry.where}.request.method")  # also reached by a batch
    if entry.id is not None:
        check_id(entry.id, f"{entry.where}.request.url")
    if entry.method == "POST" and (entry.id is not None or entry.query):
        raise bad_request("a POST entry's url is the type alone (e.g. Patient)", f"{entry.where}.request.url")
    if entry.method in ("POST", "PUT"):
        if entry.resource is None or entry.resource.get("resourceType") != entry.rtype:
            raise bad_request(f"a {entry.method} entry needs a {entry.rtype} resource", f"{entry.where}.resource")
        if entry.method == "PUT" and entry.id is None and not entry.query:
            raise bad_request("a PUT entry's url is Type/id or Type?search", f"{entry.where}.request.url")
    if entry.method == "DELETE" and entry.id is None and not entry.query:
        raise bad_request("a DELETE entry's url is Type/id or Type?search", f"{entry.where}.request.url")


def _validated(entry: _Entry) -> None:
    assert entry.resource is not None
    issues = validate(entry.resource)
    if issues:
        raise refused_resource([Issue(i.code, i.diagnostics, f"{entry.where}.resource.{i.expression}"
                                      if i.expression else f"{entry.where}.resource") for i in issues])


def _references(node: Any) -> Iterator[dict[str, Any]]:
    """Every Reference-shaped object in a resource (a dict with a string `reference`)."""
    if isinstance(node, dict):
        if isinstance(node.get("reference"), str):
            yield node
        for value in node.values():
            yield from _references(value)
    elif isinstance(node, list):
        for value in node:
            yield from _references(value)


def _response(base: str, status: str, stored: StoredResource) -> dict[str, Any]:
    return {"fullUrl": f"{base}/{stored.resource_type}/{stored.id}",
            "resource": orjson.Fragment(stored.data or b"{}"),
            "response": {"status": status, "location": f"{stored.resource_type}/{stored.id}/_history/"
                         f"{stored.version_id}", "etag": f'W/"{stored.version_id}"',
                         "lastModified": stored.last_updated}}


def _bundle(kind: str, entries: list[dict[str, Any]]) -> bytes:
    return orjson.dumps({"resourceType": "Bundle", "id": str(uuid.uuid4()),
                         "meta": {"lastUpdated": now_instant()}, "type": kind, "entry": entries})


def _transaction(req: FhirRequest, repo: Repository, entries: list[_Entry]) -> FhirResponse:
    for entry in entries:
        _check(entry)
        if entry.resource is not None and entry.method in ("POST", "PUT"):
            _validated(entry)
    targets: dict[str, str] = {}  # fullUrl -> Type/id
    keys: list[tuple[str, str]] = []
    conditions = {}
    for entry in entries:
        if entry.method == "POST" and entry.if_none_exist:
            conditions[entry.index] = condition(entry.rtype, entry.if_none_exist, f"{entry.where}.request.ifNoneExist")
        elif entry.method in ("PUT", "DELETE") and entry.id is None:
            conditions[entry.index] = condition(entry.rtype, entry.query, f"{entry.where}.request.url")
        elif entry.id is not None:
            keys.append((entry.rtype, entry.id))
    keys += [condition_key(c) for c in conditions.values()]
    results: dict[int, dict[str, Any]] = {}
    ids: dict[int, tuple[str, bool]] = {}
    try:
        with repo.transaction() as tx:
            tx.lock(keys)
            ids = _assign_ids(tx, entries, conditions, targets)
            _one_write_per_resource(tx, entries, conditions, ids)
            for entry in entries:
                if entry.resource is not None:
                    _rewrite(tx, entry, targets)
            spent = _Spent()
            for entry in sorted(entries, key=lambda e: _ORDER[e.method]):
                results[entry.index] = _apply(req, tx, entry, ids.get(entry.index), spent)
                if error := spent.over():
                    raise error
    except DanglingReferences as error:  # checked at the commit: name the entries' elements
        raise error.located({(e.rtype, ids[e.index][0]): f"{e.where}.resource"
                             for e in entries if e.index in ids}) from None
    return FhirResponse(200, _bundle("transaction-response", [results[e.index] for e in entries]))


def _one_write_per_resource(tx: Transaction, entries: list[_Entry], conditions: dict[int, Any],
                            ids: dict[int, tuple[str, bool]]) -> None:
    """R4 (http.html#trules): a transaction whose DELETE, POST and PUT entries name one resource
    twice, directly or through a condition, fails: their order would decide the outcome."""
    first: dict[tuple[str, str], _Entry] = {}
    for entry in entries:
        if entry.method == "GET":
            continue
        if entry.method == "DELETE":
            if entry.id is not None:
                rid: str | None = entry.id
            else:
                found = matches(tx, conditions[entry.index], f"{entry.where}'s search")
                rid = found[0].id if found else None
        else:
            rid = ids[entry.index][0]
        if rid is None:
            continue
        key = (entry.rtype, rid)
        if key in first:
            raise bad_request(f"{key[0]}/{key[1]} is written by {first[key].where} and by {entry.where}: "
                              "a transaction may change a resource once", f"{entry.where}.request.url")
        first[key] = entry


def _assign_ids(tx: Transaction, entries: list[_Entry], conditions: dict[int, Any],
                targets: dict[str, str]) -> dict[int, tuple[str, bool]]:
    """Each writing entry's id, and whether it exists already (a matched condition)."""
    ids: dict[int, tuple[str, bool]] = {}
    for entry in entries:
        if entry.method not in ("POST", "PUT"):
            continue
        if entry.index in conditions:
            found = matches(tx, conditions[entry.index], f"{entry.where}'s condition")
            if found:
                ids[entry.index] = (found[0].id, True)
            else:  # a conditional PUT that matches nothing creates, with the body's id if any
                given = (entry.resource or {}).get("id") if entry.method == "PUT" else None
                ids[entry.index] = (given or str(uuid.uuid4()), False)
        elif entry.method == "POST":
            ids[entry.index] = (str(uuid.uuid4()), False)
        else:
            ids[entry.index] = (entry.id or "", False)
        if entry.full_url:
            targets[entry.full_url] = f"{entry.rtype}/{ids[entry.index][0]}"
    return ids


def _rewrite(tx: Transaction, entry: _Entry, targets: dict[str, str]) -> None:
    for ref in _references(entry.resource):
        value = ref["reference"]
        if value in targets:
            ref["reference"] = targets[value]
        elif value.startswith("urn:uuid:"):
            raise bad_request(f"{value} is not the fullUrl of any entry of this transaction",
                              f"{entry.where}.resource")
        elif "?" in value and "/" not in value.split("?")[0]:
            rtype, _, query = value.partition("?")
            if rtype not in SERVED_TYPES:
                raise bad_request(f"the conditional reference {value} names a type not served here",
                                  f"{entry.where}.resource")
            found = matches(tx, condition(rtype, query, f"{entry.where}.resource"), value)
            if not found:
                raise precondition_failed(f"the conditional reference {value} matches nothing")
            ref["reference"] = f"{rtype}/{found[0].id}"


def _apply(req: FhirRequest, tx: Transaction, entry: _Entry, assigned: tuple[str, bool] | None,
           spent: _Spent) -> dict[str, Any]:
    if entry.method == "DELETE":
        rid = entry.id
        if rid is None:
            found = matches(tx, condition(entry.rtype, entry.query, entry.where), f"{entry.where}'s search")
            rid = found[0].id if found else None
        stored = tx.delete(entry.rtype, rid) if rid else None
        return {"response": {"status": "204 No Content"} | ({"etag": f'W/"{stored.version_id}"'} if stored else {})}
    if entry.method == "GET":
        if entry.id is not None:
            current = tx.read(entry.rtype, entry.id)
            if current is None:  # in a transaction, a failing entry fails them all
                raise not_found(f"{entry.where}: {entry.rtype}/{entry.id} is not known")
            spent.add(current.data)
            return _response(req.base, "200 OK", current)
        request = parse_search(entry.rtype, parse_qsl(entry.query, keep_blank_values=True))
        page = tx.search(request)
        answer = searchset(req.base, page, page_url(req.base, entry.rtype, request.used_params()), None, [])
        spent.add(answer, len(page.included))
        return {"response": {"status": "200 OK"}, "resource": orjson.Fragment(answer)}
    assert entry.resource is not None and assigned is not None
    rid, exists = assigned
    if entry.method == "POST":
        existing = tx.read(entry.rtype, rid) if exists else None
        if existing is not None:
            return _response(req.base, "200 OK", existing)
        return _response(req.base, "201 Created", tx.create(entry.resource, rid))
    if entry.resource.get("id") not in (None, rid):
        raise bad_request(f"the resource's id {entry.resource['id']!r} is not the entry's {rid!r}",
                          f"{entry.where}.resource.id")
    if_match = parse_if_match(entry.if_match, f"{entry.where}.request.ifMatch") if entry.if_match else None
    if entry.id is None and not exists and entry.resource.get("id") is None:  # matched nothing: the server's id
        return _response(req.base, "201 Created", tx.create(entry.resource, rid))
    stored = tx.update({**entry.resource, "id": rid}, if_match)
    return _response(req.base, "201 Created" if stored.created else "200 OK", stored)


class _Spent:
    """What a batch's or transaction's answers add up to so far, against MAX_ANSWER_*."""

    def __init__(self) -> None:
        self.bytes = self.included = 0

    def add(self, body: bytes | None, included: int = 0) -> None:
        self.bytes += len(body or b"")
        self.included += included

    def over(self) -> FhirError | None:
        if self.bytes <= MAX_ANSWER_BYTES and self.included <= MAX_ANSWER_INCLUDED:
            return None
        return FhirError(413, [Issue("too-costly", f"the answers of this Bundle's reads pass {MAX_ANSWER_BYTES >> 20} "
                                     f"MB or {MAX_ANSWER_INCLUDED:,} included resources: send the reads in "
                                     "smaller Bundles, or on their own (each is paged)")])


def _batch(req: FhirRequest, repo: Repository, entries: list[_Entry]) -> FhirResponse:
    handlers = {(r.method, r.path): r.handler for r in ROUTES}
    out = []
    spent = _Spent()
    for entry in entries:
        try:
            _check(entry)
            if entry.method == "GET" and (error := spent.over()):
                raise error  # this read is not run: the batch's answer is big enough
            path = "/<resource_type>" + ("/<id>" if entry.id else "")
            method = entry.method
            headers = {k: v for k, v in (("If-None-Exist", entry.if_none_exist), ("If-Match", entry.if_match)) if v}
            headers["Prefer"] = "return=representation"
            handler = handlers[(method, path)]
            if method == "GET" and not entry.id:
                handler = handlers[("GET", "/<resource_type>")]
            sub = FhirRequest(req.base, entry.rtype, entry.id, None, parse_qsl(entry.query, keep_blank_values=True),
                              headers, jsonio.dumps(entry.resource) if entry.resource is not None else None)
            result = handler(sub, repo)
            spent.add(result.body, result.included)
            response: dict[str, Any] = {"status": f"{result.status}"}
            for header, key in (("Location", "location"), ("ETag", "etag")):
                if header in result.headers:
                    response[key] = result.headers[header].replace(f"{req.base}/", "")
            item: dict[str, Any] = {"response": response}
            if result.body:
                item["resource"] = orjson.Fragment(result.body)
            out.append(item)
        except FhirError as error:
            out.append({"response": {"status": str(error.status), "outcome": error.outcome()}})
    return FhirResponse(200, _bundle("batch-response", out))


def bundle(req: FhirRequest, repo: Repository) -> FhirResponse:
    if not req.body:
        raise bad_request("POST [base] needs a Bundle of type batch or transaction", code="required")
    body = jsonio.parse(req.body)
    if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
        raise bad_request("POST [base] takes a Bundle", "Bundle")
    kind = body.get("type")
    if kind not in ("batch", "transaction"):
        raise bad_request(f"Bundle.type {kind!r}: only batch and transaction Bundles are processed here",
                          "Bundle.type")
    if not isinstance(body.get("entry", []), list):
        raise bad_request("Bundle.entry must be an array of entries", "Bundle.entry", code="structure")
    if len(body.get("entry") or []) > MAX_BUNDLE_ENTRIES:
        raise FhirError(413, [Issue("too-costly", f"the Bundle has {len(body['entry'])} entries; at most "
                                    f"{MAX_BUNDLE_ENTRIES} are processed in one request", "Bundle.entry")])
    entries = list(_entries(body))
    return _transaction(req, repo, entries) if kind == "transaction" else _batch(req, repo, entries)


BUNDLE_ROUTES: tuple[Route, ...] = (Route("POST", "/", "transaction", bundle),)
BUNDLE_INTERACTIONS = ("transaction", "batch")  # both through the one route
