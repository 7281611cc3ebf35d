"""Change from baseline, per child and per population, from what the store holds.

A child is a ResearchSubject of the study (its arm, its site's label); a value is an
Observation of the outcome's code, placed at a visit by its Encounter (the visit key the site
mapping gave it: baseline, month-N). A child with no value at the baseline or at the follow-up
visit is counted as missing, with the reason, and never imputed.

The unit of analysis is the child, or for per-muscle outcomes (`per: child-and-body-site`:
MRC strength, Modified Ashworth) the child and muscle (Observation.bodySite): n counts pairs of
child and muscle, and `Row.children` how many children they come from. A ratio outcome (CD4/CD8)
takes its value from two codes at the same visit; a missing or zero part leaves it missing, with
that reason. Values out of their visit's window (the rule of `$adherence`, adapter/outcomes/
cohort.py) are summarised apart, never mixed into the in-window summary.
"""
from __future__ import annotations

import collections
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, DivisionByZero, InvalidOperation
from typing import Any

from adapter.outcomes.cohort import Child, Cohort, cohort as read_cohort, day_of
from adapter.outcomes.memo import remember
from adapter.outcomes.reading import matches
from adapter.outcomes.statistics import Summary, summarise
from adapter.protocol.spec import Spec
from adapter.store.repository import Repository

__all__ = ["VOID", "Outcome", "Category", "RatioPart", "ChildChange", "outcomes_of", "child_changes", "population", "Row",
           "COLUMNS", "SUMMARIES", "readings", "Reading",
           "paired", "missing_reason", "PER_BODY_SITE"]

SUMMARIES = ("change", "shift", "adverse-events")
PER_BODY_SITE = "child-and-body-site"
VOID = ("entered-in-error", "cancelled")  # statuses of an Observation that counts for nothing


@dataclass(frozen=True)
class Category:
    """One ordered category of a shift outcome (a Modified Ashworth grade): its label and coding."""
    label: str
    system: str
    code: str


@dataclass(frozen=True)
class RatioPart:
    """One way to compute a ratio value: numerator and denominator codes (system, code), both
    read at the same visit (e.g. CD4% / CD8%, or CD4 count / CD8 count)."""
    numerator: tuple[str, str]
    denominator: tuple[str, str]
    numerator_label: str = "numerator"
    denominator_label: str = "denominator"


@dataclass(frozen=True)
class Outcome:
    key: str
    title: str
    system: str  # "" for adverse-events
    code: str
    baseline: str
    follow_up: tuple[str, ...]
    summary: str = "change"  # change | shift | adverse-events
    per: str = "child"  # or "child-and-body-site": the unit of analysis
    ratio: tuple[RatioPart, ...] = ()  # a derived value: the first pair a visit has both parts of
    categories: tuple[Category, ...] = ()  # shift outcomes: ordered categories


def outcomes_of(spec: Spec) -> dict[str, Outcome]:
    """The spec's outcomes, by key, in the spec's order."""
    found = {}
    for key, o in spec.data.get("outcomes", {}).items():
        code = o.get("code") or {}
        parts = tuple(RatioPart((spec.system(p["numerator"]["system"]), str(p["numerator"]["code"])),
                                (spec.system(p["denominator"]["system"]), str(p["denominator"]["code"])),
                                p["numerator"].get("display", "numerator"), p["denominator"].get("display", "denominator"))
                      for p in o.get("ratio", []))
        categories = tuple(Category(str(c["label"]), spec.system(c["system"]), str(c["code"]))
                           for c in o.get("categories", []))
        found[key] = Outcome(key, o["title"], spec.system(code["system"]) if code else "", str(code.get("code", "")),
                             o.get("baseline", ""), tuple(o.get("follow_up", [])), o.get("summary", "change"),
                             o.get("per", "child"), parts, categories)
    return found


