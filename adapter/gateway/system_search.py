"""Searches across types (https://hl7.org/fhir/R4/http.html#search): the whole system,
`GET [base]?_type=Patient,Observation&...`, and a patient's compartment, `GET Patient/[id]/*`.

Each type is searched on its own, in type-name order, and the pages are joined: the results are
ordered by (type, id) and a cursor is the position of an entry, [type, id], so that following
`next` (or `previous`) visits every match exactly once. For that order _sort is refused here: a
type-level search sorts. A parameter that some searched type does not have is ignored for all of
them (said in the Bundle), or refused under `Prefer: handling=strict`: dropped for one type only,
it would match all of that type.
"""
from __future__ import annotations

from dataclasses import replace
from adapter.fhir.definitions import DATA_TYPES, SERVED_TYPES
from adapter.fhir.outcomes import Issue, bad_request, forbidden
from adapter.fhir.search import SearchRequest, decode_search_cursor, encode_cursor, parse_search
from adapter.gateway.bundles import page_url, searchset
from adapter.gateway.core import FhirRequest, FhirResponse
from adapter.gateway.interactions import check_compartment
from adapter.store.compartment import compartment_types
from adapter.store.repository import Repository, SearchPage, StoredResource

__all__ = ["system_search", "compartment_search_all"]

Position = tuple[str, str | None]  # (type, id); id None: the start of that type


def system_search(req: FhirRequest, repo: Repository) -> FhirResponse:
    return _across(req, repo, SERVED_TYPES, None, "", DATA_TYPES)


def compartment_search_all(req: FhirRequest, repo: Repository) -> FhirResponse:
    patient = check_compartment(req, repo)
    return _across(req, repo, compartment_types(), patient, f"Patient/{patient}/*")


def _types(params: list[tuple[str, str]], allowed: tuple[str, ...], repo: Repository,
           default: tuple[str, ...]) -> list[str]:
    wanted = [t.strip() for k, v in params if k == "_type" for t in v.split(",") if t.strip()]
    unknown = [t for t in wanted if t not in SERVED_TYPES]
    if unknown:
        raise bad_request(f"_type: {', '.join(unknown)} not served here", "_type")
    outside = [t for t in wanted if t not in allowed]
    if outside:
        raise bad_request(f"_type: {', '.join(outside)} not in the Patient compartment", "_type")
    # Without _type, the types this client may search; a type named in _type and outside its
    # scopes is refused by the repository (403), not left out unsaid.
    types = sorted(set(wanted or repo.permitted(default, "s")))
    if not types:
        raise forbidden("this client may search no type: its scopes grant no search (s)")
    return types


def _cursor(params: list[tuple[str, str]]) -> tuple[Position | None, bool]:
    raw = next((v for k, v in params if k == "_cursor"), None)
    if raw is None:
        return None, False
    values, before = decode_search_cursor(raw)
    if len(values) not in (1, 2) or not all(isinstance(v, str) for v in values) or values[0] not in SERVED_TYPES:
        raise bad_request("_cursor: not a cursor of a search across types", "_cursor")
    return (values[0], values[1] if len(values) == 2 else None), before


def _requests(types: list[str], params: list[tuple[str, str]], strict: bool,
              patient: str | None) -> tuple[dict[str, SearchRequest], list[str]]:
    if any(k == "_sort" for k, _ in params):
        raise bad_request("_sort: a search across types is ordered by type and id; search one type "
                          "to sort", "_sort", code="not-supported")
    ignored: list[str] = []
    while True:
        requests = {t: parse_search(t, [(k, v) for k, v in params if k.split(":")[0] not in ignored],
                                    strict=strict) for t in types}
        more = sorted({name for r in requests.values() for name in r.ignored} - set(ignored))
        if not more:
            return {t: replace(r, compartment=patient) for t, r in requests.items()}, ignored
        ignored += more


