"""A parsed `SearchRequest` as SQLAlchemy Core queries, every value a bound parameter.

Each filter is an EXISTS over its index table; values of one filter are ORed, filters ANDed.
Paging is by keyset: the sort keys and id of the last row of a page, so that following `next`
visits every match exactly once (https://hl7.org/fhir/R4/search.html#sort).

A search's values go through `Slots` first (search_values.py): the statements are built from
its shape and bound parameters only, so that statements.py runs the SQL text of one shape for
any values, built and compiled once.
"""
from __future__ import annotations

import decimal
from dataclasses import replace
from typing import Any

from sqlalchemy import (
    BindParameter, ColumnElement, Select, and_, bindparam, case, exists, false, func, literal, not_, or_, select,
    true,
)
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.sql.elements import ColumnElement as _Col
from sqlalchemy.sql.util import find_tables
from sqlalchemy.sql.visitors import replacement_traverse
from sqlalchemy.types import NullType

from adapter.fhir.dates import MAX, MIN
from adapter.fhir.outcomes import bad_request
from adapter.fhir.search import Filter, SearchRequest, SortKey
from adapter.fhir.units import UnitError, factor
from adapter.store.compartment import in_compartment
from adapter.store.schema import INDEX_TABLES, resources
from adapter.store.search_values import normalize_value, value_clause

__all__ = ["Slots", "build_queries", "breadth_query", "sort_columns", "matching_ids", "with_comparable_units",
           "ordered_driver", "measures_breadth", "ESTIMATE_BOUND", "BROAD"]

ESTIMATE_BOUND = 10_000  # _total=estimate counts this far, then gives no total
BROAD = 1_000  # a driving filter with more index entries than this makes a broad search


class Slots:
    """A search's bound values (`values`, named fv0, fv1, ...) and its `shape`: what its SQL
    depends on besides them. Two searches of one shape run the same SQL text."""

    def __init__(self, request: SearchRequest) -> None:
        self.values: list[Any] = []
        self._of: dict[int, list[tuple[Any, tuple[int, ...]]]] = {}
        self._binds: dict[int, BindParameter[Any]] = {}
        filters = tuple(self._filter(f) for f in request.filters)
        self._cursor: list[int | None] = []
        if request.cursor is not None:
            if len(request.cursor) != len(request.sort) + 1:
                raise bad_request("_cursor does not belong to this search", "_cursor")
            self._cursor = [None if v is None else self._add(v) for v in request.cursor]
        self._patient = None if request.compartment is None else self._add(request.compartment)
        self.shape = (request.resource_type, filters, tuple((k.code, k.type, k.descending) for k in request.sort),
                      request.count, request.total, tuple(i is None for i in self._cursor), request.before,
                      self._patient is not None, ESTIMATE_BOUND, BROAD)

    def _add(self, value: Any) -> int:
        self.values.append(value)
        return len(self.values) - 1

    def _filter(self, f: Filter) -> Any:
        if f.type in ("chain", "has"):
            return f.code, f.type, f.target, tuple(self._filter(c) for c in (f.chain, *f.also) if c is not None)
        entries = []
        for value in f.values:
            start = len(self.values)
            shape = normalize_value(f, value, self.values)
            entries.append((shape, tuple(range(start, len(self.values)))))
        self._of[id(f)] = entries
        return f.code, f.type, f.modifier, f.components, tuple(shape for shape, _ in entries)

    def bind(self, i: int) -> BindParameter[Any]:
        """A parameter without a type: compared with a column, it takes the column's."""
        if i not in self._binds:
            self._binds[i] = bindparam(f"fv{i}", self.values[i], type_=NullType())
        return self._binds[i]

    def params(self) -> dict[str, Any]:
        return {f"fv{i}": v for i, v in enumerate(self.values)}

    def clause(self, f: Filter, t: Any, only: int | None = None) -> ColumnElement[bool]:
        """The values of `f` on its index table `t`, ORed (`only`: that one value)."""
        entries = self._of[id(f)] if only is None else self._of[id(f)][only:only + 1]
        return or_(*(value_clause(f, t, shape, [self.bind(i) for i in at]) for shape, at in entries))

    def cursor(self) -> list[Any]:
        return [None if i is None else self.bind(i) for i in self._cursor]

    def patient(self) -> Any:
        return None if self._patient is None else self.bind(self._patient)


# How selective a filter usually is: the most selective one drives the query.
_SELECTIVITY = {"_id": 0, "identifier": 1, "patient": 2, "subject": 2}
_TYPE_SELECTIVITY = {"reference": 3, "string": 4, "composite": 5, "date": 5, "quantity": 6, "number": 6,
                     "uri": 7, "token": 8}


