"""The study's children, read once for every outcome: each child's arm, site and dated visit
windows; and what an Encounter says of its visit (its key and date).

A value's visit is its Encounter's (Encounter.type: the visit key the site mapping gave it,
baseline or month-N); whether it was taken in that visit's window is the rule of `$adherence`
(adapter/protocol/adherence.py): the child's planned visits are dated from ResearchSubject.period
.start (the first injection) by the arm's protocol PlanDefinition (adapter/protocol/schedule.py),
and a value dated before the visit's earliest or after its latest acceptable day is out of
window, by that many days. A child's schedule is computed once (and shared by children of the
same arm and start date), never per outcome or per visit.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from adapter.fhir.outcomes import FhirError
from adapter.fhir.sites import sites_of
from adapter.outcomes.memo import remember
from adapter.outcomes.reading import matches
from adapter.protocol.apply import arm_protocol, read_json
from adapter.protocol.schedule import schedule
from adapter.store.repository import Repository

__all__ = ["Child", "Cohort", "cohort", "day_of"]

_INJECTION = re.compile(r"^c\d+-d\d+$")


@dataclass(frozen=True)
class Child:
    patient: str  # Patient/id
    arm: str
    site: str  # "" when the subject names no single site
    start: date | None  # ResearchSubject.period.start: the first injection, from which visits are dated


def day_of(value: Any) -> date | None:
    """The day of a FHIR date or dateTime (or a Period's start); None when it has none.

    Examples:
        >>> day_of("2025-03-04T10:00:00+08:00"), day_of({"start": "2025-03-04"}), day_of("2025")
        (datetime.date(2025, 3, 4), datetime.date(2025, 3, 4), None)
    """
    if isinstance(value, dict):
        value = value.get("start")
    if isinstance(value, str) and len(value) >= 10:
        try:
            return date.fromisoformat(value[:10])
        except ValueError:
            return None
    return None


@dataclass
class Cohort:
    """The children of a study (by Patient reference) and what their visits are."""
    study: str
    children: dict[str, Child]
    plans: dict[str, dict[str, Any]]  # arm -> its protocol PlanDefinition (absent: none stored)
    _windows: dict[tuple[str, date], dict[str, tuple[date, date]]] = field(default_factory=dict)

    def windows(self, patient: str) -> dict[str, tuple[date, date]] | None:
        """The child's visit windows, visit key (baseline, injection-N, month-N) -> (earliest,
        latest); None when they cannot be dated (no start date, or no plan for the arm)."""
        child = self.children.get(patient)
        if child is None or child.start is None or child.arm not in self.plans:
            return None
        key = (child.arm, child.start)
        if key not in self._windows:
            try:
                dated = schedule(self.plans[child.arm], child.start)
            except FhirError:
                self._windows[key] = {}
                return None
            by_id = {d.visit.id: (d.earliest, d.latest) for d in dated}
            injected = [d.visit.id for d in dated if _INJECTION.match(d.visit.id)]
            found: dict[str, tuple[date, date]] = {"baseline": by_id["baseline"]} if "baseline" in by_id else {}
            for n in range(1, len(injected) + 1):
                found[f"injection-{n}"] = by_id[injected[n - 1]]
            for visit_id, window in by_id.items():
                if visit_id.startswith("fu-m"):
                    found[f"month-{visit_id[4:]}"] = window
            self._windows[key] = found
        return self._windows[key] or None

    def days_outside(self, patient: str, visit: str, day: date | None) -> int | None:
        """How far outside its visit's window a value of that day is: 0 within it, negative
        early, positive late; None when the window or the day is unknown (not checked)."""
        windows = self.windows(patient)
        if windows is None or day is None or visit not in windows:
            return None
        earliest, latest = windows[visit]
        return (day - earliest).days if day < earliest else (day - latest).days if day > latest else 0

    @staticmethod
    def visits_of(encounters: list[dict[str, Any]]) -> dict[str, tuple[str, date | None]]:
        """Encounter/id -> (visit key, the visit's day) of Encounters (an entered-in-error or
        cancelled one, as for $adherence, is no visit)."""
        visits = {}
        for encounter in encounters:
            if encounter.get("status") in ("entered-in-error", "cancelled"):
                continue
            for kind in encounter.get("type", [])[:1]:
                for coding in kind.get("coding", [])[:1]:
                    visits[f"Encounter/{encounter['id']}"] = (str(coding.get("code")), day_of(encounter.get("period")))
        return visits

    def group(self, patient: str, by: str | None) -> str:
        child = self.children[patient]
        return "all" if by is None else child.arm if by == "arm" else child.site


def cohort(store: Repository, study: str) -> Cohort:
    """The study's children and their arms' PlanDefinitions, kept while the store is unchanged
    (adapter/outcomes/memo.py): every outcome of a report or a page shares them."""
    return remember(store, "cohort", study, lambda: _read_cohort(store, study))


def _read_cohort(store: Repository, study: str) -> Cohort:
    """Read the study's ResearchSubjects (one search, whatever the number of children) and the arms'
    PlanDefinitions."""
    children = {}
    for subject in matches(store, "ResearchSubject", [("study", f"ResearchStudy/{study}")]):
        sites = sites_of(subject)
        patient = subject["individual"]["reference"]
        children[patient] = Child(patient, subject.get("assignedArm", ""), next(iter(sites)) if len(sites) == 1 else "",
                                  day_of((subject.get("period") or {}).get("start")))
    plans: dict[str, dict[str, Any]] = {}
    try:
        research = read_json(store, "ResearchStudy", study)
    except FhirError as error:  # not stored (404/410): values are not checked against windows
        if error.status not in (404, 410):
            raise  # a 403 is the reader's access: never a reason to count every value as in window
        research = {}
    for arm in {c.arm for c in children.values() if c.arm}:
        try:
            plans[arm] = read_json(store, "PlanDefinition", arm_protocol(research, arm))
        except FhirError as error:  # the arm has no stored protocol (422, 404): its windows are unknown
            if error.status not in (404, 410, 422):
                raise
            continue
    return Cohort(study, dict(sorted(children.items())), plans)
