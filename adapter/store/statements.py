"""Search statements by shape: the SQL text of each (dialect, kind, search shape) compiled once
and kept in a bounded LRU; a search of a known shape binds its values to that text and skips
building and compiling SQLAlchemy Core statements (1.6x the SQLite time of a patient's search).

The shape (search_sql.Slots.shape) holds everything the SQL depends on but the bound values;
any other value baked into the text would leak from one search into the next, which
tests/test_search_statements.py probes.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, CursorResult, Select

from adapter.store.search_sql import Slots

__all__ = ["run", "cache_info", "clear", "CACHE_SIZE"]

CACHE_SIZE = 512  # shapes kept; a server sees a few dozen


class _Compiled:
    __slots__ = ("sql", "names", "fixed", "processors")

    def __init__(self, sql: str, names: tuple[str, ...] | None, fixed: dict[str, Any],
                 processors: dict[str, Callable[[Any], Any]]) -> None:
        self.sql, self.names, self.fixed, self.processors = sql, names, fixed, processors


_cache: OrderedDict[Any, _Compiled] = OrderedDict()
_lock = threading.Lock()
_stats = {"hits": 0, "misses": 0}


def _compile(conn: Connection, statement: Select[Any]) -> _Compiled:
    compiled = statement.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    # what the column types do to a value on its way in (SQLite: float() for FLOAT)
    processors = dict(getattr(compiled, "_bind_processors", None) or {})
    fixed = {name: processors[name](value) if name in processors else value
             for name, value in compiled.params.items() if not name.startswith("fv")}
    names = tuple(compiled.positiontup) if compiled.positional and compiled.positiontup is not None else None
    return _Compiled(str(compiled), names, fixed, {k: v for k, v in processors.items() if k.startswith("fv")})


def run(conn: Connection, kind: Any, slots: Slots, build: Callable[[], Select[Any]]) -> CursorResult[Any]:
    """Execute the statement `build` makes for this search (`kind`: which of its statements),
    from the SQL text of its shape when known."""
    key = (conn.dialect.name, kind, slots.shape)
    with _lock:
        entry = _cache.get(key)
        if entry is not None:
            _cache.move_to_end(key)
            _stats["hits"] += 1
    if entry is None:
        entry = _compile(conn, build())
        with _lock:
            _stats["misses"] += 1
            _cache[key] = entry
            while len(_cache) > CACHE_SIZE:
                _cache.popitem(last=False)
    params = {**entry.fixed, **slots.params()}
    for name, process in entry.processors.items():
        if params.get(name) is not None:
            params[name] = process(params[name])
    if entry.names is not None:
        return conn.exec_driver_sql(entry.sql, tuple(params[name] for name in entry.names))
    return conn.exec_driver_sql(entry.sql, params)


def cache_info() -> dict[str, int]:
    with _lock:
        return {**_stats, "size": len(_cache), "max": CACHE_SIZE}


def clear() -> None:
    with _lock:
        _cache.clear()
