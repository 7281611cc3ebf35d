"""_include and _revinclude (with :iterate) for one page of search results, in the same read
snapshot as the page (https://hl7.org/fhir/R4/search.html#include).

Nothing is dropped silently: past MAX_INCLUDED resources for one page, or past the bytes left of
the page's budget (budget.MAX_PAGE_BYTES), the rest is counted and the Bundle says so in an
OperationOutcome.
"""
from __future__ import annotations

from sqlalchemy import Connection, false, select

from adapter.fhir.search import Include, SearchRequest
from adapter.store.engines import one_of
from adapter.store.repository import StoredResource
from adapter.store.schema import INDEX_TABLES, resources

__all__ = ["included_resources", "MAX_INCLUDED", "MAX_ROUNDS"]

MAX_INCLUDED = 5_000  # resources included with one page
MAX_ROUNDS = 4  # :iterate goes this many levels deep

_REF = INDEX_TABLES["reference"]


def _forward(conn: Connection, inc: Include, keys: set[tuple[str, str]]) -> set[tuple[str, str]]:
    ids = [rid for rtype, rid in keys if rtype == inc.source]
    if not ids:
        return set()
    query = select(_REF.c.target_type, _REF.c.target_id).where(
        _REF.c.res_type == inc.source, one_of(conn, _REF.c.res_id, ids), _REF.c.target_id.is_not(None))
    if inc.param != "*":
        query = query.where(_REF.c.param == inc.param)
    if inc.target:
        query = query.where(_REF.c.target_type == inc.target)
    return {(str(t), str(i)) for t, i in conn.execute(query.distinct()) if t}


def _reverse(conn: Connection, inc: Include, keys: set[tuple[str, str]]) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    by_type: dict[str, list[str]] = {}
    for rtype, rid in keys:
        if inc.target is None or rtype == inc.target:
            by_type.setdefault(rtype, []).append(rid)
    for rtype, ids in by_type.items():
        query = select(_REF.c.res_id).where(_REF.c.res_type == inc.source, _REF.c.target_type == rtype,
                                            one_of(conn, _REF.c.target_id, ids))
        if inc.param != "*":
            query = query.where(_REF.c.param == inc.param)
        found |= {(inc.source, str(rid)) for (rid,) in conn.execute(query.distinct())}
    return found


def _fetch(conn: Connection, keys: list[tuple[str, str]], budget: int) -> tuple[list[StoredResource], int]:
    """The resources of `keys` until `budget` bytes are used (read a chunk of ids at a time, so
    no more than one chunk past the budget is ever held), and how many did not fit."""
    out: list[StoredResource] = []
    used = 0
    for n in range(0, len(keys), _CHUNK):
        for rtype, ids in sorted(_by_type(keys[n:n + _CHUNK]).items()):
            rows = conn.execute(select(resources.c.res_id, resources.c.version_id, resources.c.last_updated,
                                       resources.c.data).where(resources.c.res_type == rtype,
                                                               one_of(conn, resources.c.res_id, ids),
                                                               resources.c.deleted == false())
                                .order_by(resources.c.res_id))
            for r in rows:
                used += len(r.data or b"")
                if used > budget:
                    return out, len(keys) - len(out)
                out.append(StoredResource(rtype, r.res_id, r.version_id, r.last_updated, False, r.data))
    return out, 0


_CHUNK = 500


def _by_type(keys: list[tuple[str, str]]) -> dict[str, list[str]]:
    by_type: dict[str, list[str]] = {}
    for rtype, rid in keys:
        by_type.setdefault(rtype, []).append(rid)
    return by_type


def included_resources(conn: Connection, request: SearchRequest, page: list[StoredResource],
                       budget: int) -> tuple[list[StoredResource], int]:
    """The resources the page's _include/_revinclude bring within `budget` bytes, and how many
    were left out."""
    seen = {(e.resource_type, e.id) for e in page}
    frontier = set(seen)
    wanted: list[tuple[str, str]] = []
    left_out = 0
    for depth in range(MAX_ROUNDS):
        new: set[tuple[str, str]] = set()
        for inc in request.includes:
            if depth > 0 and not inc.iterate:
                continue
            new |= (_reverse if inc.reverse else _forward)(conn, inc, frontier)
        new -= seen
        if not new:
            break
        room = MAX_INCLUDED - len(wanted)
        ordered = sorted(new)
        wanted += ordered[:max(room, 0)]
        left_out += max(len(ordered) - max(room, 0), 0)
        seen |= new
        frontier = set(ordered[:max(room, 0)])
        if left_out:
            break
    fetched, over = _fetch(conn, wanted, budget)
    return fetched, left_out + over


