"""A parsed `SearchRequest` as one SQLAlchemy Core query (bound parameters only).

Each filter is an EXISTS over its index table; values of one filter are ORed, filters ANDed.
Paging is by keyset: the sort keys and id of the last row of a page, so that following `next`
visits every match exactly once (https://hl7.org/fhir/R4/search.html#sort).
"""
from __future__ import annotations

import decimal
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

from sqlalchemy import (
    ColumnElement, Select, and_, case, exists, false, func, literal, not_, or_, select, true,
)
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.sql.elements import ColumnElement as _Col

from adapter.fhir.dates import MAX, MIN
from adapter.fhir.extract import index_key, normalize_string
from adapter.fhir.outcomes import bad_request
from adapter.fhir.search import Filter, SearchRequest, SortKey
from adapter.fhir.units import UnitError, factor
from adapter.store.compartment import in_compartment
from adapter.store.schema import INDEX_TABLES, resources

__all__ = ["build_queries", "breadth_query", "sort_columns", "matching_ids", "with_comparable_units",
           "ordered_driver", "ESTIMATE_BOUND", "BROAD"]

ESTIMATE_BOUND = 10_000  # _total=estimate counts this far, then gives no total
BROAD = 1_000  # a driving filter with more index entries than this makes a broad search


def _date(t: Any, prefix: str, low: str, high: str) -> ColumnElement[bool]:
    # https://hl7.org/fhir/R4/search.html#prefix: comparisons of the resource's range with the
    # search value's range.
    match prefix:
        case "eq":
            return and_(t.c.low >= low, t.c.high <= high)
        case "ne":
            return or_(t.c.low < low, t.c.high > high)
        case "gt":
            return t.c.high > high
        case "lt":
            return t.c.low < low
        case "ge":
            return t.c.high >= low
        case "le":
            return t.c.low <= high
        case "sa":
            return t.c.low > high
        case "eb":
            return t.c.high < low
        case _:  # ap: the ranges overlap
            return and_(t.c.low <= high, t.c.high >= low)


def _number(column: Any, prefix: str, value: float) -> ColumnElement[bool]:
    # Implicit precision of the search value (search.html#number): 100 means [99.5, 100.5).
    text = repr(value)
    decimals = len(text.split(".")[1]) if "." in text and "e" not in text else 0
    half = 0.5 * 10 ** -decimals if not float(value).is_integer() else 0.5
    match prefix:
        case "eq" | "ap":
            return and_(column >= value - half, column < value + half)
        case "ne":
            return or_(column < value - half, column >= value + half)
        case "gt" | "sa":
            return column > value
        case "lt" | "eb":
            return column < value
        case "ge":
            return column >= value
        case _:
            return column <= value


def _token_clause(system_column: Any, code_column: Any, system: Any, code: Any) -> ColumnElement[bool]:
    system, code = index_key(system), index_key(code)
    parts = []
    if code is not None:
        parts.append(code_column == code)
    if system == "":
        parts.append(system_column.is_(None))
    elif system is not None:
        parts.append(system_column == system)
    return and_(*parts) if parts else true()


def _composite_clause(f: Filter, t: Any, value: tuple[Any, ...]) -> ColumnElement[bool]:
    """Both components on the same row, i.e. from the same element instance."""
    (system, code), other = value
    clause = _token_clause(t.c.system, t.c.code, system, code)
    kind = f.components[1]
    if kind == "token":
        return and_(clause, _token_clause(t.c.value_system, t.c.value_code, *other))
    if kind == "string":
        return and_(clause, t.c.value_code.startswith(index_key(normalize_string(other[0])), autoescape=True))
    if kind == "date":  # `_date` compares columns named low and high
        columns = SimpleNamespace(c=SimpleNamespace(low=t.c.value_low, high=t.c.value_high))
        return and_(clause, _date(columns, *other))
    return and_(clause, _quantity_clause(t.c.value_number, t.c.value_system, t.c.value_code, t.c.value_unit,
                                         *other))


def _quantity_clause(number_col: Any, system_col: Any, code_col: Any, unit_col: Any, prefix: str,
                     number: Any, system: str | None, code: str | None) -> ColumnElement[bool]:
    """`[prefix]number|system|code`: a code without a system also matches the unit's text."""
    parts = [_number(number_col, prefix, number)]
    if code is not None:
        parts.append(or_(code_col == code, and_(code_col.is_(None), unit_col == code))
                     if system is None else code_col == code)
    if system is not None:
        parts.append(system_col == system)
    return and_(*parts)


