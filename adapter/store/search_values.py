"""Filter values as SQL with bound parameters, in two steps, so that searches differing only in
their values share one statement (search_sql.Slots, statements.py):

- `normalize_value` turns a value into what the index holds (cut keys, case-folded text, the
  range a number stands for, an escaped LIKE pattern), appended to a list of bound values, and
  returns its *shape*: the choices that make the SQL (a prefix, a missing system or code);
- `value_clause` builds the SQL from the shape and the bound parameters, taken in the order
  `normalize_value` appended them.
"""
from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

from sqlalchemy import ColumnElement, Text, and_, func, or_, true, type_coerce

from adapter.fhir.extract import index_key, normalize_string
from adapter.fhir.search import Filter

__all__ = ["normalize_value", "value_clause", "like_prefix"]

_ESCAPE = "/"


def _escaped(text: str) -> str:
    """`text` as a LIKE pattern matching itself: '%' and '_' no wildcards.

    Examples:
        >>> _escaped("50%_a/b")
        '50/%/_a//b'
    """
    return text.replace(_ESCAPE, _ESCAPE * 2).replace("%", _ESCAPE + "%").replace("_", _ESCAPE + "_")


def like_prefix(text: str) -> str:
    return _escaped(text) + "%"


# -- shapes and bound values ----------------------------------------------------------------------

def _token(system: Any, code: Any, out: list[Any]) -> tuple[bool, bool | None]:
    system, code = index_key(system), index_key(code)
    if code is not None:
        out.append(code)
    if system not in (None, ""):
        out.append(system)
    return code is not None, None if system is None else system == ""


def _number(prefix: str, value: Any, out: list[Any]) -> str:
    # Implicit precision of the search value (search.html#number): 100 means [99.5, 100.5).
    if prefix in ("eq", "ap", "ne"):
        text = repr(value)
        decimals = len(text.split(".")[1]) if "." in text and "e" not in text else 0
        half = 0.5 * 10 ** -decimals if not float(value).is_integer() else 0.5
        out += [value - half, value + half]
    else:
        out.append(value)
    return prefix


def _quantity(value: tuple[Any, ...], out: list[Any]) -> tuple[str, bool, bool]:
    prefix, number, system, code = value
    shape = _number(prefix, number, out)
    if code is not None:
        out.append(code)
    if system is not None:
        out.append(system)
    return shape, code is not None, system is not None


def _date(value: tuple[Any, ...], out: list[Any]) -> str:
    prefix, low, high = value
    out += [low, high]
    return str(prefix)


def normalize_value(f: Filter, value: tuple[Any, ...], out: list[Any]) -> Any:
    """The shape of one value of `f`; its bound values appended to `out`."""
    if f.modifier == "missing":
        return bool(value[0])
    if f.type == "composite":
        (system, code), other = value
        first = _token(system, code, out)
        kind = f.components[1]
        if kind == "token":
            return first, _token(other[0], other[1], out)
        if kind == "string":
            out.append(like_prefix(index_key(normalize_string(other[0]))))
            return first, "string"
        if kind == "date":
            return first, _date(other, out)
        return first, _quantity(other, out)
    if f.type == "token" or f.modifier == "identifier":
        system, code = value
        if f.modifier == "text":
            out.append("%" + like_prefix(str(code).lower()))
            return "text"
        return _token(system, code, out)
    if f.type == "string":
        text = index_key(normalize_string(value[0]))
        out.append(text if f.modifier == "exact" else like_prefix(text) if f.modifier != "contains"
                   else "%" + like_prefix(text))
        return None
    if f.type == "uri":
        text = index_key(value[0])
        out.append(like_prefix(text) if f.modifier == "below" else text)
        return None
    if f.type == "date":
        return _date(value, out)
    if f.type == "reference":
        rtype, rid, url = value
        if rid is None:
            out.append(url)
            return "url"
        out.append(index_key(rid))
        if rtype:
            out.append(rtype)
        return bool(rtype)
    if f.type == "quantity":
        return _quantity(value, out)
    return _number(value[0], value[1], out)  # number


# -- SQL from shapes ------------------------------------------------------------------------------

