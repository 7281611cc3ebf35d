"""Dated schedules from the built PlanDefinitions: both arms, windows, months and leap years."""
from __future__ import annotations

from datetime import date

import pytest

from adapter.study.build import build_resources
from adapter.protocol.schedule import add_months, schedule, visit_plan
from adapter.protocol.spec import Spec, load_spec
from test_protocol_spec import SPEC


@pytest.fixture(scope="module")
def spec() -> Spec:
    return load_spec(SPEC)


def plan_of(spec: Spec, arm: str, **changes) -> dict:
    data = {**spec.data, "arms": {**spec.data["arms"], arm: {**spec.data["arms"][arm], **changes}}}
    resources = build_resources(Spec(spec.path, data))
    return next(r for r in resources if r["id"] == f"ucmsc-cp-{arm}")


def dates(visits):
    return {v.visit.id: (v.target.isoformat(), v.earliest.isoformat(), v.latest.isoformat()) for v in visits}


def test_arm_1_one_course_from_31_january_of_a_leap_year(spec):
    got = dates(schedule(plan_of(spec, "arm-1"), date(2024, 1, 31)))
    assert got["baseline"] == ("2024-01-24", "2024-01-17", "2024-01-30")
    assert got["c1-d0"] == ("2024-01-31", "2024-01-29", "2024-02-02")
    assert got["c1-d7"] == ("2024-02-07", "2024-02-05", "2024-02-09")
    assert got["c1-d14"] == ("2024-02-14", "2024-02-12", "2024-02-16")
    assert got["c1-d21"] == ("2024-02-21", "2024-02-19", "2024-02-23")  # the intravenous week
    assert got["fu-m1"] == ("2024-03-21", "2024-03-14", "2024-03-28")
    assert got["fu-m12"] == ("2025-02-21", "2025-02-06", "2025-03-08")  # +-15 days from 12 months
    assert got["fu-m28"] == ("2026-06-21", "2026-06-06", "2026-07-06")
    assert len(got) == 12


def test_follow_up_months_clamp_to_month_ends(spec):
    # last injection on 2023-11-30 (start 2023-11-09): +3 months is 29 Feb 2024, a leap day
    got = dates(schedule(plan_of(spec, "arm-1"), date(2023, 11, 9)))
    assert got["c1-d21"][0] == "2023-11-30"
    assert got["fu-m3"][0] == "2024-02-29"
    assert got["fu-m1"][0] == "2023-12-30"
    assert got["fu-m6"][0] == "2024-05-30"
    # and 31 January + 1 month in a common year
    got = dates(schedule(plan_of(spec, "arm-1"), date(2025, 1, 10)))
    assert got["c1-d21"][0] == "2025-01-31"
    assert got["fu-m1"][0] == "2025-02-28"


def test_arm_1_several_courses_with_a_gap(spec):
    got = dates(schedule(plan_of(spec, "arm-1", courses=2, course_gap_days=60), date(2026, 3, 2)))
    assert got["c1-d21"][0] == "2026-03-23"
    assert got["c2-d81"][0] == "2026-05-22"  # 60 days after the last injection of course 1
    assert got["c2-d102"][0] == "2026-06-12"
    assert got["fu-m1"][0] == "2026-07-12"  # follow-up counts from the very last injection


def test_arm_2_repeated_combined_administration(spec):
    plan = plan_of(spec, "arm-2")
    got = dates(schedule(plan, date(2026, 12, 28)))
    assert [k for k in got if k.startswith("c")] == ["c1-d0", "c2-d28", "c3-d56", "c4-d84"]
    assert got["c4-d84"][0] == "2027-03-22"
    assert got["fu-m28"][0] == "2029-07-22"
    visits = {v.id: v for v in visit_plan(spec, "arm-2")}
    assert {"ucmsc-cp-intravenous-injection", "ucmsc-cp-intrathecal-injection"} <= {
        f"ucmsc-cp-{a}" for a in visits["c3-d56"].activities}


def test_injection_visits_carry_vital_signs_and_adverse_reaction_review(spec):
    for visit in visit_plan(spec, "arm-1"):
        if visit.injection:
            assert {"vital-signs", "adverse-reaction-review"} <= set(visit.activities)


@pytest.mark.parametrize("start,months,expected", [
    (date(2024, 1, 31), 1, date(2024, 2, 29)), (date(2023, 1, 31), 1, date(2023, 2, 28)),
    (date(2024, 8, 31), 1, date(2024, 9, 30)), (date(2024, 12, 15), 1, date(2025, 1, 15)),
    (date(2024, 2, 29), 12, date(2025, 2, 28)), (date(2024, 2, 29), 48, date(2028, 2, 29)),
])
def test_add_months(start, months, expected):
    assert add_months(start, months) == expected