def _value_clause(f: Filter, t: Any, value: tuple[Any, ...]) -> ColumnElement[bool]:
    if f.type == "composite":
        return _composite_clause(f, t, value)
    if f.type == "token" or f.modifier == "identifier":
        system, code = value
        if f.modifier == "text":
            return func.lower(t.c.text).contains(str(code).lower(), autoescape=True)
        system, code = index_key(system), index_key(code)
        parts = []
        if code is not None:
            parts.append(t.c.code == code)
        if system == "":
            parts.append(t.c.system.is_(None))
        elif system is not None:
            parts.append(t.c.system == system)
        return and_(*parts) if parts else true()
    if f.type == "string":
        text = index_key(normalize_string(value[0]))
        if f.modifier == "exact":
            return t.c.value == text  # the index keeps the case-folded form
        if f.modifier == "contains":
            return t.c.value.contains(text, autoescape=True)
        return t.c.value.startswith(text, autoescape=True)
    if f.type == "uri":
        value = (index_key(value[0]),)
        if f.modifier == "below":
            return t.c.value.startswith(value[0], autoescape=True)
        if f.modifier == "above":
            # A stored URL that is a prefix of the value; compared by substring, not LIKE, so
            # that a '%' or '_' stored in a URL is no wildcard.
            return func.substr(literal(value[0]), 1, func.length(t.c.value)) == t.c.value
        return t.c.value == value[0]
    if f.type == "date":
        return _date(t, *value)
    if f.type == "reference":
        rtype, rid, url = value
        if rid is None:
            return t.c.url == url
        clause = t.c.target_id == index_key(rid)
        return and_(clause, t.c.target_type == rtype) if rtype else clause
    if f.type == "quantity":
        return _quantity_clause(t.c.value, t.c.system, t.c.code, t.c.unit, *value)
    return _number(t.c.value, value[0], value[1])  # number


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


def matching_ids(f: Filter, rtype: str) -> Select[Any]:
    """Ids of `rtype` resources a (chained) filter matches, as a subquery."""
    ref = INDEX_TABLES["reference"]
    if f.type == "chain":  # subject:Patient.gender=f: references to Patients that match
        assert f.chain is not None and f.target is not None
        return select(ref.c.res_id).where(ref.c.res_type == rtype, ref.c.param == f.code,
                                          ref.c.target_type == f.target,
                                          *(ref.c.target_id.in_(matching_ids(c, f.target))
                                            for c in (f.chain, *f.also)))
    if f.type == "has":  # _has:Observation:subject:code=x: targets of matching Observations
        assert f.chain is not None and f.target is not None
        return select(ref.c.target_id).where(ref.c.res_type == f.target, ref.c.param == f.code,
                                             ref.c.target_type == rtype,
                                             *(ref.c.res_id.in_(matching_ids(c, f.target))
                                               for c in (f.chain, *f.also)))
    if f.modifier in ("missing", "not"):
        raise bad_request(f"{f.code}:{f.modifier} is not supported inside a chain or _has", f.code,
                          code="not-supported")
    t = _index_table(f)
    return select(t.c.res_id).where(t.c.res_type == rtype, t.c.param == _param(f),
                                    or_(*(_value_clause(f, t, v) for v in f.values)))


def _filter_clause(f: Filter, rtype: str, driving: bool, walk: bool = False) -> ColumnElement[bool]:
    """One filter. The driving filter is an uncorrelated IN-subquery, evaluated once through its
    index table's lookup index; the others are EXISTS probes per candidate resource, so a
    selective filter (one patient) is never intersected with a broad one (a common code) by
    materialising the broad one."""
    if f.type in ("chain", "has"):  # driving or not, an uncorrelated IN (evaluated once)
        return resources.c.res_id.in_(matching_ids(f, rtype))
    # No alias: each subquery has its own FROM, and aliasing copies every column (slow).
    t = _index_table(f)
    owner = [t.c.res_type == rtype, t.c.param == _param(f)]
    probe = [*owner, t.c.res_id == resources.c.res_id]
    if f.modifier == "missing":
        present = exists().where(*probe)
        return not_(present) if f.values[0][0] else present
    matches = or_(*(_value_clause(f, t, v) for v in f.values))
    if driving:
        return resources.c.res_id.in_(select(t.c.res_id).where(*owner, matches))
    if walk and f.modifier != "not":
        # A scalar subquery with LIMIT is probed row by row: PostgreSQL would turn an EXISTS
        # into a hash semi-join over every match, then sort them all for one page.
        return select(literal(1)).where(*probe, matches).limit(1).scalar_subquery().is_not(None)
    matching = exists().where(*probe, matches)
    return not_(matching) if f.modifier == "not" else matching  # :not also matches no value


def _base(request: SearchRequest, probe: bool = False, skip: Filter | None = None) -> list[ColumnElement[bool]]:
    rtype = request.resource_type
    driving = None if probe else _driving_filter(request.filters)
    return [resources.c.res_type == rtype, resources.c.deleted == false(),
            *(_filter_clause(f, rtype, f is driving, probe) for f in request.filters if f is not skip),
            *([in_compartment(rtype, [request.compartment])] if request.compartment is not None else [])]


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


