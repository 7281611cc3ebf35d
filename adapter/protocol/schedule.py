"""A protocol arm as visits: relative in the spec (the plan), dated for one child (the schedule).

Course visits count days from the first injection of course 1 (the index visit); follow-up
visits count calendar months from the last injection, clamped to the end of shorter months
(31 January + 1 month = 28 or 29 February).
"""
from __future__ import annotations

import calendar
import decimal
import re
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from adapter.fhir.outcomes import FhirError, Issue
from adapter.protocol.spec import Spec

__all__ = ["visit_system", "Visit", "DatedVisit", "visit_plan", "schedule", "protocol_actions", "add_months", "INDEX",
           "WINDOW_EXTENSION", "MAX_PLAN_ACTIONS", "protocol_visit"]

WINDOW_EXTENSION = "http://hl7.org/fhir/uv/vulcan-schedule/StructureDefinition/AcceptableOffsetRangeSoa"

INDEX = "c1-d0"  # the first injection: every other visit is timed from it or from the last one
# Visits a plan may have to be scheduled ($apply, $adherence): the protocol has a few dozen, and
# dating 12,000 took 17 s (each round looks for the actions whose anchor is dated).
MAX_PLAN_ACTIONS = 1000


@dataclass(frozen=True)
class Visit:
    id: str
    title: str
    anchor: str  # "index" (days from the first injection) or "last-injection" (months after it)
    offset: int  # days (anchor index) or months (anchor last-injection)
    window: tuple[int, int]  # earliest and latest acceptable day, relative to the target
    activities: tuple[str, ...]
    course: int | None = None  # injection visits only

    @property
    def injection(self) -> bool:
        return self.course is not None


@dataclass(frozen=True)
class DatedVisit:
    visit: Visit
    target: date
    earliest: date
    latest: date


def add_months(day: date, months: int) -> date:
    """Calendar months later, clamped to the month's end.

    Examples:
        >>> add_months(date(2025, 1, 31), 1), add_months(date(2023, 11, 30), 3)
        (datetime.date(2025, 2, 28), datetime.date(2024, 2, 29))
    """
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def visit_plan(spec: Spec, arm_id: str) -> list[Visit]:
    """The arm's visits in order: baseline, every injection visit of every course, follow-ups."""
    data = spec.data
    arm = data["arms"][arm_id]
    window = data["parameters"]["injection_window_days"]
    base = data["baseline"]
    visits = [Visit("baseline", base["title"], "index", base["day"],
                    (base["window"][0] - base["day"], base["window"][1] - base["day"]),
                    tuple(base["activities"]))]
    course_start, last_day = 0, 0
    for course in range(1, arm["courses"] + 1):
        for number, planned in enumerate(arm["visits"], 1):
            day = course_start + planned["day"]
            extra = tuple(a for a in arm["every_injection_visit"] if a not in planned["activities"])
            visits.append(Visit(
                f"c{course}-d{day}", f"Course {course}, injection {number} (day {day})", "index", day,
                (-window, window), tuple(planned["activities"]) + extra, course))
            last_day = day
        course_start = last_day + arm["course_gap_days"]
    for follow in data["follow_up"]:
        months, days = follow["months"], follow["window_days"]
        unit = "month" if months == 1 else "months"
        visits.append(Visit(f"fu-m{months}", f"Follow-up, {months} {unit} after the last injection",
                            "last-injection", months, (-days, days), tuple(follow["activities"])))
    return visits


def schedule(plan: dict[str, Any], start: date) -> list[DatedVisit]:
    """The visits of a protocol PlanDefinition dated for a child whose first injection is `start`.

    Reads the FHIR itself (relatedAction offsets, AcceptableOffsetRangeSoa windows), so that
    what is stored is what is scheduled. Day offsets and windows are exact; month offsets are
    calendar months, with the window's width taken from the extension.
    """
    pending = list(enumerate(protocol_actions(plan)))
    dated: dict[str, DatedVisit] = {}
    while pending:  # an action is dated once the action it is timed from is
        ready = [(i, a) for i, a in pending if not a.get("relatedAction")
                 or a["relatedAction"][0]["actionId"] in dated]
        if not ready:
            raise _unschedulable(plan, "the relatedAction timings go round in a circle", "action")
        for i, action in ready:
            pending.remove((i, action))
            try:
                dated[action["id"]] = _date(action, dated, start)
            except (OverflowError, ValueError):  # past date.max (9999-12-31) or before date.min
                where = "relatedAction[0]" if action.get("relatedAction") else "timingRange"
                raise _unschedulable(plan, "its dates would pass the calendar's bounds (years 1 "
                                     "to 9999)", f"action[{i}].{where}") from None
    return sorted(dated.values(), key=lambda d: (d.target, d.visit.id))


