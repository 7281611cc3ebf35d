"""Item-level instruments (the catalogue's `instruments`: GMFM-88): every item score checked,
"not tested" kept as such (never a zero), each dimension % derived from its items and the total
from the dimensions (REFERENCE.md section 4), with a bad item costing only its dimension and the
total, not the other dimensions.
"""
from __future__ import annotations

import decimal
from typing import Any

from adapter.mapping.catalogue import item_code, items_code
from adapter.mapping.context import Context, coded, observation_shell, ucum_quantity
from adapter.mapping.fields import Problem, text_of
from adapter.mapping.spec import Rule

__all__ = ["instrument", "instrument_keys"]

NOT_TESTED = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/data-absent-reason",
                          "code": "not-performed", "display": "Not Performed"}], "text": "not tested"}


def instrument(ctx: Context, rule: Rule) -> list[dict[str, Any]]:
    """An item-level instrument (GMFM-88): per dimension, an Observation keeping its item scores
    (one component each; "not tested" as a data-absent reason, never a zero) and the dimension %
    derived from them; the total % as the mean of the dimensions. A bad item costs its
    dimension (and the total), not the other dimensions."""
    key = rule.data["instrument"]
    spec = ctx.spec.catalogue.instrument(key)
    template, not_tested = rule.fields["items"], {str(v) for v in rule.fields.get("not_tested", [])}
    allowed = {str(score) for score in spec["scores"]}
    top = max(spec["scores"])
    visit = ctx.scope.visit or ""
    out: list[dict[str, Any]] = []
    percentages: dict[str, decimal.Decimal] = {}
    failed: list[int] = []  # ctx.failures of this instrument's dimensions
    for dimension, (first, last) in spec["dimensions"].items():
        items = [(n, ctx.scope.get(template.replace("{n}", str(n)))) for n in range(first, last + 1)]
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
        percent = (decimal.Decimal(sum(scores)) * 100 / (top * len(items))).quantize(
            decimal.Decimal("0.1"), rounding=decimal.ROUND_HALF_UP)
        percentages[dimension] = percent
        derived = observation_shell(ctx, ctx.id(visit, dimension), concept, concept["code"])
        derived["valueQuantity"] = ucum_quantity(percent, concept["unit"])
        derived["derivedFrom"] = [{"reference": f"Observation/{panel_id}"}]
        out.append(derived)
    if failed and len(percentages) + len(failed) == len(spec["dimensions"]):  # the total, lost to a bad item
        ctx.failures[failed[0]][1].append(f"Observation/{ctx.id(visit, spec['total'])}")
    elif percentages and len(percentages) == len(spec["dimensions"]):
        concept = ctx.spec.catalogue.observation(spec["total"])
        total = observation_shell(ctx, ctx.id(visit, spec["total"]), concept, concept["code"])
        mean = sum(percentages.values(), decimal.Decimal(0)) / len(percentages)
        total["valueQuantity"] = ucum_quantity(mean.quantize(decimal.Decimal("0.1"), rounding=decimal.ROUND_HALF_UP),
                                           concept["unit"])
        total["derivedFrom"] = [{"reference": f"Observation/{ctx.id(visit, d)}"} for d in spec["dimensions"]]
        out.append(total)
    return out


def instrument_keys(ctx: Context, rule: Rule) -> list[str]:
    if rule.kind != "instrument":
        return []
    spec = ctx.spec.catalogue.instrument(rule.data["instrument"])
    return [k for d in spec["dimensions"] for k in (items_code(d), d)] + [spec["total"]]
