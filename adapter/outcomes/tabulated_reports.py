"""MeasureReports of the outcomes that are tables, not means: shift tables of an ordinal outcome
(Modified Ashworth) and adverse events.

A shift report has a group per follow-up visit: its populations count the pairs (children, or
child-muscle pairs) with both categories in window (`measure-population`), those with a value
out of its visit's window (`measure-population-exclusion`, never mixed in) and all of them
(`initial-population`; those missing a value are in the `missing` statistics, by reason). Its
stratifier `shift` has a stratum per pair of categories, baseline and follow-up as R4 stratum
components, zeros included; `arm-shift` and `site-shift` add the arm or site as a third
component (pairs with a count only). An adverse-event report (scoring proportion) has one group: the children enrolled
(`initial-population`, `denominator`), those with at least one event (`numerator`), the rate as
`measureScore`, and in the `adverse-event-counts` extension the events and the rate's 95% Wilson
interval; stratified by arm and site, and by grade, seriousness and causality, overall and per
arm (components).
"""
from __future__ import annotations

from typing import Any

from adapter.outcomes.adverse_events import AdverseEventRow
from adapter.outcomes.definitions import population_counts, stratifier_concept
from adapter.outcomes.reports import empty_group
from adapter.outcomes.shifts import ShiftRow

__all__ = ["shift_groups", "adverse_event_groups", "counts_url"]


def counts_url(base: str) -> str:
    return f"{base}/StructureDefinition/adverse-event-counts"


def _component(base: str, key: str, value: dict[str, Any]) -> dict[str, Any]:
    return {"code": stratifier_concept(base, key), "value": value}


def _missing(base: str, url: str, missing: dict[str, int]) -> list[dict[str, Any]]:
    parts = [{"url": "missing", "extension": [{"url": "reason", "valueString": reason},
                                              {"url": "count", "valueInteger": n}]}
             for reason, n in sorted(missing.items())]
    return [{"url": url, "extension": parts}] if parts else []


def _category(outcome: Any, label: str) -> dict[str, Any]:
    category = next(c for c in outcome.categories if c.label == label)
    return {"coding": [{"system": category.system, "code": category.code}], "text": label}


def _shift_strata(base: str, outcome: Any, row: ShiftRow, by: str | None) -> list[dict[str, Any]]:
    """A stratum per pair of categories: every pair in the overall table (a shift table shows its
    zeros), the pairs with any count per arm or site (an absent pair is a zero there)."""
    strata = []
    for (before, after), n in row.counts.items():
        if by and not n and not row.out_of_window[(before, after)]:
            continue
        components = [_component(base, "baseline", _category(outcome, before)),
                      _component(base, "follow-up", _category(outcome, after))]
        if by:
            components.insert(0, _component(base, by, {"text": row.group or "(none)"}))
        strata.append({"component": components,
                       "population": population_counts(measure_population=n,
                                                  measure_population_exclusion=row.out_of_window[(before, after)])})
    return strata


def shift_groups(base: str, statistics_url: str, outcome: Any, visit_system: str,
                 rows: dict[str | None, list[ShiftRow]]) -> list[dict[str, Any]]:
    """The groups of a shift MeasureReport: rows per grouping (None: all, "arm", "site")."""
    groups = []
    for visit in outcome.follow_up:
        overall = next((r for r in rows[None] if r.visit == visit), None)
        if overall is None:  # no child at all: counted as such (FHIR has no empty arrays)
            groups.append(empty_group({"system": visit_system, "code": visit}, visit))
            continue
        group: dict[str, Any] = {
            "code": {"coding": [{"system": visit_system, "code": visit}], "text": visit},
            "extension": _missing(base, statistics_url, overall.missing),
            "population": population_counts(initial_population=overall.n + overall.n_out_of_window
                                       + sum(overall.missing.values()),
                                       measure_population=overall.n,
                                       measure_population_exclusion=overall.n_out_of_window),
            "stratifier": [{"code": [stratifier_concept(base, "shift")], "stratum": _shift_strata(base, outcome, overall, None)}],
        }
        for by in ("arm", "site"):
            strata = [s for r in rows[by] if r.visit == visit for s in _shift_strata(base, outcome, r, by)]
            group["stratifier"].append({"code": [stratifier_concept(base, f"{by}-shift")], "stratum": strata})
        if not group["extension"]:
            del group["extension"]
        groups.append(group)
    return groups


def _counts(base: str, events: int, low: float | None, high: float | None) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = [{"url": "events", "valueInteger": events}]
    parts += [{"url": name, "valueDecimal": round(value, 6)} for name, value in (("rate-ci95-low", low),
                                                                               ("rate-ci95-high", high))
              if value is not None]
    return [{"url": counts_url(base), "extension": parts}]


def _proportion(base: str, enrolled: int, children: int, events: int, low: float | None = None,
                high: float | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"extension": _counts(base, events, low, high),
                           "population": population_counts(initial_population=enrolled, denominator=enrolled,
                                                      numerator=children)}
    if enrolled:
        out["measureScore"] = {"value": round(children / enrolled, 6)}
    return out


def adverse_event_groups(base: str, rows: dict[str | None, list[AdverseEventRow]]) -> list[dict[str, Any]]:
    """The one group of an adverse-event MeasureReport: rows per grouping (None: all, "arm", "site")."""
    overall = rows[None][0] if rows[None] else None
    if overall is None:  # no child at all: counted as such (FHIR has no empty arrays)
        return [{"code": stratifier_concept(base, "adverse-events"), **_proportion(base, 0, 0, 0)}]
    group: dict[str, Any] = {"code": stratifier_concept(base, "adverse-events"),
                             **_proportion(base, overall.enrolled, overall.children, overall.events,
                                           overall.rate_low, overall.rate_high), "stratifier": []}
    for by in ("arm", "site"):
        group["stratifier"].append({"code": [stratifier_concept(base, by)], "stratum": [
            {"value": {"text": r.group or "(none)"},
             **_proportion(base, r.enrolled, r.children, r.events, r.rate_low, r.rate_high)} for r in rows[by]]})
    for dimension in ("grade", "seriousness", "causality"):
        group["stratifier"].append({"code": [stratifier_concept(base, dimension)], "stratum": [
            {"value": {"text": c.value}, **_proportion(base, overall.enrolled, c.children, c.events)}
            for c in overall.counts if c.dimension == dimension]})
        group["stratifier"].append({"code": [stratifier_concept(base, f"arm-{dimension}")], "stratum": [
            {"component": [_component(base, "arm", {"text": r.group or "(none)"}),
                           _component(base, dimension, {"text": c.value})],
             **_proportion(base, r.enrolled, c.children, c.events)}
            for r in rows["arm"] for c in r.counts if c.dimension == dimension]})
    return [group]
