"""A protocol arm as visits: first relative (the plan), then dated for one child (the schedule).

Course visits count days from the first injection of course 1 (the index visit); follow-up
visits count calendar months from the last injection, clamped to the end of shorter months
(31 January + 1 month = 28 or 29 February).
"""
from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, timedelta

from adapter.protocol.spec import Spec

__all__ = ["Visit", "DatedVisit", "visit_plan", "schedule", "add_months", "INDEX"]

INDEX = "c1-d0"  # the first injection: every other visit is timed from it or from the last one


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
        visits.append(Visit(f"fu-m{months}", f"Follow-up, {months} months after the last injection",
                            "last-injection", months, (-days, days), tuple(follow["activities"])))
    return visits


def schedule(spec: Spec, arm_id: str, start: date) -> list[DatedVisit]:
    """The arm's visits dated for a child whose first injection is on `start`."""
    plan = visit_plan(spec, arm_id)
    last_injection = start + timedelta(days=max(v.offset for v in plan if v.injection))
    dated = []
    for visit in plan:
        if visit.anchor == "index":
            target = start + timedelta(days=visit.offset)
        else:
            target = add_months(last_injection, visit.offset)
        dated.append(DatedVisit(visit, target, target + timedelta(days=visit.window[0]),
                                target + timedelta(days=visit.window[1])))
    return dated
