"""Change from baseline, per child and per population, from what the store holds.

A child is a ResearchSubject of the study (its arm, its site's label); a value is an
Observation of the outcome's code, placed at a visit by its Encounter (the visit key the site
mapping gave it: baseline, month-N). A child with no value at the baseline or at the follow-up
visit is counted as missing, with the reason, and never imputed.
"""
from __future__ import annotations

import collections
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from adapter.outcomes.statistics import Summary, summarise
from adapter.outcomes.reading import measured_at_visits, study_subjects
from adapter.protocol.spec import Spec
from adapter.store.repository import Repository

__all__ = ["Outcome", "ChildChange", "outcomes_of", "child_changes", "population", "Row"]


@dataclass(frozen=True)
class Outcome:
    key: str
    title: str
    system: str
    code: str
    baseline: str
    follow_up: tuple[str, ...]


def outcomes_of(spec: Spec) -> dict[str, Outcome]:
    return {key: Outcome(key, o["title"], spec.system(o["code"]["system"]), str(o["code"]["code"]), o["baseline"],
                         tuple(o["follow_up"]))
            for key, o in spec.data.get("outcomes", {}).items()}


@dataclass(frozen=True)
class ChildChange:
    patient: str  # Patient/id
    arm: str
    site: str
    visit: str  # the follow-up visit
    baseline: Decimal | None
    follow_up: Decimal | None
    baseline_observation: str | None  # Observation/id: what the value is
    follow_up_observation: str | None

    @property
    def change(self) -> Decimal | None:
        return None if self.baseline is None or self.follow_up is None else self.follow_up - self.baseline

    @property
    def missing(self) -> str:
        """Why there is no change: "" when there is one."""
        if self.baseline is None and self.follow_up is None:
            return "no baseline and no follow-up value"
        return "no baseline value" if self.baseline is None else "no follow-up value" if self.follow_up is None else ""


def child_changes(store: Repository, outcome: Outcome, study: str,
                  period: tuple[str, str] | None = None) -> list[ChildChange]:
    """Per child of the study and follow-up visit of the outcome, the baseline and follow-up
    values (each with its Observation), in patient then visit order. With a period (first and
    last day, YYYY-MM-DD), a value taken on another day is left out, as if it had not been taken."""
    subjects = study_subjects(store, study)
    values = measured_at_visits(store, outcome.system, outcome.code, (outcome.baseline, *outcome.follow_up), None, period)
    changes = []
    for patient, (arm, site) in sorted(subjects.items()):
        base = values.get((patient, outcome.baseline))
        for visit in outcome.follow_up:
            later = values.get((patient, visit))
            changes.append(ChildChange(patient, arm, site, visit, base.value if base else None,
                                       later.value if later else None, base.observation if base else None,
                                       later.observation if later else None))
    return changes


@dataclass(frozen=True)
class Row:
    outcome: str
    visit: str
    group: str  # "all", or the arm or site
    summary: Summary
    missing: dict[str, int]  # reason -> children

    def cells(self) -> list[Any]:
        s = self.summary
        return [self.outcome, self.visit, self.group, s.n, sum(self.missing.values()),
                *(None if v is None else round(v, 3) for v in (s.mean, s.sd, s.ci_low, s.ci_high, s.median, s.q1, s.q3)),
                "; ".join(f"{reason}: {n}" for reason, n in sorted(self.missing.items()))]


COLUMNS = ["outcome", "visit", "group", "n", "n_missing", "mean_change", "sd", "ci95_low", "ci95_high",
           "median", "q1", "q3", "missing"]


def population(outcome: Outcome, changes: Iterable[ChildChange], by: str | None = None) -> list[Row]:
    """Per follow-up visit, the summary of every child ("all"), or per arm or site (`by`)."""
    groups: dict[tuple[str, str], list[ChildChange]] = collections.defaultdict(list)
    for change in changes:
        group = "all" if by is None else change.arm if by == "arm" else change.site
        groups[(change.visit, group)].append(change)
    rows = []
    for visit in outcome.follow_up:
        for (at, group), members in sorted(groups.items()):
            if at != visit:
                continue
            present = [m.change for m in members if m.change is not None]
            missing = collections.Counter(m.missing for m in members if m.change is None)
            rows.append(Row(outcome.key, visit, group, summarise([c for c in present if c is not None]),
                            dict(missing)))
    return rows