def _driven(f: Filter, request: SearchRequest, conditions: list[ColumnElement[bool]], lateral: bool) -> Select[Any]:
    """The page driven by a walk of `f`'s lookup index in id order, joined to `resources` (the
    other conditions), stopped by the LIMIT. DISTINCT: a resource may hold the same index row
    twice. SQLite: DISTINCT rows (a b-tree of the rows returned, not of every match).
    PostgreSQL: DISTINCT ON the walked id, each id's resource in a LATERAL subquery; joined
    plainly, it planned a merge join over every resource of the type, blind to where one
    patient's ids lie."""
    rtype = request.resource_type
    d = _index_table(f).alias("drive")  # not the table: probes of the same table stay correlated
    walk = [d.c.res_type == rtype, d.c.param == _param(f), _value_clause(f, d, f.values[0])]
    if request.cursor is not None:
        walk.append(d.c.res_id > request.cursor[-1])
    columns = (resources.c.res_id, resources.c.version_id, resources.c.last_updated, resources.c.data)
    if not lateral:
        joined = d.join(resources, and_(resources.c.res_type == d.c.res_type, resources.c.res_id == d.c.res_id))
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


def _after(keys: list[tuple[_Col[Any], bool]], cursor: tuple[Any, ...]) -> ColumnElement[bool]:
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


def breadth_query(request: SearchRequest, bound: int = BROAD, narrow: bool = False) -> Select[Any] | None:
    """How many index entries the driving filter has, counted up to `bound` + 1 (an index range
    walk, never more): past BROAD the search is broad (see `build_queries(probe=True)`).
    None for a filter narrow by nature (one patient's, one id's, one identifier's), unless
    `narrow`: a patient may have many entries too."""
    driving = _driving_filter(request.filters)
    if driving is None or driving.type in ("chain", "has") or (driving.code in _SELECTIVITY and not narrow):
        return None
    t = _index_table(driving)
    entries = select(literal(1)).where(t.c.res_type == request.resource_type, t.c.param == _param(driving),
                                       or_(*(_value_clause(driving, t, v) for v in driving.values)))
    return select(func.count()).select_from(entries.limit(bound + 1).subquery())


def _narrow(request: SearchRequest) -> bool:
    driving = _driving_filter(request.filters)
    return driving is not None and driving.code in _SELECTIVITY and driving.type not in ("chain", "has")


def build_queries(request: SearchRequest, probe: bool = False,
                  ordered: str | None = None) -> tuple[Select[Any], Select[Any]]:
    """The page query (count + 1 rows, to know whether there is a next page) and the count.

    `probe`: every filter an EXISTS probe, none driving. For a broad search without _sort this
    walks the type's resources in id order and stops at the page: with >= ESTIMATE_BOUND matches
    among N resources, a page of 20 costs about 20 * N / ESTIMATE_BOUND probes, where driving
    from the index would gather and sort every match first.

    `ordered` (the dialect's name): a page without _sort whose driving filter's index rows
    come in id order (`ordered_driver`) walks them and stops at the page (`_driven`); else,
    and for the page before a cursor, the driving filter is an IN-subquery."""
    keys = sort_columns(request)
    base = _base(request, probe)
    drive = None if probe or ordered is None else ordered_driver(request)
    conditions = _base(request, probe, skip=drive) if drive is not None else list(base)
    if request.cursor is not None:
        if len(request.cursor) != len(keys) + 1:
            raise bad_request("_cursor does not belong to this search", "_cursor")
        conditions.append(_after(keys, request.cursor))
    order: list[Any] = []
    for column, desc in keys:
        order.append(case((column.is_(None), 1), else_=0))
        order.append(column.desc() if desc else column.asc())
    order.append(resources.c.res_id.asc())
    labelled = [column.label(f"k{i}") for i, (column, _) in enumerate(keys)]
    if drive is not None:
        page = _driven(drive, request, conditions, lateral=ordered == "postgresql")
    else:
        page = (select(resources.c.res_id, resources.c.version_id, resources.c.last_updated, resources.c.data,
                       *labelled).where(*conditions).order_by(*order).limit(request.count + 1))
    if request.total == "estimate":  # counted up to a bound: cheap however broad the search
        bounded = select(literal(1)).select_from(resources).where(*base).limit(ESTIMATE_BOUND + 1).subquery()
        count = select(func.count()).select_from(bounded)
        entries = breadth_query(request, ESTIMATE_BOUND, narrow=True) if _narrow(request) else None
        if entries is not None:  # a patient with more entries than the bound: not counted (-1)
            count = select(case((entries.scalar_subquery() > ESTIMATE_BOUND, -1), else_=count.scalar_subquery()))
        return page, count
    return page, select(func.count()).select_from(resources).where(*base)
