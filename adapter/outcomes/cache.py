"""Each child's changes, computed once while the store is unchanged.

A report over 10,000 children reads tens of thousands of Observations and Encounters; the pages
and repeated `$evaluate-measure` calls ask for the same ones again. The result is kept on the
store object (Repository.derived) under the handle's view (site, scopes, exchange policy: a
site's client never gets what the centre's read) and the store's generation, which changes with
every committed write: any write invalidates, nothing is ever served stale. The few newest
results are kept; a result is a list of small records, about 1 MB per 10,000 children.
"""
from __future__ import annotations

import threading
from typing import Any

from adapter.outcomes.measures import ChildChange, Outcome, child_changes
from adapter.store.repository import Repository

__all__ = ["changes", "KEPT"]

KEPT = 16  # results kept per store
_LOCK = threading.Lock()


def changes(repo: Repository, outcome: Outcome, study: str,
            period: tuple[str, str] | None = None) -> list[ChildChange]:
    """child_changes(repo, outcome, study, period), from the cache when the store is unchanged."""
    generation = repo.generation()
    if generation is None:
        return child_changes(repo, outcome, study, period)
    kept: dict[Any, Any] = repo.derived().setdefault("outcome-changes", {})
    key = (repo.view(), outcome, study, period)
    with _LOCK:
        hit = kept.get(key)
        if hit is not None and hit[0] == generation:
            kept[key] = kept.pop(key)  # newest last
            return hit[1]  # type: ignore[no-any-return]
    result = child_changes(repo, outcome, study, period)
    with _LOCK:
        kept.pop(key, None)
        kept[key] = (generation, result)
        while len(kept) > KEPT:
            kept.pop(next(iter(kept)))
    return result