@dataclass(frozen=True)
class ChildChange:
    patient: str  # Patient/id
    arm: str
    site: str
    visit: str  # the follow-up visit
    baseline: Decimal | None
    follow_up: Decimal | None
    baseline_observation: str | None  # Observation/id: what the value is ("A + B" for a ratio's two)
    follow_up_observation: str | None
    body_site: str = ""  # per-muscle outcomes: the bodySite code; "" otherwise
    baseline_days_outside: int | None = None  # 0 in window, <0 early, >0 late; None: not checked
    follow_up_days_outside: int | None = None
    baseline_gap: str = ""  # why the baseline value is missing, when more is known than "no value"
    follow_up_gap: str = ""

    @property
    def change(self) -> Decimal | None:
        return None if self.baseline is None or self.follow_up is None else self.follow_up - self.baseline

    @property
    def missing(self) -> str:
        """Why there is no change: "" when there is one."""
        return missing_reason(self.baseline is None, self.follow_up is None, self.baseline_gap, self.follow_up_gap)

    @property
    def out_of_window(self) -> bool:
        """Whether the baseline or the follow-up value was taken outside its visit's window."""
        return bool(self.baseline_days_outside) or bool(self.follow_up_days_outside)

    @property
    def window_checked(self) -> bool:
        """Whether both values' days were checked against the child's visit windows."""
        return self.baseline_days_outside is not None and self.follow_up_days_outside is not None


def missing_reason(no_base: bool, no_later: bool, base_gap: str, later_gap: str) -> str:
    """Why a pair has no change: the baseline's and the follow-up's reasons, "; "-joined.

    Examples:
        >>> missing_reason(True, False, "", ""), missing_reason(False, True, "", "no CD8+ % value")
        ('no baseline value', 'no follow-up value (no CD8+ % value)')
    """
    if no_base and no_later and not base_gap and not later_gap:
        return "no baseline and no follow-up value"
    reasons = ([f"no baseline value ({base_gap})" if base_gap else "no baseline value"] if no_base else []) + \
        ([f"no follow-up value ({later_gap})" if later_gap else "no follow-up value"] if no_later else [])
    return "; ".join(reasons)


@dataclass(frozen=True)
class Reading:
    """A child's value at a visit (and muscle): a number, a category label, or None with a gap."""
    value: Decimal | str | None
    observation: str
    day: date | None
    gap: str = ""


def _number(observation: dict[str, Any]) -> Decimal | None:
    quantity = observation.get("valueQuantity", {}).get("value")
    value = quantity if quantity is not None else observation.get("valueInteger")
    return None if value is None or isinstance(value, bool) else Decimal(str(value))


def _category(observation: dict[str, Any], categories: tuple[Category, ...]) -> str | None:
    codings = (observation.get("valueCodeableConcept") or {}).get("coding") or []
    for category in categories:
        if any(c.get("system") == category.system and c.get("code") == category.code for c in codings):
            return category.label
    return None


def _body_site(observation: dict[str, Any]) -> str:
    return str(next(iter((observation.get("bodySite") or {}).get("coding") or [{}])).get("code", ""))


def _visits(store: Repository, outcome: Outcome) -> dict[str, tuple[str, date | None]]:
    """Encounter/id -> (visit key, day) of the Encounters of the outcome's visits: one read by
    Encounter.type, whatever the number of children (an `_include` per page of Observations cost
    10 s at 10,000 children)."""
    keys = [k for k in (outcome.baseline, *outcome.follow_up) if k]
    if not keys:
        return {}
    escaped = ",".join(k.replace("\\", "\\\\").replace(",", "\\,") for k in keys)
    return remember(store, "visits", tuple(keys),
                    lambda: Cohort.visits_of(list(matches(store, "Encounter", [("type", escaped)]))))


def _observations(store: Repository, system: str, code: str, cohort: Cohort,
                  visits: dict[str, tuple[str, date | None]], period: tuple[str, str] | None = None
                  ) -> Iterator[tuple[tuple[str, str, str], dict[str, Any], date | None]]:
    """(patient, visit, body site), the Observation and its day, for every Observation of the
    code placed at one of `visits` by its Encounter, in id order: one read, whatever the number
    of children. With a period (first and last day, YYYY-MM-DD), a value taken on another day is
    left out, as if it had not been taken."""
    for observation in matches(store, "Observation", [("code", f"{system}|{code}")]):
        if observation.get("status") in VOID:
            continue
        visit = visits.get(observation.get("encounter", {}).get("reference", ""))
        patient = (observation.get("subject") or {}).get("reference", "")
        if visit and patient in cohort.children:
            day = day_of(observation.get("effectiveDateTime")) or day_of(observation.get("effectivePeriod")) \
                or visit[1]
            if period and not (day and period[0] <= day.isoformat() <= period[1]):
                continue
            yield (patient, visit[0], _body_site(observation)), observation, day