def _unschedulable(plan: dict[str, Any], reason: str, where: str, code: str = "processing") -> FhirError:
    return FhirError(422, [Issue(code, f"PlanDefinition/{plan.get('id')} cannot be scheduled: "
                                 f"{reason}", f"PlanDefinition.{where}")])


def protocol_actions(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """The visit actions of a protocol PlanDefinition, checked for what scheduling needs: an id
    and a definitionCanonical each, one index action, and every other timed by one relatedAction
    to a known action with a numeric offsetDuration. Anything else is a 422 naming the element."""
    actions = plan.get("action") or []
    if len(actions) > MAX_PLAN_ACTIONS:
        raise _unschedulable(plan, f"{len(actions)} actions; at most {MAX_PLAN_ACTIONS} can be scheduled",
                             "action", code="too-costly")
    ids = {a.get("id") for a in actions if isinstance(a, dict)}
    index = 0
    for i, action in enumerate(actions):
        where = f"action[{i}]"
        if not isinstance(action.get("id"), str) or not isinstance(action.get("definitionCanonical"), str):
            raise _unschedulable(plan, "every visit action needs an id and a definitionCanonical", where)
        related = action.get("relatedAction") or []
        if not related:
            index += 1
            continue
        offset = related[0].get("offsetDuration") or {}
        if related[0].get("actionId") not in ids or not isinstance(offset.get("value"), (int, float, decimal.Decimal)):
            raise _unschedulable(plan, "relatedAction needs the actionId of another visit and an "
                                 "offsetDuration with a value", f"{where}.relatedAction[0]")
    if index != 1:
        raise _unschedulable(plan, f"{index} actions have no relatedAction; exactly one (the index "
                             "visit, the first injection) must have none", "action")
    return list(actions)


def _date(action: dict[str, Any], dated: dict[str, DatedVisit], start: date) -> DatedVisit:
    related = (action.get("relatedAction") or [None])[0]
    visit_id, title = action["id"], action.get("title", action["id"])
    if related is None:  # the index visit; its own window is action.timingRange (days)
        rng = action.get("timingRange") or {}
        window = (int(rng.get("low", {}).get("value", 0)), int(rng.get("high", {}).get("value", 0)))
        return DatedVisit(Visit(visit_id, title, "index", 0, window, ()), start,
                          start + timedelta(days=window[0]), start + timedelta(days=window[1]))
    anchor = dated[related["actionId"]].target
    offset = related["offsetDuration"]
    low, high = _window(related)
    if offset.get("code") == "mo":
        target = add_months(anchor, int(offset["value"]))
        half = (high - low) // 2
        window = (-half, half)
    else:
        sign = -1 if related["relationship"].startswith("before") else 1
        target = anchor + timedelta(days=sign * int(offset["value"]))
        edges = sorted((sign * low - sign * int(offset["value"]), sign * high - sign * int(offset["value"])))
        window = (edges[0], edges[1])
    visit = Visit(visit_id, title, "index" if offset.get("code") != "mo" else "last-injection",
                  int(offset["value"]), window, ())
    return DatedVisit(visit, target, target + timedelta(days=window[0]),
                      target + timedelta(days=window[1]))


def _window(related: dict[str, Any]) -> tuple[int, int]:
    for extension in related.get("extension") or []:
        if extension.get("url") == WINDOW_EXTENSION:
            rng = extension["valueRange"]
            return int(rng["low"]["value"]), int(rng["high"]["value"])
    value = int(related["offsetDuration"]["value"])
    return value, value


def visit_system(base: str, study: str) -> str:
    """The system of the visit keys in Encounter.type (an open pattern, not a published CodeSystem)."""
    return f"{base}/CodeSystem/{study}-visit"


# A mapping's visit keys (Encounter.type codes): baseline, injection-N, month-N.
_VISIT_KEY = re.compile(r"^(baseline|injection-(\d+)|month-(\d+))$")


def protocol_visit(visit: str, injection_visits: list[str]) -> str | None:
    """The protocol visit action a visit key names, given the ids of the arm's injection visits
    in date order: baseline -> baseline, injection-N -> the N-th, month-N -> fu-mN.

    Examples:
        >>> protocol_visit("injection-2", ["c1-d0", "c1-d7"]), protocol_visit("month-3", []), protocol_visit("x", [])
        ('c1-d7', 'fu-m3', None)
    """
    match = _VISIT_KEY.match(visit)
    if not match:
        return None
    if match.group(2):
        n = int(match.group(2))
        return injection_visits[n - 1] if 0 < n <= len(injection_visits) else None
    return f"fu-m{match.group(3)}" if match.group(3) else "baseline"
