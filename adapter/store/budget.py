"""How many bytes one page may carry: a page of 1,000 large resources (or its _includes) ends
early, its `next` link continuing from its last entry, so that no answer grows past
MAX_PAGE_BYTES however large the resources a search, a history or $everything matches
(docs/limits.md). Used where the store reads a page: search, includes, history, compartment."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["MAX_PAGE_BYTES", "fitting"]

MAX_PAGE_BYTES = 16 << 20  # stored bytes of one page's resources, matches and included together


def _stored(row: Any) -> int:
    return len(row.data or b"")


def fitting(rows: Sequence[Any], budget: int, size: Callable[[Any], int] = _stored) -> int:
    """How many of `rows`, from the first, fit in `budget` bytes; at least one (a resource is
    never cut: the body limit bounds one).

    Examples:
        >>> class R: data = b"x" * 10
        >>> fitting([R(), R(), R()], 25), fitting([R()], 5), fitting([], 5)
        (2, 1, 0)
    """
    used = 0
    for n, row in enumerate(rows):
        used += size(row)
        if used > budget and n > 0:
            return n
    return len(rows)
