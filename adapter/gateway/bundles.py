"""Searchset and history Bundles built around the stored JSON bytes.

Each entry's resource is spliced in as a raw orjson Fragment: nothing is re-parsed or re-modelled
on the read path, and decimals keep their digits.
"""
from __future__ import annotations

import uuid
from datetime import date
from typing import Any
from urllib.parse import urlencode

import orjson

from adapter.fhir.dates import now_instant
from adapter.fhir.outcomes import Issue, operation_outcome
from adapter.fhir.subsetting import subset
from adapter.store.budget import MAX_PAGE_BYTES
from adapter.store.includes import MAX_INCLUDED
from adapter.store.repository import HistoryPage, SearchPage, StoredResource

__all__ = ["searchset", "history_bundle", "http_date", "page_url"]


def http_date(instant: str) -> str:
    """An RFC 7231 date for Last-Modified from a stored instant (always UTC, `...Z`).

    Examples:
        >>> http_date("2026-11-25T13:24:38.870187Z")
        'Wed, 25 Nov 2026 13:24:38 GMT'
    """
    day = date(int(instant[0:4]), int(instant[5:7]), int(instant[8:10]))
    return (f"{_DAYS[day.weekday()]}, {instant[8:10]} {_MONTHS[day.month - 1]} {instant[0:4]} "
            f"{instant[11:19]} GMT")


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def page_url(base: str, path: str, params: list[tuple[str, str]]) -> str:
    query = urlencode(params)
    return f"{base}/{path}" + (f"?{query}" if query else "")


def _bundle(kind: str, total: int | None, links: list[tuple[str, str]], entries: list[dict[str, Any]]) -> bytes:
    bundle: dict[str, Any] = {
        "resourceType": "Bundle", "id": str(uuid.uuid4()), "meta": {"lastUpdated": now_instant()},
        "type": kind,
    }
    if total is not None:
        bundle["total"] = total
    bundle["link"] = [{"relation": rel, "url": url} for rel, url in links]
    if entries:
        bundle["entry"] = entries
    return orjson.dumps(bundle)


def searchset(base: str, page: SearchPage, self_url: str, next_url: str | None,
              warnings: list[Issue], summary: str | None = None, elements: tuple[str, ...] = (),
              previous_url: str | None = None, first_url: str | None = None) -> bytes:
    """The page's matches, then what _include/_revinclude brought (mode include), then the
    warnings; `summary`/`elements` cut every resource down (_summary, _elements)."""
    entries: list[dict[str, Any]] = [
        {"fullUrl": f"{base}/{e.resource_type}/{e.id}",
         "resource": orjson.Fragment(subset(e.data or b"{}", e.resource_type, summary, elements)),
         "search": {"mode": mode}}
        for mode, group in (("match", page.entries), ("include", page.included)) for e in group
    ]
    warnings = [*warnings, *page.notes]
    if page.included_left_out:
        warnings = [*warnings, Issue("too-costly", f"{page.included_left_out} more resources matched "
                                     f"_include/_revinclude than one page returns ({MAX_INCLUDED:,} resources, "
                                     f"{MAX_PAGE_BYTES >> 20} MB with its matches); they are left out: ask for "
                                     "fewer matches per page (_count)", severity="warning")]
    if warnings:
        entries.append({"resource": operation_outcome(warnings), "search": {"mode": "outcome"}})
    links = [("self", self_url)] + [(rel, url) for rel, url in (
        ("first", first_url), ("previous", previous_url), ("next", next_url)) if url]
    return _bundle("searchset", page.total, links, entries)


_STATUS = {"POST": "201 Created", "PUT": "200 OK", "DELETE": "200 OK"}


def _history_entry(base: str, e: StoredResource) -> dict[str, Any]:
    entry: dict[str, Any] = {"fullUrl": f"{base}/{e.resource_type}/{e.id}"}
    if e.data is not None:
        entry["resource"] = orjson.Fragment(e.data)
    method = e.method
    url = e.resource_type if method == "POST" else f"{e.resource_type}/{e.id}"
    status = "201 Created" if method == "PUT" and e.created else _STATUS[method]
    entry["request"] = {"method": method, "url": url}
    entry["response"] = {"status": status, "etag": f'W/"{e.version_id}"',
                         "lastModified": e.last_updated}
    return entry


def history_bundle(base: str, page: HistoryPage, self_url: str, next_url: str | None) -> bytes:
    links = [("self", self_url)] + ([("next", next_url)] if next_url else [])
    return _bundle("history", page.total, links, [_history_entry(base, e) for e in page.entries])
