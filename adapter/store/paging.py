"""The page before a keyset cursor: the search's order reversed, read from the cursor backwards,
then put back in order. Its `previous` link is what makes paging back exact: a page of `count`
entries ending just before the first entry of the page the client is on."""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, case, or_
from sqlalchemy.sql.elements import ColumnElement as _Col

from adapter.fhir.search import SearchRequest
from adapter.store.schema import resources
from adapter.store.search_sql import Slots, build_queries, sort_columns

__all__ = ["backward_queries", "row_key"]


def _before(keys: list[tuple[_Col[Any], bool]], cursor: list[Any]) -> ColumnElement[bool]:
    """Rows strictly before the cursor in (keys..., id) order with NULLs last: the mirror of
    search_sql's `_after`."""
    *values, last_id = cursor
    clause: ColumnElement[bool] = resources.c.res_id < last_id
    for (column, desc), value in reversed(list(zip(keys, values, strict=True))):
        if value is None:  # every row with a value comes before a NULL
            clause = or_(column.is_not(None), and_(column.is_(None), clause))
        else:
            earlier = column > value if desc else column < value
            clause = or_(earlier, and_(column == value, clause))
    return clause


def backward_queries(request: SearchRequest, probe: bool = False,
                     slots: Slots | None = None) -> tuple[Select[Any], Select[Any]]:
    """`build_queries` for the page before `request.cursor` (from the end when there is none):
    its rows come last-first, count + 1 of them to tell whether there are more before."""
    s = slots or Slots(request)  # the cursor's values bound too
    keys = sort_columns(request)
    page, count = build_queries(replace(request, cursor=None, before=False), probe, slots=s)
    if request.cursor is not None:
        page = page.where(_before(keys, s.cursor()))
    order: list[Any] = []
    for column, desc in keys:
        order.append(case((column.is_(None), 1), else_=0).desc())
        order.append(column.asc() if desc else column.desc())
    order.append(resources.c.res_id.desc())
    return page.order_by(None).order_by(*order), count


def row_key(row: Any, sort_keys: int) -> tuple[Any, ...]:
    """A page row's position: its sort values, then its id (what a cursor holds)."""
    return tuple(getattr(row, f"k{i}") for i in range(sort_keys)) + (row.res_id,)