def readings(store: Repository, outcome: Outcome, cohort: Cohort, period: tuple[str, str] | None = None
             ) -> dict[tuple[str, str, str], Reading]:
    """(patient, visit key, body site) -> the child's value there: the first Observation (by id)
    that has one. Body site is "" unless the outcome is per child and body site."""
    visits = _visits(store, outcome)
    if outcome.ratio:
        return _ratios(store, outcome, cohort, visits, period)
    per_site = outcome.per == PER_BODY_SITE
    found: dict[tuple[str, str, str], Reading] = {}
    for (patient, visit, site), observation, day in _observations(store, outcome.system, outcome.code, cohort,
                                                                  visits):
        key = (patient, visit, site if per_site else "")
        if period and not (day and period[0] <= day.isoformat() <= period[1]):
            # left out, and said: a baseline before the period is not "no baseline value"
            reading = Reading(None, f"Observation/{observation['id']}", day, "taken outside the report period")
        elif outcome.summary == "shift":
            label = _category(observation, outcome.categories)
            reading = Reading(label, f"Observation/{observation['id']}", day,
                              "" if label else "a value none of the outcome's categories")
        else:
            number = _number(observation)
            reading = Reading(number, f"Observation/{observation['id']}", day, "" if number is not None else "an Observation without a number")
        if key not in found or (found[key].value is None and reading.value is not None):
            found[key] = reading
    return found


def _ratios(store: Repository, outcome: Outcome, cohort: Cohort, visits: dict[str, tuple[str, date | None]],
            period: tuple[str, str] | None) -> dict[tuple[str, str, str], Reading]:
    """A ratio's value at each visit: numerator / denominator of the first declared pair the visit
    has both parts of; with only one part, or a zero denominator, missing with that reason."""
    parts: dict[tuple[str, str], dict[tuple[str, str, str], tuple[Decimal | None, str, date | None]]] = {}
    for coding in dict.fromkeys(c for p in outcome.ratio for c in (p.numerator, p.denominator)):
        values: dict[tuple[str, str, str], tuple[Decimal | None, str, date | None]] = {}
        for (patient, visit, _), observation, day in _observations(store, coding[0], coding[1], cohort, visits,
                                                                   period):
            number = _number(observation)
            if (patient, visit, "") not in values or values[(patient, visit, "")][0] is None:
                values[(patient, visit, "")] = (number, f"Observation/{observation['id']}", day)
        parts[coding] = values
    found: dict[tuple[str, str, str], Reading] = {}
    for key in sorted({k for values in parts.values() for k in values}):
        gaps = []
        for part in outcome.ratio:
            top, bottom = parts[part.numerator].get(key), parts[part.denominator].get(key)
            if top and bottom and top[0] is not None and bottom[0] is not None:
                try:
                    value: Decimal | None = top[0] / bottom[0]
                except (DivisionByZero, InvalidOperation):
                    gaps.append(f"{part.denominator_label} is 0, a part of the ratio")
                    continue
                found[key] = Reading(value, f"{top[1]} / {bottom[1]}", top[2] or bottom[2])
                break
            if top or bottom:
                gaps.append(f"no {part.numerator_label if not (top and top[0] is not None) else part.denominator_label}"
                            " value, a part of the ratio")
        else:
            found[key] = Reading(None, "", None, "; ".join(gaps))
    return found


def paired(outcome: Outcome, cohort: Cohort, found: dict[tuple[str, str, str], Reading]
           ) -> Iterator[tuple[str, str, str, Reading | None, Reading | None]]:
    """(patient, follow-up visit, body site, baseline reading, follow-up reading) for every child
    of the study (and, per body site, every muscle the child has a value for; a child with none
    is one pair, both missing), in patient, body site, visit order."""
    sites: dict[str, set[str]] = collections.defaultdict(set)
    for patient, _, site in found:
        sites[patient].add(site)
    for patient in cohort.children:
        for site in sorted(sites.get(patient) or {""}):
            base = found.get((patient, outcome.baseline, site))
            for visit in outcome.follow_up:
                yield patient, visit, site, base, found.get((patient, visit, site))


