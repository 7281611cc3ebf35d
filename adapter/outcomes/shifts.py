"""Shift tables of an ordinal outcome (Modified Ashworth): per follow-up visit and group, how many
children (or child-muscle pairs, `per: child-and-body-site`) were in each baseline category and
each follow-up category. No means: grades such as 1 and 1+ are ordered, not numbers.

Pairs with a value out of its visit's window are tabulated apart (`out_of_window`), never mixed
in; pairs without both values are counted by reason (`missing`), never imputed.
"""
from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Any

from adapter.outcomes.cohort import Cohort, cohort as read_cohort
from adapter.outcomes.measures import Outcome, missing_reason, paired_sides, readings
from adapter.store.repository import Repository

__all__ = ["ChildShift", "ShiftRow", "child_shifts", "shift_rows", "shift_table", "SHIFT_COLUMNS"]


@dataclass(frozen=True)
class ChildShift:
    """One child's (and muscle's) category at baseline and at a follow-up visit."""
    patient: str
    arm: str
    site: str
    visit: str
    body_site: str
    baseline: str | None  # category label; None: missing
    follow_up: str | None
    baseline_observation: str | None
    follow_up_observation: str | None
    baseline_days_outside: int | None = None  # 0 in window, <0 early, >0 late; None: not checked
    follow_up_days_outside: int | None = None
    missing: str = ""  # why there is no pair of categories ("" when there is)

    @property
    def out_of_window(self) -> bool:
        return bool(self.baseline_days_outside) or bool(self.follow_up_days_outside)


def child_shifts(store: Repository, outcome: Outcome, study: str, cohort: Cohort | None = None,
                 period: tuple[str, str] | None = None) -> list[ChildShift]:
    """Per child (and muscle) and follow-up visit, the baseline and follow-up categories. With a
    period (first and last day, YYYY-MM-DD), a value taken on another day is left out."""
    children = cohort or read_cohort(store, study)
    return [ChildShift(child.patient, child.arm, child.site, visit, site, b, f, b_seen, f_seen, b_out, f_out,
                       "" if b is not None and f is not None else missing_reason(b is None, f is None, b_gap, f_gap))
            for child, visit, site, (b, f, b_seen, f_seen, b_out, f_out, b_gap, f_gap)
            in paired_sides(outcome, children, readings(store, outcome, children, period), str)]


@dataclass(frozen=True)
class ShiftRow:
    """The shift table of one follow-up visit and group.

    counts: (baseline category, follow-up category) -> pairs with both values in window (or not
    checkable: `window_unknown` of them); every pair of categories is present, zeros included.
    out_of_window: the same table for pairs with a value outside its visit's window.
    missing: reason -> pairs without both categories. children: distinct children in `counts`.
    """
    outcome: str
    visit: str
    group: str
    categories: tuple[str, ...]
    counts: dict[tuple[str, str], int]
    out_of_window: dict[tuple[str, str], int]
    missing: dict[str, int]
    children: int
    window_unknown: int = 0

    @property
    def n(self) -> int:
        return sum(self.counts.values())

    @property
    def n_out_of_window(self) -> int:
        return sum(self.out_of_window.values())

    def cells(self) -> list[list[Any]]:
        """CSV rows (SHIFT_COLUMNS): one per pair of categories, then one per missing reason."""
        rows: list[list[Any]] = [[self.outcome, self.visit, self.group, b, f, self.counts[(b, f)],
                                  self.out_of_window[(b, f)], ""]
                                 for b in self.categories for f in self.categories]
        rows += [[self.outcome, self.visit, self.group, "", "", 0, 0, f"{reason}: {n}"]
                 for reason, n in sorted(self.missing.items())]
        return rows


SHIFT_COLUMNS = ["outcome", "visit", "group", "baseline", "follow_up", "n", "n_out_of_window", "missing"]


def shift_table(outcome: Outcome, shifts: list[ChildShift], by: str | None = None) -> list[ShiftRow]:
    """Per follow-up visit and group ("all", or each arm or site), the shift table."""
    labels = tuple(c.label for c in outcome.categories)
    groups: dict[tuple[str, str], list[ChildShift]] = collections.defaultdict(list)
    for s in shifts:
        groups[(s.visit, "all" if by is None else s.arm if by == "arm" else s.site)].append(s)
    return [_row(outcome.key, visit, group, labels, members)
            for visit in outcome.follow_up for (at, group), members in sorted(groups.items()) if at == visit]


def _row(outcome: str, visit: str, group: str, labels: tuple[str, ...], members: list[ChildShift]) -> ShiftRow:
    paired = [m for m in members if m.baseline and m.follow_up]
    inside = collections.Counter((m.baseline, m.follow_up) for m in paired if not m.out_of_window)
    outside = collections.Counter((m.baseline, m.follow_up) for m in paired if m.out_of_window)
    missing = collections.Counter(m.missing for m in members if not (m.baseline and m.follow_up))
    in_window = [m for m in paired if not m.out_of_window]
    return ShiftRow(outcome, visit, group, labels, {(b, f): inside[(b, f)] for b in labels for f in labels},
                    {(b, f): outside[(b, f)] for b in labels for f in labels}, dict(missing),
                    len({m.patient for m in in_window}),
                    sum(1 for m in in_window if m.baseline_days_outside is None or m.follow_up_days_outside is None))


def shift_rows(store: Repository, outcome: Outcome, study: str, by: str | None = None,
               cohort: Cohort | None = None) -> list[ShiftRow]:
    """The outcome's shift tables from the store: per follow-up visit and group."""
    return shift_table(outcome, child_shifts(store, outcome, study, cohort), by)
