"""What a mapping's rules are made of: their kinds, where each kind writes its fields, the
catalogue tables its coded fields take their values from, and the source fields a spec reads.
Shared by the spec's checks (spec.py) and the identifier checks (identifiers.py)."""
from __future__ import annotations

from typing import Any

from adapter.mapping.catalogue import Catalogue
from adapter.mapping.fields import fields_of

__all__ = ["KINDS", "FLAT_KINDS", "CODE_TABLES", "body_of", "referenced_fields"]

KINDS = ("patient", "condition", "research_subject", "injection", "adverse_event", "observation", "instrument")
FLAT_KINDS = ("observation", "instrument")  # kinds whose fields sit beside the kind's key, not under it
# Which catalogue table each coded field's values must be keys of.
CODE_TABLES = {("patient", "gender"): "gender", ("condition", "cp_type"): "cp-type",
               ("condition", "gmfcs"): "gmfcs", ("injection", "route"): "route",
               ("adverse_event", "term"): "adverse-event", ("adverse_event", "grade"): "ctcae-grade",
               ("adverse_event", "serious"): "seriousness", ("adverse_event", "causality"): "causality",
               ("adverse_event", "outcome"): "outcome"}


def body_of(rule: dict[str, Any], kind: str) -> dict[str, Any]:
    """The rule's fields as written: beside the kind's key, or under it."""
    return rule if kind in FLAT_KINDS else rule[kind]  # type: ignore[no-any-return]


def referenced_fields(data: dict[str, Any], catalogue: Catalogue | None = None) -> list[tuple[tuple[Any, ...], str]]:
    """Every source field the spec reads, with where it is read (an instrument's items with the
    catalogue)."""
    source = data["source"]
    found: list[tuple[tuple[Any, ...], str]] = [(("source", "record_key"), source["record_key"]),
                                                (("source", "visit", "field"), source["visit"]["field"]),
                                                (("source", "visit_date"), source["visit_date"])]
    found += [(("source", "unique", i), f) for i, f in enumerate(source.get("unique", []))]
    for i, rule in enumerate(data["rules"]):
        kind = next(k for k in KINDS if k in rule)
        body = body_of(rule, kind)
        if kind == "instrument" and catalogue is not None:
            found += [(("rules", i, "items"), rule["items"].replace("{n}", str(n)))
                      for n in catalogue.item_numbers(rule["instrument"])]
        for key, expr in body.items():
            if key in ("observation", "body_site", "name", "when", "per", "for_each", "instrument", "items",
                       "not_tested"):
                continue
            if key == "unit" and isinstance(expr, dict):
                found.append((("rules", i, key, "field"), expr["field"]))
            elif key != "unit":
                found += [(("rules", i, key), f) for f in fields_of(expr)]
        when = rule.get("when", {})
        found += [(("rules", i, "when", "equals", f), f) for f in when.get("equals", {})]
        found += [(("rules", i, "when", "present", j), f) for j, f in enumerate(when.get("present", []))]
    return found
