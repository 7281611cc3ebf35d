"""MeasureReports of the protocol's outcome measures: what `Measure/[id]/$evaluate-measure` answers.

R4's MeasureReport has a score per group and stratum but no place for a spread, so the summary
statistics travel in one extension, `change-statistics` (n, mean, SD, 95% CI, median, quartiles,
and the children missing a value by reason), on each group and stratum; an individual report
carries the child's baseline and follow-up values there and references both Observations in
`evaluatedResource`. The numbers are the ones `fhir-adapter outcomes` prints: both come from
adapter/outcomes/measures.py.
"""
from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from decimal import Decimal
from typing import Any

from adapter.fhir.dates import now_instant
from adapter.outcomes.definitions import STRATIFIERS, population_code, population_counts, stratifier_concept
from adapter.outcomes.measures import ChildChange, Outcome, Row, population
from adapter.outcomes.statistics import Summary

__all__ = ["measure_report", "report_header", "empty_group", "REPORT_TYPES", "statistics_url"]

# $evaluate-measure's reportType (R4) -> MeasureReport.type
REPORT_TYPES = {"subject": "individual", "subject-list": "subject-list", "population": "summary"}


def statistics_url(base: str) -> str:
    return f"{base}/StructureDefinition/change-statistics"


_INTEGERS = ("n", "count", "children", "window-unknown", "out-of-window-n", "baseline-days-outside",
             "follow-up-days-outside")


def _number(value: Decimal | float | None) -> float | int | None:
    if value is None:
        return None
    number = round(float(value), 6)
    return int(number) if number.is_integer() else number


def _part(url: str, value: Decimal | float | int | str | None) -> list[dict[str, Any]]:
    if value is None:
        return []
    if isinstance(value, str):
        return [{"url": url, "valueString": value}]
    if isinstance(value, int) and not isinstance(value, bool) and url in _INTEGERS:
        return [{"url": url, "valueInteger": value}]
    return [{"url": url, "valueDecimal": _number(value)}]


def _statistics(base: str, row: Row) -> dict[str, Any]:
    """A group's or stratum's figures: the in-window summary, how many of it could not be checked
    against a window, the children it counts (fewer than n when per child and muscle), the
    out-of-window changes' own n and mean (apart), and the missing by reason."""
    summary, apart = row.summary, row.out_of_window
    parts = [*_part("n", summary.n)]
    for name, value in (("mean", summary.mean), ("sd", summary.sd), ("ci95-low", summary.ci_low),
                        ("ci95-high", summary.ci_high), ("median", summary.median), ("q1", summary.q1),
                        ("q3", summary.q3)):
        parts += _part(name, value)
    parts += [*_part("children", row.children), *_part("window-unknown", row.window_unknown),
              *_part("out-of-window-n", apart.n), *_part("out-of-window-mean", apart.mean)]
    parts += [{"url": "missing", "extension": [*_part("reason", reason), *_part("count", count)]}
              for reason, count in sorted(row.missing.items())]
    return {"url": statistics_url(base), "extension": parts}


def _population(code: str, count: int, subjects: list[str] | None, contained: list[dict[str, Any]],
                title: str) -> dict[str, Any]:
    out: dict[str, Any] = {"code": population_code(code), "count": count}
    if subjects is not None:  # subject-list: who is counted (once, even per muscle), as a contained List
        subjects = list(dict.fromkeys(subjects))
        list_id = f"list-{len(contained) + 1}"  # numbered: arm and site names are no ids
        contained.append({"resourceType": "List", "id": list_id, "status": "current", "mode": "snapshot",
                          "title": title,
                          **({"entry": [{"item": {"reference": s}} for s in subjects]} if subjects else {})})
        out["subjectResults"] = {"reference": f"#{list_id}"}
    return out


def _populations(members: list[ChildChange], listed: bool, contained: list[dict[str, Any]],
                 prefix: str) -> list[dict[str, Any]]:
    # as the Measure says and population() counts: a change with a value out of its visit's
    # window is excluded (reported apart), never in the measure population's statistics
    counted = [m for m in members if m.change is not None and not m.out_of_window]
    apart = [m for m in members if m.change is not None and m.out_of_window]
    return [
        _population("initial-population", len(members), [m.patient for m in members] if listed else None,
                    contained, f"{prefix}-initial-population"),
        _population("measure-population", len(counted), [m.patient for m in counted] if listed else None,
                    contained, f"{prefix}-measure-population"),
        _population("measure-population-exclusion", len(apart), [m.patient for m in apart] if listed else None,
                    contained, f"{prefix}-measure-population-exclusion"),
    ]


def _score(summary: Summary) -> dict[str, Any]:
    return {} if summary.mean is None else {"measureScore": {"value": _number(summary.mean)}}


def _summary_group(base: str, visit_coding: dict[str, Any], visit: str, members: list[ChildChange],
                   rows: dict[str | None, list[Row]], listed: bool, contained: list[dict[str, Any]]) -> dict[str, Any]:
    overall = next(r for r in rows[None] if r.visit == visit)
    group: dict[str, Any] = {
        "code": {"coding": [visit_coding], "text": visit},
        "extension": [_statistics(base, overall)],
        "population": _populations(members, listed, contained, visit),
        **_score(overall.summary),
        "stratifier": [],
    }
    for key in STRATIFIERS:
        strata = []
        for row in (r for r in rows[key] if r.visit == visit):
            inside = [m for m in members if (m.arm if key == "arm" else m.site) == row.group]
            strata.append({
                "extension": [_statistics(base, row)],
                "value": {"text": row.group or "(none)"},
                "population": _populations(inside, listed, contained, f"{visit}-{key}-{row.group or 'none'}"),
                **_score(row.summary)})
        group["stratifier"].append({"code": [stratifier_concept(base, key)], "stratum": strata})
    return group