def _token_sql(system_column: Any, code_column: Any, shape: tuple[bool, bool | None],
               p: Iterator[Any]) -> ColumnElement[bool]:
    has_code, no_system = shape
    parts = []
    if has_code:
        parts.append(code_column == next(p))
    if no_system is True:
        parts.append(system_column.is_(None))
    elif no_system is False:
        parts.append(system_column == next(p))
    return and_(*parts) if parts else true()


def _number_sql(column: Any, prefix: str, p: Iterator[Any]) -> ColumnElement[bool]:
    match prefix:
        case "eq" | "ap":
            low, high = next(p), next(p)
            return and_(column >= low, column < high)
        case "ne":
            low, high = next(p), next(p)
            return or_(column < low, column >= high)
        case "gt" | "sa":
            return column > next(p)
        case "lt" | "eb":
            return column < next(p)
        case "ge":
            return column >= next(p)
        case _:
            return column <= next(p)


def _quantity_sql(number_col: Any, system_col: Any, code_col: Any, unit_col: Any,
                  shape: tuple[str, bool, bool], p: Iterator[Any]) -> ColumnElement[bool]:
    """`[prefix]number|system|code`: a code without a system also matches the unit's text."""
    prefix, has_code, has_system = shape
    parts = [_number_sql(number_col, prefix, p)]
    if has_code:
        code = next(p)
        parts.append(code_col == code if has_system else or_(code_col == code, and_(code_col.is_(None),
                                                                                     unit_col == code)))
    if has_system:
        parts.append(system_col == next(p))
    return and_(*parts)


def _date_sql(t: Any, prefix: str, p: Iterator[Any]) -> ColumnElement[bool]:
    # https://hl7.org/fhir/R4/search.html#prefix: comparisons of the resource's range with the
    # search value's range.
    low, high = next(p), next(p)
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


def value_clause(f: Filter, t: Any, shape: Any, params: list[Any]) -> ColumnElement[bool]:
    """One value of `f` on its index table `t`: the shape `normalize_value` gave, its params."""
    p = iter(params)
    if f.type == "composite":
        first, other = shape
        clause = _token_sql(t.c.system, t.c.code, first, p)
        kind = f.components[1]
        if kind == "token":
            return and_(clause, _token_sql(t.c.value_system, t.c.value_code, other, p))
        if kind == "string":
            return and_(clause, t.c.value_code.like(next(p), escape=_ESCAPE))
        if kind == "date":  # `_date_sql` compares columns named low and high
            columns = SimpleNamespace(c=SimpleNamespace(low=t.c.value_low, high=t.c.value_high))
            return and_(clause, _date_sql(columns, other, p))
        return and_(clause, _quantity_sql(t.c.value_number, t.c.value_system, t.c.value_code, t.c.value_unit,
                                          other, p))
    if f.type == "token" or f.modifier == "identifier":
        if shape == "text":
            return func.lower(t.c.text).like(next(p), escape=_ESCAPE)
        return _token_sql(t.c.system, t.c.code, shape, p)
    if f.type == "string":
        if f.modifier == "exact":
            return t.c.value == next(p)  # the index keeps the case-folded form
        return t.c.value.like(next(p), escape=_ESCAPE)
    if f.type == "uri":
        if f.modifier == "below":
            return t.c.value.like(next(p), escape=_ESCAPE)
        if f.modifier == "above":
            # A stored URL that is a prefix of the value; compared by substring, not LIKE, so
            # that a '%' or '_' stored in a URL is no wildcard.
            return func.substr(type_coerce(next(p), Text()), 1, func.length(t.c.value)) == t.c.value
        return t.c.value == next(p)
    if f.type == "date":
        return _date_sql(t, shape, p)
    if f.type == "reference":
        if shape == "url":
            return t.c.url == next(p)
        clause = t.c.target_id == next(p)
        return and_(clause, t.c.target_type == next(p)) if shape else clause
    if f.type == "quantity":
        return _quantity_sql(t.c.value, t.c.system, t.c.code, t.c.unit, shape, p)
    return _number_sql(t.c.value, shape, p)  # number
