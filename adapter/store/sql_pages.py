"""One page of a search on a connection: its rows in order, how many match (when that is
worth counting), the cursors before and after it, and its included resources; the statements
come from search_sql.py, compiled once per shape (statements.py)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, select

from adapter.fhir.search import SearchRequest
from adapter.store import statements
from adapter.store.budget import MAX_PAGE_BYTES, fitting
from adapter.store.includes import included_resources
from adapter.store.paging import backward_queries, row_key
from adapter.store.repository import SearchPage, StoredResource
from adapter.store.schema import INDEX_TABLES
from adapter.store.search_sql import (
    BROAD, ESTIMATE_BOUND, UCUM, Slots, breadth_query, build_queries, measures_breadth, ordered_driver,
    with_comparable_units,
)

__all__ = ["search_page"]


def search_page(conn: Connection, request: SearchRequest) -> SearchPage:
    if _compares_units(request):
        request = with_comparable_units(request, lambda code, composite: _ucum_codes(
            conn, request.resource_type, code, composite))
    slots = Slots(request)  # its values; its statements by shape (statements.py)

    def queries(probe: bool = False) -> tuple[Any, Any]:  # forward: an index walk in id order where it can
        if request.before:
            return backward_queries(request, probe, slots=slots)
        return build_queries(request, probe, ordered=conn.dialect.name, slots=slots)

    broad = measures_breadth(request) and statements.run(
        conn, "breadth", slots, lambda: _present(breadth_query(request, slots=slots))).scalar_one() > BROAD
    probe = broad and not request.sort and (request.before or ordered_driver(request) is None)
    rows = statements.run(conn, ("page", probe), slots, lambda: queries(probe)[0]).all() \
        if request.count > 0 else []
    more = len(rows) > request.count
    window = rows[:request.count]  # nearest the cursor first, either way
    if (fits := fitting(window, MAX_PAGE_BYTES)) < len(window):
        window, more = window[:fits], True  # the rest on the next page
    total = _total(conn, request, slots, queries, broad, len(rows), more)
    page = window[::-1] if request.before else window  # read last-first
    entries = [StoredResource(request.resource_type, r.res_id, r.version_id, r.last_updated,
                              False, r.data) for r in page]
    next_cursor, previous_cursor = _cursors(request, page, more)
    room = MAX_PAGE_BYTES - sum(len(e.data or b"") for e in entries)
    included, left_out = included_resources(conn, request, entries, room) if request.includes else ([], 0)
    return SearchPage(entries, total, next_cursor, included, left_out, previous_cursor)


def _compares_units(request: SearchRequest) -> bool:
    """A quantity search with a unit: converted to every comparable unit the index holds."""
    return any((f.type == "quantity" and any(v[3] for v in f.values))
               or (f.components[1:] == ("quantity",) and any(v[1][3] for v in f.values))
               for f in request.filters if not f.modifier)


def _ucum_codes(conn: Connection, rtype: str, param: str, composite: bool = False) -> list[str]:
    q = INDEX_TABLES["composite" if composite else "quantity"]
    code, system = (q.c.value_code, q.c.value_system) if composite else (q.c.code, q.c.system)
    return [str(c) for (c,) in conn.execute(select(code).where(
        q.c.res_type == rtype, q.c.param == param, system == UCUM).distinct()) if c]


def _total(conn: Connection, request: SearchRequest, slots: Slots, queries: Any, broad: bool, found: int,
           more: bool) -> int | None:
    if not (request.total == "accurate" or (request.total == "estimate" and not broad)):
        return None
    if (request.cursor is None and not request.before and request.count > 0 and not more
            and (request.total == "accurate" or found <= ESTIMATE_BOUND)):
        return found  # every match is on this first page: nothing to count
    total = int(statements.run(conn, "count", slots, lambda: queries()[1]).scalar_one())
    if request.total == "estimate" and not 0 <= total <= ESTIMATE_BOUND:
        return None  # an estimate is not worth counting further (-1: not counted)
    return total


def _cursors(request: SearchRequest, page: Sequence[Any], more: bool) -> tuple[Any, Any]:
    """(next, previous) cursors of a page read forward, or backward (`before`)."""
    keys = len(request.sort)
    if request.before:  # what follows is where the client came from; before, if there was more
        return (row_key(page[-1], keys) if page else None), (row_key(page[0], keys) if page and more else None)
    following = row_key(page[-1], keys) if more and page else None
    previous = None
    if request.cursor is not None:  # a page reached by `next` has one before it
        previous = row_key(page[0], keys) if page else request.cursor
    return following, previous


def _present(query: Any) -> Any:
    assert query is not None
    return query
