"""Each child's changes, computed once while the store is unchanged (adapter/outcomes/memo.py).

A report over 10,000 children reads tens of thousands of Observations and Encounters; the pages
and repeated `$evaluate-measure` calls ask for the same ones again.
"""
from __future__ import annotations

from adapter.outcomes.measures import ChildChange, Outcome, child_changes
from adapter.outcomes.cohort import cohort
from adapter.outcomes.memo import remember
from adapter.store.repository import Repository

__all__ = ["changes"]


def changes(repo: Repository, outcome: Outcome, study: str,
            period: tuple[str, str] | None = None) -> list[ChildChange]:
    """child_changes(repo, outcome, study, period), kept while the store is unchanged."""
    return remember(repo, "outcome-changes", (outcome, study, period),
                    lambda: child_changes(repo, outcome, study, period, cohort(repo, study)))