def _driving_filter(filters: tuple[Filter, ...]) -> Filter | None:
    candidates = [f for f in filters if f.modifier not in ("missing", "not")]
    return min(candidates, default=None, key=lambda f: 1 if f.type in ("chain", "has") else _SELECTIVITY.get(
        f.code, _TYPE_SELECTIVITY.get(f.type, 9)))


def _param(f: Filter) -> str:
    """The index rows a filter reads: :identifier and :of-type have rows of their own."""
    return f"{f.code}:{f.modifier}" if f.modifier in ("identifier", "of-type") else f.code


def _index_table(f: Filter) -> Any:
    return INDEX_TABLES["token" if f.modifier == "identifier" else f.type]


def matching_ids(f: Filter, rtype: str, s: Slots) -> Select[Any]:
    """Ids of `rtype` resources a (chained) filter matches, as a subquery."""
    ref = INDEX_TABLES["reference"]
    if f.type == "chain":  # subject:Patient.gender=f: references to Patients that match
        assert f.chain is not None and f.target is not None
        return select(ref.c.res_id).where(ref.c.res_type == rtype, ref.c.param == f.code,
                                          ref.c.target_type == f.target,
                                          *(ref.c.target_id.in_(matching_ids(c, f.target, s))
                                            for c in (f.chain, *f.also)))
    if f.type == "has":  # _has:Observation:subject:code=x: targets of matching Observations
        assert f.chain is not None and f.target is not None
        return select(ref.c.target_id).where(ref.c.res_type == f.target, ref.c.param == f.code,
                                             ref.c.target_type == rtype,
                                             *(ref.c.res_id.in_(matching_ids(c, f.target, s))
                                               for c in (f.chain, *f.also)))
    if f.modifier in ("missing", "not"):
        raise bad_request(f"{f.code}:{f.modifier} is not supported inside a chain or _has", f.code,
                          code="not-supported")
    t = _index_table(f)
    return select(t.c.res_id).where(t.c.res_type == rtype, t.c.param == _param(f), s.clause(f, t))


def _filter_clause(f: Filter, rtype: str, s: Slots, driving: bool, walk: bool = False) -> ColumnElement[bool]:
    """One filter. The driving filter is an uncorrelated IN-subquery, evaluated once through its
    index table's lookup index; the others are EXISTS probes per candidate resource, so a
    selective filter (one patient) is never intersected with a broad one (a common code) by
    materialising the broad one."""
    if f.type in ("chain", "has"):  # driving or not, an uncorrelated IN (evaluated once)
        return resources.c.res_id.in_(matching_ids(f, rtype, s))
    # No alias: each subquery has its own FROM, and aliasing copies every column (slow).
    t = _index_table(f)
    owner = [t.c.res_type == rtype, t.c.param == _param(f)]
    probe = [*owner, t.c.res_id == resources.c.res_id]
    if f.modifier == "missing":
        present = exists().where(*probe)
        return not_(present) if f.values[0][0] else present
    matches = s.clause(f, t)
    if driving:
        return resources.c.res_id.in_(select(t.c.res_id).where(*owner, matches))
    if walk and f.modifier != "not":
        # A scalar subquery with LIMIT is probed row by row: PostgreSQL would turn an EXISTS
        # into a hash semi-join over every match, then sort them all for one page.
        return select(literal(1)).where(*probe, matches).limit(1).scalar_subquery().is_not(None)
    matching = exists().where(*probe, matches)
    return not_(matching) if f.modifier == "not" else matching  # :not also matches no value


def _base(request: SearchRequest, s: Slots, probe: bool = False,
          skip: Filter | None = None) -> list[ColumnElement[bool]]:
    rtype = request.resource_type
    driving = None if probe else _driving_filter(request.filters)
    return [resources.c.res_type == rtype, resources.c.deleted == false(),
            *(_filter_clause(f, rtype, s, f is driving, probe) for f in request.filters if f is not skip),
            *([in_compartment(rtype, [s.patient()])] if request.compartment is not None else [])]


def ordered_driver(request: SearchRequest) -> Filter | None:
    """The driving filter when its index rows come in id order: one value that fixes every
    lookup column before res_id (a patient's reference, a code with its system, an exact string
    or uri) in a search without _sort. The page then walks those rows in id order and stops at
    the page, whatever the number of matches; an IN-subquery would gather every match first."""
    if request.sort:
        return None
    f = _driving_filter(request.filters)
    if f is None or len(f.values) != 1 or f.type in ("chain", "has", "composite"):
        return None
    value = f.values[0]
    if f.type == "reference" and not f.modifier:
        return f if value[0] and value[1] is not None else None
    if (f.type == "token" or f.modifier == "identifier") and f.modifier != "text":
        return f if value[1] is not None and value[0] else None
    if (f.type == "string" and f.modifier == "exact") or (f.type == "uri" and not f.modifier):
        return f
    return None