def child_changes(store: Repository, outcome: Outcome, study: str, period: tuple[str, str] | None = None,
                  cohort: Cohort | None = None) -> list[ChildChange]:
    """Per child of the study (and muscle) and follow-up visit of the outcome, the baseline and
    follow-up values (each with its Observation, and how far out of its visit's window it was),
    in patient then visit order. With a period (first and last day, YYYY-MM-DD), a value taken
    on another day is left out, as if it had not been taken. Pass `cohort`
    (adapter.outcomes.cohort.cohort) to share the children and their schedules between outcomes."""
    children = cohort or read_cohort(store, study)
    return [ChildChange(child.patient, child.arm, child.site, visit, b, f, b_seen, f_seen, site, b_out, f_out, b_gap,
                        f_gap)
            for child, visit, site, (b, f, b_seen, f_seen, b_out, f_out, b_gap, f_gap)
            in paired_sides(outcome, children, readings(store, outcome, children, period), Decimal)]


Sides = tuple[Any, Any, "str | None", "str | None", "int | None", "int | None", str, str]


def paired_sides(outcome: Outcome, cohort: Cohort, found: dict[tuple[str, str, str], Reading], kind: type
                 ) -> Iterator[tuple[Child, str, str, Sides]]:
    """paired(), each pair as (child, follow-up visit, body site, sides): the baseline and follow-up
    values when they are of `kind` (a number for a change, a category label for a shift; else
    None), their Observations, their days outside their visits' windows, and why either is
    missing (its reading's gap)."""
    for patient, visit, site, base, later in paired(outcome, cohort, found):
        b = base.value if base and isinstance(base.value, kind) else None
        f = later.value if later and isinstance(later.value, kind) else None
        yield cohort.children[patient], visit, site, (
            b, f, base.observation if base and b is not None else None,
            later.observation if later and f is not None else None,
            cohort.days_outside(patient, outcome.baseline, base.day) if base and b is not None else None,
            cohort.days_outside(patient, visit, later.day) if later and f is not None else None,
            base.gap if base and b is None else "", later.gap if later and f is None else "")


_EMPTY = summarise([])


@dataclass(frozen=True)
class Row:
    outcome: str
    visit: str
    group: str  # "all", or the arm or site
    summary: Summary  # changes with both values in window (or not checkable: see window_unknown)
    missing: dict[str, int]  # reason -> children (or child-muscle pairs)
    children: int = 0  # distinct children among summary.n (= summary.n unless per body site)
    out_of_window: Summary = field(default=_EMPTY)  # changes with a value out of window: apart
    window_unknown: int = 0  # of summary.n, changes whose windows could not be checked (no schedule)

    def cells(self) -> list[Any]:
        s, o = self.summary, self.out_of_window
        return [self.outcome, self.visit, self.group, s.n, sum(self.missing.values()),
                *(None if v is None else round(v, 3) for v in (s.mean, s.sd, s.ci_low, s.ci_high, s.median, s.q1, s.q3)),
                "; ".join(f"{reason}: {n}" for reason, n in sorted(self.missing.items())),
                self.children, o.n,
                *(None if v is None else round(v, 3) for v in (o.mean, o.sd, o.ci_low, o.ci_high, o.median, o.q1, o.q3)),
                self.window_unknown]


COLUMNS = ["outcome", "visit", "group", "n", "n_missing", "mean_change", "sd", "ci95_low", "ci95_high",
           "median", "q1", "q3", "missing",
           "n_children", "n_out_of_window", "oow_mean_change", "oow_sd", "oow_ci95_low", "oow_ci95_high",
           "oow_median", "oow_q1", "oow_q3", "n_window_unknown"]


def population(outcome: Outcome, changes: Iterable[ChildChange], by: str | None = None) -> list[Row]:
    """Per follow-up visit, the summary of every child ("all"), or per arm or site (`by`):
    in-window changes in `summary`, out-of-window ones apart in `out_of_window`, missing ones
    counted by reason."""
    groups: dict[tuple[str, str], list[ChildChange]] = collections.defaultdict(list)
    for change in changes:
        group = "all" if by is None else change.arm if by == "arm" else change.site
        groups[(change.visit, group)].append(change)
    rows = []
    for visit in outcome.follow_up:
        for (at, group), members in sorted(groups.items()):
            if at != visit:
                continue
            inside = [m for m in members if m.change is not None and not m.out_of_window]
            outside = [m.change for m in members if m.change is not None and m.out_of_window]
            missing = collections.Counter(m.missing for m in members if m.change is None)
            rows.append(Row(outcome.key, visit, group, summarise([m.change for m in inside if m.change is not None]),
                            dict(missing), len({m.patient for m in inside}),
                            summarise([c for c in outside if c is not None]),
                            sum(1 for m in inside if not m.window_checked)))
    return rows