def _across(req: FhirRequest, repo: Repository, allowed: tuple[str, ...], patient: str | None,
            path: str, default: tuple[str, ...] | None = None) -> FhirResponse:
    """`allowed`: the types `_type` may name; `default`: those searched without it (the
    audit trail only when named: it is no clinical data, and every request adds to it)."""
    types = _types(req.params, allowed, repo, default or allowed)
    position, before = _cursor(req.params)
    params = [(k, v) for k, v in req.params if k not in ("_type", "_cursor")]
    requests, ignored = _requests(types, params, req.prefer("handling") == "strict", patient)
    first = requests[types[0]]
    searched: dict[str, SearchPage] = {}
    if before and position is not None:
        entries, previous, following = _backward(repo, requests, types, position, first.count, searched)
    else:
        entries, previous, following = _forward(repo, requests, types, position, first.count, searched)
    total = _total(repo, requests, types, searched) if first.total != "none" else None
    shown = {(e.resource_type, e.id) for e in entries}  # not what a look-ahead of one match included
    included = [e for page in searched.values() if page.entries and (page.entries[0].resource_type,
                page.entries[0].id) in shown for e in page.included]
    notes = tuple(dict.fromkeys(n for p in searched.values() for n in p.notes))
    page = SearchPage(entries, total, None, included, notes=notes)
    kept = [(k, v) for k, v in req.params if k != "_cursor"]

    def at(where: Position | None, back: bool = False) -> str | None:
        if where is None:
            return None
        return page_url(req.base, path, kept + [("_cursor", encode_cursor(tuple(p for p in where if p), back))])

    warnings = [Issue("not-supported", f"search parameter {name!r} is not one of every searched type's; "
                      "it was ignored", name, severity="warning") for name in ignored]
    warnings += first.notes
    return FhirResponse(200, searchset(req.base, page, page_url(req.base, path, req.params), at(following),
                                       warnings, first.summary, first.elements, at(previous, True),
                                       page_url(req.base, path, kept)))


def _forward(repo: Repository, requests: dict[str, SearchRequest], types: list[str], start: Position | None,
             count: int, searched: dict[str, SearchPage]) -> tuple[list[StoredResource], Position | None,
                                                                   Position | None]:
    entries: list[StoredResource] = []
    following: Position | None = None
    previous: Position | None = None
    for rtype in types:
        if count == 0 or (start is not None and rtype < start[0]):
            continue
        cursor = (start[1],) if start is not None and rtype == start[0] and start[1] else None
        need = count - len(entries)
        # A full page still asks the next type for one match: is there a next page?
        page = repo.search(replace(requests[rtype], cursor=cursor, count=max(need, 1)))
        searched.setdefault(rtype, page)
        if need <= 0:
            if page.entries:
                following = (rtype, None)
                break
            continue
        if page.entries and not entries and start is not None:
            # reached by a link: the page before ends where this one starts (the page's own
            # cursor, not an entry's id: under an exchange policy ids are shared ones, cursors sealed)
            previous = (rtype, page.previous_cursor[-1] if cursor is not None and page.previous_cursor else None)
        entries += page.entries
        if page.next_cursor is not None:
            following = (rtype, page.next_cursor[-1])
            break
    if start is not None and not entries:
        previous = start
    return entries, previous, following


def _backward(repo: Repository, requests: dict[str, SearchRequest], types: list[str], end: Position,
              count: int, searched: dict[str, SearchPage]) -> tuple[list[StoredResource], Position | None,
                                                                Position | None]:
    entries: list[StoredResource] = []
    more = False
    following: Position | None = None
    first: Position | None = None
    for rtype in reversed(types):
        if count == 0 or rtype > end[0] or (rtype == end[0] and end[1] is None):
            continue
        cursor = (end[1],) if rtype == end[0] else None  # None: from the end of the type
        need = count - len(entries)
        page = repo.search(replace(requests[rtype], cursor=cursor, before=True, count=max(need, 1)))
        searched.setdefault(rtype, page)
        if need <= 0:
            more = bool(page.entries)
            if more:
                break
            continue
        if page.entries and not entries:  # the last of this page is the last shown
            following = (rtype, page.next_cursor[-1] if page.next_cursor else None)
        if page.entries:
            first = (rtype, page.previous_cursor[-1] if page.previous_cursor else None)
        entries = page.entries + entries
        if page.previous_cursor is not None:
            more = True
            break
    previous = first if more and entries else None
    return entries, previous, following


def _total(repo: Repository, requests: dict[str, SearchRequest], types: list[str],
           searched: dict[str, SearchPage]) -> int | None:
    """The sum of each type's total (a search's total does not depend on its cursor); None when
    one type's is not known (a broad _total=estimate search)."""
    total = 0
    for rtype in types:
        page = searched.get(rtype) or repo.search(replace(requests[rtype], count=0, cursor=None))
        if page.total is None:
            return None
        total += page.total
    return total