def _walk(f: Filter, request: SearchRequest, s: Slots) -> tuple[Any, list[ColumnElement[bool]], Any]:
    """The driving filter's index rows (an alias: probes of the same table stay correlated), the
    conditions of its walk, and those rows joined to `resources`."""
    d = _index_table(f).alias("drive")
    walk = [d.c.res_type == request.resource_type, d.c.param == _param(f), s.clause(f, d, only=0)]
    return d, walk, d.join(resources, and_(resources.c.res_type == d.c.res_type, resources.c.res_id == d.c.res_id))


def _by_walk(d: Any) -> Any:
    return lambda element: d.c.res_id if element is resources.c.res_id else None


def _driven_count(f: Filter, request: SearchRequest, s: Slots, bound: int | None) -> Select[Any]:
    """The matches counted (up to `bound` + 1) by the same walk, the other filters probed by the
    walked id: no IN-list of every match, no read of `resources` (a deleted resource has no
    index rows)."""
    d, walk, _ = _walk(f, request, s)
    rtype = request.resource_type
    probes = [*(_filter_clause(g, rtype, s, False) for g in request.filters if g is not f),
              *([in_compartment(rtype, [s.patient()])] if request.compartment is not None else [])]
    by_walk: list[Any] = [replacement_traverse(c, {}, _by_walk(d)) for c in probes]
    ids = select(d.c.res_id).where(*walk, *by_walk).distinct()
    assert all(resources not in find_tables(c, check_columns=True) for c in by_walk)
    return select(func.count()).select_from((ids if bound is None else ids.limit(bound + 1)).subquery())


def _driven(f: Filter, request: SearchRequest, s: Slots, conditions: list[ColumnElement[bool]],
            lateral: bool) -> Select[Any]:
    """The page driven by a walk of `f`'s lookup index in id order, joined to `resources` (the
    other conditions), stopped by the LIMIT. DISTINCT: a resource may hold the same index row
    twice. SQLite: DISTINCT rows (a b-tree of the rows returned, not of every match).
    PostgreSQL: DISTINCT ON the walked id, each id's resource in a LATERAL subquery; joined
    plainly, it planned a merge join over every resource of the type, blind to where one
    patient's ids lie."""
    d, walk, joined = _walk(f, request, s)
    if request.cursor is not None:
        walk.append(d.c.res_id > s.cursor()[-1])
    columns = (resources.c.res_id, resources.c.version_id, resources.c.last_updated, resources.c.data)
    if not lateral:
        drive_id = d.c.res_id.label("drive_id")
        return (select(*columns, drive_id).select_from(joined).where(*walk, *conditions).distinct()
                .order_by(drive_id).limit(request.count + 1))
    ids = select(d.c.res_id).where(*walk).subquery("walk")
    hit = select(*columns).where(resources.c.res_id == ids.c.res_id, *conditions).limit(1).lateral("hit")
    return (select(*hit.c).select_from(ids.join(hit, true())).ext(distinct_on(ids.c.res_id))
            .order_by(ids.c.res_id).limit(request.count + 1))


def sort_columns(request: SearchRequest) -> list[tuple[_Col[Any], bool]]:
    """(expression, descending) per sort key; resources without a value sort last."""
    columns = []
    for key in request.sort:
        columns.append((_sort_expr(key, request.resource_type), key.descending))
    return columns


def _sort_expr(key: SortKey, rtype: str) -> _Col[Any]:
    if key.code == "_lastUpdated":
        return resources.c.last_updated
    if key.code == "_id":
        return resources.c.res_id
    t = INDEX_TABLES[key.type]
    if key.type == "token":
        column = t.c.code
    elif key.type == "date":
        column = t.c.high if key.descending else t.c.low
    else:
        column = t.c.value
    agg = func.max(column) if key.descending else func.min(column)
    sub = select(agg).where(t.c.res_type == rtype, t.c.res_id == resources.c.res_id,
                            t.c.param == key.code)
    if key.type == "date":  # open period ends carry sentinels; they sort like missing values
        sub = sub.where(column != (MAX if key.descending else MIN))
    return sub.scalar_subquery()


def _after(keys: list[tuple[_Col[Any], bool]], cursor: list[Any]) -> ColumnElement[bool]:
    """Rows strictly after the cursor in (keys..., id) order with NULLs last."""
    *values, last_id = cursor
    clause: ColumnElement[bool] = resources.c.res_id > last_id
    for (column, desc), value in reversed(list(zip(keys, values, strict=True))):
        if value is None:
            clause = and_(column.is_(None), clause)
        else:
            beyond = column < value if desc else column > value
            clause = or_(beyond, column.is_(None), and_(column == value, clause))
    return clause


UCUM = "http://unitsofmeasure.org"


