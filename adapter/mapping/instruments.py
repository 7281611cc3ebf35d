"""Item-level instruments (the catalogue's `instruments`: GMFM-88): every item score checked,
"not tested" kept as such (never a zero), each dimension % derived from its items and the total
from the dimensions (REFERENCE.md section 4), with a bad item costing only its dimension and the
total, not the other dimensions. The derivation is exact (fractions); each value is rounded once,
where it is stored, to the instrument's declared `round` decimal places.
"""
from __future__ import annotations

import decimal
import math
from fractions import Fraction
from typing import Any

from adapter.mapping.catalogue import item_code, items_code
from adapter.mapping.context import Context, coded, observation_shell, ucum_quantity
from adapter.mapping.fields import Problem, text_of
from adapter.mapping.rules import item_field
from adapter.mapping.spec import Rule

__all__ = ["instrument", "instrument_keys", "stored"]

NOT_TESTED = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/data-absent-reason",
                          "code": "not-performed", "display": "Not Performed"}], "text": "not tested"}


def stored(value: Fraction, places: int) -> decimal.Decimal:
    """An exact non-negative value rounded half up to `places` decimals, as stored.

    Examples:
        >>> stored(Fraction(2617017, 50000), 1), stored(Fraction(45), 1), stored(Fraction(1, 40), 2)
        (Decimal('52.3'), Decimal('45.0'), Decimal('0.03'))
    """
    return decimal.Decimal(math.floor(value * 10 ** places + Fraction(1, 2))).scaleb(-places)


def instrument(ctx: Context, rule: Rule) -> list[dict[str, Any]]:
    """An item-level instrument (GMFM-88): per dimension, an Observation keeping its item scores
    (one component each; "not tested" as a data-absent reason, never a zero) and the dimension %
    derived from them; the total % as the mean of the unrounded dimensions. A bad item costs its
    dimension (and the total), not the other dimensions."""
    key = rule.data["instrument"]
    spec = ctx.spec.catalogue.instrument(key)
    template, not_tested = rule.fields["items"], {str(v) for v in rule.fields.get("not_tested", [])}
    allowed = {str(score) for score in spec["scores"]}
    top = max(spec["scores"])
    visit = ctx.scope.visit or ""
    out: list[dict[str, Any]] = []
    places = spec["round"]
    percentages: dict[str, Fraction] = {}  # unrounded: the total is the mean of these
    failed: list[int] = []  # ctx.failures of this instrument's dimensions
    for dimension, (first, last) in spec["dimensions"].items():
        items = [(n, ctx.scope.get(item_field(template, n))) for n in range(first, last + 1)]
        if all(value.empty for _, value in items):
            continue
        panel_id = ctx.id(visit, items_code(dimension))
        components, scores, problem, missing = [], [], None, []
        for n, value in items:
            text = text_of(value.raw).strip()
            component: dict[str, Any] = {"code": coded(ctx, {"system": "local", "code": item_code(key, n)})}
            if value.empty or text in not_tested:
                component["dataAbsentReason"] = NOT_TESTED if text else {
                    "coding": [{"system": "http://terminology.hl7.org/CodeSystem/data-absent-reason", "code": "unknown"}]}
                missing.append(value)
            elif text in allowed:
                component["valueInteger"] = int(text)
                scores.append(int(text))
            else:
                problem = problem or Problem(value.label, value.raw, spec["reason"])
            components.append(component)
        if problem is not None:
            ctx.failures.append((problem, [f"Observation/{panel_id}", f"Observation/{ctx.id(visit, dimension)}"]))
            failed.append(len(ctx.failures) - 1)
            continue
        concept = ctx.spec.catalogue.observation(dimension)
        panel = observation_shell(ctx, panel_id, concept, {"system": "local", "code": items_code(dimension)})
        panel["component"] = components
        out.append(panel)
        if missing:
            ctx.notes.append(Problem(missing[0].label, missing[0].raw,
                                     f"{dimension} {spec['not_tested_reason']}" if text_of(missing[0].raw).strip()
                                     else f"{dimension} not derived: an item is empty"))
            continue
        percentages[dimension] = Fraction(sum(scores) * 100, top * len(items))
        derived = observation_shell(ctx, ctx.id(visit, dimension), concept, concept["code"])
        derived["valueQuantity"] = ucum_quantity(stored(percentages[dimension], places), concept["unit"])
        derived["derivedFrom"] = [{"reference": f"Observation/{panel_id}"}]
        out.append(derived)
    if failed and len(percentages) + len(failed) == len(spec["dimensions"]):  # the total, lost to a bad item
        ctx.failures[failed[0]][1].append(f"Observation/{ctx.id(visit, spec['total'])}")
    elif percentages and len(percentages) == len(spec["dimensions"]):
        concept = ctx.spec.catalogue.observation(spec["total"])
        total = observation_shell(ctx, ctx.id(visit, spec["total"]), concept, concept["code"])
        mean = sum(percentages.values(), Fraction(0)) / len(percentages)
        total["valueQuantity"] = ucum_quantity(stored(mean, places), concept["unit"])
        total["derivedFrom"] = [{"reference": f"Observation/{ctx.id(visit, d)}"} for d in spec["dimensions"]]
        out.append(total)
    return out


def instrument_keys(ctx: Context, rule: Rule) -> list[str]:
    if rule.kind != "instrument":
        return []
    spec = ctx.spec.catalogue.instrument(rule.data["instrument"])
    return [k for d in spec["dimensions"] for k in (items_code(d), d)] + [spec["total"]]
