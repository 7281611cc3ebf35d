"""Adverse events per arm and site: children enrolled, events, children with at least one event,
the rate, and the same counts by CTCAE grade, seriousness and causality.

An event is an AdverseEvent of actuality `actual` whose subject is a child
of the study; its grade is the mapping's CTCAE grade extension (NCIt code, REFERENCE.md section
3), its seriousness AdverseEvent.seriousness, its causality the assessment of its suspect
injection (the strongest when several). What an event does not say is counted under "not
graded", "not recorded" or "not assessed", never guessed.
"""
from __future__ import annotations

import collections
import math
from dataclasses import dataclass
from typing import Any

from adapter.outcomes.cohort import Cohort, cohort as read_cohort
from adapter.outcomes.reading import matches
from adapter.store.repository import Repository

__all__ = ["AdverseEventCount", "AdverseEventRow", "adverse_event_rows", "study_events", "classify", "wilson", "AE_COLUMNS", "GRADES",
           "STANDARD",
           "NOT_GRADED", "NOT_RECORDED", "NOT_ASSESSED"]

# CTCAE v5 grades as NCIt codes (mappings/sites/catalogue.yaml, codes: ctcae-grade).
GRADES = {"C41338": "1", "C41339": "2", "C41340": "3", "C41337": "4", "C48275": "5"}
NOT_GRADED, NOT_RECORDED, NOT_ASSESSED = "not graded", "not recorded", "not assessed"
# R4 4.0.1 causality codes, strongest first: an event with several suspects counts once, by the strongest.
_CAUSALITY = ["Certain", "Probably-Likely", "Possible", "Unlikely", "Conditional-Classified",
              "Unassessable-Unclassifiable"]


# The values every group lists, zeros included (a MeasureReport's strata stay the same whatever
# the data); any other value seen (e.g. "not graded") follows them.
STANDARD = {"grade": ("1", "2", "3", "4", "5"), "seriousness": ("Serious", "Non-serious"),
            "causality": ("Certain", "Probably-Likely", "Possible", "Unlikely")}


def wilson(k: int, n: int) -> tuple[float, float] | None:
    """The 95% Wilson score interval of a proportion k / n (None when n is 0).

    Examples:
        >>> [round(x, 3) for x in wilson(2, 10)]
        [0.057, 0.51]
    """
    if n <= 0:
        return None
    z, p = 1.96, k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class AdverseEventCount:
    """Within a group: events with this value of a dimension, and children with at least one."""
    dimension: str  # "grade", "seriousness" or "causality"
    value: str  # "1".."5", "Serious", "Certain", ... or "not graded" / "not recorded" / "not assessed"
    events: int
    children: int


@dataclass(frozen=True)
class AdverseEventRow:
    """One group ("all", an arm or a site).

    enrolled: children of the study in the group (ResearchSubjects); events: their adverse
    events; children: those with at least one; rate: children / enrolled (None when none are
    enrolled), with its 95% Wilson interval (rate_low, rate_high); counts: by grade, seriousness
    and causality (the STANDARD values, then any other seen in the study; zeros included).
    """
    outcome: str
    group: str
    enrolled: int
    events: int
    children: int
    rate: float | None
    rate_low: float | None
    rate_high: float | None
    counts: tuple[AdverseEventCount, ...]

    def count(self, dimension: str, value: str) -> AdverseEventCount:
        return next((c for c in self.counts if c.dimension == dimension and c.value == value),
                    AdverseEventCount(dimension, value, 0, 0))

    def cells(self) -> list[list[Any]]:
        """CSV rows (AE_COLUMNS): the group's totals ("all", "any"), then one per dimension and value."""
        def r(v: float | None) -> float | None:
            return None if v is None else round(v, 4)
        head = [self.outcome, self.group, self.enrolled]
        return [head + ["all", "any", self.events, self.children, r(self.rate), r(self.rate_low), r(self.rate_high)]] + [
            head + [c.dimension, c.value, c.events, c.children, r(c.children / self.enrolled if self.enrolled else None),
                    None, None] for c in self.counts]


AE_COLUMNS = ["outcome", "group", "enrolled", "dimension", "value", "events", "children", "rate", "rate_ci95_low",
              "rate_ci95_high"]


def _code(concept: Any) -> str:
    return str(next(iter((concept or {}).get("coding") or [{}])).get("code") or "")


def classify(event: dict[str, Any]) -> dict[str, str]:
    """An event's grade, seriousness and causality as counted."""
    grade = next((GRADES.get(_code(e.get("valueCodeableConcept")), _code(e.get("valueCodeableConcept")))
                  for e in event.get("extension") or [] if str(e.get("url", "")).endswith("/ctcae-grade")), "")
    found = [_code(c.get("assessment")) for s in event.get("suspectEntity") or [] for c in s.get("causality") or []]
    found = [c for c in found if c]
    causality = min(found, key=lambda c: _CAUSALITY.index(c) if c in _CAUSALITY else len(_CAUSALITY)) if found else ""
    return {"grade": grade or NOT_GRADED, "seriousness": _code(event.get("seriousness")) or NOT_RECORDED,
            "causality": causality or NOT_ASSESSED}


def study_events(store: Repository, children: Cohort,
                 period: tuple[str, str] | None = None) -> dict[str, list[dict[str, str]]]:
    """Each child's actual AdverseEvents, classified (grade, seriousness, causality), in id order:
    one search of AdverseEvent, whatever the number of children; what every grouping counts.
    With a period (first and last day, YYYY-MM-DD), an event dated on another day
    (AdverseEvent.date, else detected) is left out; an undated one is counted."""
    events: dict[str, list[dict[str, str]]] = collections.defaultdict(list)
    for event in matches(store, "AdverseEvent", []):
        patient = (event.get("subject") or {}).get("reference", "")
        day = str(event.get("date") or event.get("detected") or "")[:10]
        if period and day and not period[0] <= day <= period[1]:
            continue
        if patient in children.children and event.get("actuality", "actual") == "actual":
            events[patient].append(classify(event))
    return events


def adverse_event_rows(store: Repository, study: str, by: str | None = None, cohort: Cohort | None = None,
                       key: str = "adverse-events", period: tuple[str, str] | None = None,
                       events: dict[str, list[dict[str, str]]] | None = None) -> list[AdverseEventRow]:
    """Per group ("all", or each arm or site, `by`) the adverse-event counts and rate, from
    `events` (study_events of the same children) or, without them, a search of its own."""
    children = cohort or read_cohort(store, study)
    events = study_events(store, children, period) if events is None else events
    seen = {d: {e[d] for found in events.values() for e in found} for d in ("grade", "seriousness", "causality")}
    values = {d: list(STANDARD[d]) + sorted(seen[d] - set(STANDARD[d])) for d in STANDARD}
    members: dict[str, list[str]] = collections.defaultdict(list)
    for patient in children.children:
        members[children.group(patient, by)].append(patient)
    rows = []
    for group, patients in sorted(members.items()):
        with_event = [p for p in patients if events.get(p)]
        counts = tuple(AdverseEventCount(d, v, sum(1 for p in patients for e in events.get(p, []) if e[d] == v),
                                         sum(1 for p in patients if any(e[d] == v for e in events.get(p, []))))
                       for d in ("grade", "seriousness", "causality") for v in values[d])
        interval = wilson(len(with_event), len(patients))
        rows.append(AdverseEventRow(key, group, len(patients), sum(len(events.get(p, [])) for p in patients),
                                    len(with_event), len(with_event) / len(patients) if patients else None,
                                    interval[0] if interval else None, interval[1] if interval else None, counts))
    return rows
