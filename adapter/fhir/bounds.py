"""How large one resource may be: nesting, array lengths, element count.

One check, run by `validation.validate` before anything else, so that every write path (REST,
PATCH, transaction and batch entries, `load`, `ingest`, the exchange's arrival) refuses the same
resources the same way, and no validator or index extractor ever walks an oversized one (an
Observation of 50,000 components held a worker for 22-30 s; the body limit alone allows it).
docs/limits.md.
"""
from __future__ import annotations

from typing import Any

__all__ = ["MAX_DEPTH", "MAX_ARRAY_ITEMS", "MAX_ELEMENTS", "depth", "bound_problem"]

MAX_DEPTH = 64  # nesting levels: FHIR resources need ~20; recursion past ~1,000 crashes
MAX_ARRAY_ITEMS = 10_000  # items of one array (a Group's members, a CodeSystem's concepts)
MAX_ELEMENTS = 100_000  # JSON values in one resource, objects, arrays and scalars alike


def depth(node: Any) -> int:
    """Nesting levels of a JSON value: a scalar 0, `{}` 1, `{"a": [1]}` 2.

    Examples:
        >>> depth({"a": [{"b": 1}]}), depth(3)
        (3, 0)
    """
    deepest, stack = 0, [(node, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def bound_problem(node: Any) -> tuple[str, tuple[Any, ...]] | None:
    """(why, where) for the first bound a resource passes, or None; `where` is the location of
    the element (names and indices), for its FHIRPath. Iterative: a resource nested 10,000
    levels deep must not overflow the stack here either.

    Examples:
        >>> bound_problem({"a": [[[1]]]}) is None
        True
    """
    count = 0
    stack: list[tuple[Any, tuple[Any, ...]]] = [(node, ())]
    while stack:
        item, loc = stack.pop()
        count += 1
        if count > MAX_ELEMENTS:
            return f"the resource holds more than {MAX_ELEMENTS:,} elements (JSON values)", ()
        if isinstance(item, dict):
            children: Any = item.items()
        elif isinstance(item, list):
            if len(item) > MAX_ARRAY_ITEMS:
                return f"an array of {len(item):,} items; at most {MAX_ARRAY_ITEMS:,} are taken", loc
            children = enumerate(item)
        else:
            continue
        if len(loc) >= MAX_DEPTH:  # this container is level len(loc) + 1
            return f"the resource is nested more than {MAX_DEPTH} levels deep", loc
        stack.extend((child, (*loc, key)) for key, child in children)
    return None