def with_comparable_units(request: SearchRequest, stored_codes: Any) -> SearchRequest:
    """Quantity values in UCUM also match values stored in another unit UCUM can convert to:
    `value-quantity=ge800|http://unitsofmeasure.org|mg/dL` matches 8.5 g/L. `stored_codes(code)`
    lists the UCUM codes the store holds for a parameter (composite: for its value component)."""
    filters = []
    for f in request.filters:
        composite = f.components[1:] == ("quantity",)
        if (f.type != "quantity" and not composite) or f.modifier:
            filters.append(f)
            continue
        values = list(f.values)
        for value in f.values:
            prefix, number, system, code = value[1] if composite else value
            if code is None or system not in (None, UCUM):
                continue
            for other in stored_codes(f.code, composite):
                if other == code:
                    continue
                try:
                    ratio = factor(code, other)
                except (UnitError, ValueError):
                    continue  # not comparable (or not UCUM): only the same unit matches
                converted = (prefix, float(decimal.Decimal(repr(number)) * ratio), UCUM, other)
                values.append((value[0], converted) if composite else converted)
        filters.append(replace(f, values=tuple(values)))
    return replace(request, filters=tuple(filters))


def measures_breadth(request: SearchRequest, narrow: bool = False) -> bool:
    """Whether `breadth_query` has a query for this search."""
    driving = _driving_filter(request.filters)
    return not (driving is None or driving.type in ("chain", "has") or (driving.code in _SELECTIVITY and not narrow))


def breadth_query(request: SearchRequest, bound: int | None = None, narrow: bool = False,
                  slots: Slots | None = None) -> Select[Any] | None:
    """How many index entries the driving filter has, counted up to `bound` (BROAD) + 1 (an
    index range walk, never more): past BROAD the search is broad (`build_queries(probe=True)`).
    None for a filter narrow by nature (one patient's, one id's, one identifier's), unless
    `narrow`: a patient may have many entries too."""
    if not measures_breadth(request, narrow):
        return None
    driving = _driving_filter(request.filters)
    assert driving is not None
    s = slots or Slots(request)
    t = _index_table(driving)
    entries = select(literal(1)).where(t.c.res_type == request.resource_type, t.c.param == _param(driving),
                                       s.clause(driving, t))
    return select(func.count()).select_from(entries.limit((BROAD if bound is None else bound) + 1).subquery())


def _narrow(request: SearchRequest) -> bool:
    driving = _driving_filter(request.filters)
    return driving is not None and driving.code in _SELECTIVITY and driving.type not in ("chain", "has")


def build_queries(request: SearchRequest, probe: bool = False, ordered: str | None = None,
                  slots: Slots | None = None) -> tuple[Select[Any], Select[Any]]:
    """The page query (count + 1 rows, to know whether there is a next page) and the count.

    `probe`: every filter an EXISTS probe, none driving. For a broad search without _sort this
    walks the type's resources in id order and stops at the page: with >= ESTIMATE_BOUND matches
    among N resources, a page of 20 costs about 20 * N / ESTIMATE_BOUND probes, where driving
    from the index would gather and sort every match first.

    `ordered` (the dialect's name): a page without _sort whose driving filter's index rows
    come in id order (`ordered_driver`) walks them and stops at the page (`_driven`); else,
    and for the page before a cursor, the driving filter is an IN-subquery."""
    s = slots or Slots(request)
    keys = sort_columns(request)
    base = _base(request, s, probe)
    drive = None if probe or ordered is None else ordered_driver(request)
    conditions = _base(request, s, probe, skip=drive) if drive is not None else list(base)
    if request.cursor is not None:
        conditions.append(_after(keys, s.cursor()))
    order: list[Any] = []
    for column, desc in keys:
        order.append(case((column.is_(None), 1), else_=0))
        order.append(column.desc() if desc else column.asc())
    order.append(resources.c.res_id.asc())
    labelled = [column.label(f"k{i}") for i, (column, _) in enumerate(keys)]
    if drive is not None:
        page = _driven(drive, request, s, conditions, lateral=ordered == "postgresql")
    else:
        page = (select(resources.c.res_id, resources.c.version_id, resources.c.last_updated, resources.c.data,
                       *labelled).where(*conditions).order_by(*order).limit(request.count + 1))
    bound = ESTIMATE_BOUND if request.total == "estimate" else None
    if drive is not None:
        count = _driven_count(drive, request, s, bound)
    elif bound is not None:  # counted up to a bound: cheap however broad the search
        bounded = select(literal(1)).select_from(resources).where(*base).limit(bound + 1).subquery()
        count = select(func.count()).select_from(bounded)
    else:
        count = select(func.count()).select_from(resources).where(*base)
    if bound is not None and _narrow(request):  # a patient with more entries than BROAD is broad too
        entries = breadth_query(request, narrow=True, slots=s)
        assert entries is not None
        count = select(case((entries.scalar_subquery() > BROAD, -1), else_=count.scalar_subquery()))
    return page, count