def _child_values(base: str, change: ChildChange) -> dict[str, Any]:
    """One child's (and muscle's) values at a follow-up visit: populations, score, extension.
    A change with a value out of its visit's window is excluded, as in the population report."""
    counted = change.change is not None and not change.out_of_window
    parts = [*_part("baseline", change.baseline), *_part("follow-up", change.follow_up),
             *_part("change", change.change), *_part("baseline-days-outside", change.baseline_days_outside),
             *_part("follow-up-days-outside", change.follow_up_days_outside)]
    if change.missing:
        parts.append({"url": "missing", "extension": [*_part("reason", change.missing), *_part("count", 1)]})
    return {"extension": [{"url": statistics_url(base), "extension": parts}],
            "population": population_counts(initial_population=1, measure_population=int(counted),
                                            measure_population_exclusion=int(change.change is not None
                                                                             and change.out_of_window)),
            **({"measureScore": {"value": _number(change.change)}} if counted else {})}


def _individual_group(base: str, visit_coding: dict[str, Any], visit: str, changes: list[ChildChange]) -> dict[str, Any]:
    """A visit's group of one child: its values, or per muscle (a body-site stratum each) and the
    counts summed, for an outcome per child and muscle."""
    if len(changes) == 1 and not changes[0].body_site:
        return {"code": {"coding": [visit_coding], "text": visit}, **_child_values(base, changes[0])}
    # the body site as the Observation coded it (the catalogue's own code or SNOMED): its code as text
    strata = [{"value": {"text": c.body_site or "(no body site)"}, **_child_values(base, c)} for c in changes]
    counted = [c for c in changes if c.change is not None]
    return {"code": {"coding": [visit_coding], "text": visit},
            "population": population_counts(initial_population=len(changes),
                                            measure_population=sum(not c.out_of_window for c in counted),
                                            measure_population_exclusion=sum(c.out_of_window for c in counted)),
            "stratifier": [{"code": [stratifier_concept(base, "body-site")], "stratum": strata}]}


def empty_group(visit_coding: dict[str, Any], visit: str) -> dict[str, Any]:
    """A visit no child has a value at: counted as such (FHIR has no empty arrays)."""
    return {"code": {"coding": [visit_coding], "text": visit},
            "population": population_counts(initial_population=0, measure_population=0,
                                            measure_population_exclusion=0)}


def _not_enrolled(base: str, visit_coding: dict[str, Any], visit: str) -> dict[str, Any]:
    """A visit's group for a Patient who is no child of the study: counted nowhere, and why."""
    return {"code": {"coding": [visit_coding], "text": visit},
            "extension": [{"url": statistics_url(base), "extension": [
                {"url": "missing", "extension": [*_part("reason", "not a child of the study"), *_part("count", 1)]}]}],
            "population": population_counts(initial_population=0, measure_population=0)}


def report_header(measure: dict[str, Any], report_type: str, period: tuple[date, date],
                  subject: str | None) -> dict[str, Any]:
    """A MeasureReport of the Measure, without groups yet."""
    return {
        "resourceType": "MeasureReport", "status": "complete", "type": REPORT_TYPES[report_type],
        "measure": f"{measure['url']}|{measure['version']}" if measure.get("version") and measure.get("url")
        else measure.get("url") or f"Measure/{measure.get('id')}",
        **({"subject": {"reference": subject}} if subject else {}),
        "date": now_instant(),
        "period": {"start": period[0].isoformat(), "end": period[1].isoformat()},
        "group": [],
    }


def measure_report(measure: dict[str, Any], outcome: Outcome, base: str, visit_system: str,
                   changes: Iterable[ChildChange], report_type: str, period: tuple[date, date],
                   subject: str | None) -> dict[str, Any]:
    """The MeasureReport of `changes` (one per child and follow-up visit, already restricted to the
    subject and the period) as `report_type` (subject, subject-list or population) asks."""
    members = list(changes)
    report = report_header(measure, report_type, period, subject)
    if report_type == "subject":
        report["group"] = [_individual_group(base, {"system": visit_system, "code": visit}, visit,
                                             [c for c in members if c.visit == visit])
                           for visit in outcome.follow_up if any(c.visit == visit for c in members)] \
            or [_not_enrolled(base, {"system": visit_system, "code": visit}, visit) for visit in outcome.follow_up]
        evaluated = sorted({o for c in members for found in (c.baseline_observation, c.follow_up_observation)
                            if found for o in found.split(" / ")})  # a ratio's value has two
        if evaluated:
            report["evaluatedResource"] = [{"reference": o} for o in evaluated]
        return report
    rows: dict[str | None, list[Row]] = {by: population(outcome, members, by) for by in (None, *STRATIFIERS)}
    contained: list[dict[str, Any]] = []
    for visit in outcome.follow_up:
        at_visit = [m for m in members if m.visit == visit]
        if not any(r.visit == visit for r in rows[None]):
            report["group"].append(empty_group({"system": visit_system, "code": visit}, visit))
            continue
        report["group"].append(_summary_group(base, {"system": visit_system, "code": visit}, visit, at_visit, rows,
                                              report_type == "subject-list", contained))
    if contained:
        report["contained"] = contained
    return report
