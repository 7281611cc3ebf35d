"""What a mapping's rules are made of: their kinds, where each kind writes its fields, the
catalogue tables its coded fields take their values from, and the source fields a spec reads.
Shared by the spec's checks (spec.py) and the identifier checks (identifiers.py)."""
from __future__ import annotations

import re
from typing import Any

from adapter.mapping.catalogue import Catalogue
from adapter.mapping.fields import fields_of
from adapter.mapping.tables import WIDE_VISIT, Table, table_sources

__all__ = ["KINDS", "FLAT_KINDS", "CODE_TABLES", "body_of", "referenced_fields", "table_fields", "item_field"]

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
    found: list[tuple[tuple[Any, ...], str]] = []
    for at, table in table_sources(data["source"]):
        found += [(at + ("record_key",), table["record_key"])]
        if "visit" in table and "wide" not in table:
            found += [(at + ("visit", "field"), table["visit"]["field"])]
        if table.get("visit_date"):
            found += [(at + ("visit_date",), table["visit_date"])]
        found += [(at + ("unique", i), f) for i, f in enumerate(table.get("unique", [])) if f != WIDE_VISIT]
    for i, rule in enumerate(data["rules"]):
        kind = next(k for k in KINDS if k in rule)
        body = body_of(rule, kind)
        if kind == "instrument" and catalogue is not None:
            found += [(("rules", i, "items"), item_field(rule["items"], n))
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


_ITEM = re.compile(r"\{n(?::(0?)(\d+)d?)?\}")


def item_field(template: str, n: int) -> str:
    """Where item n of an instrument is: `gmfm_{n}`, or zero-padded `gmfm_{n:02}` (`{n:02d}` too).

    Examples:
        >>> item_field("gmfm_{n}", 7), item_field("gmfm_{n:02}", 7), item_field("i{n:02d}", 12)
        ('gmfm_7', 'gmfm_07', 'i12')
    """
    return _ITEM.sub(lambda m: str(n).rjust(int(m[2]), "0" if m[1] is not None else " ") if m[2] else str(n),
                     template)


def _rule_tables(rule: dict[str, Any], tables: tuple[Table, ...]) -> list[str]:
    named = rule.get("when", {}).get("table")
    return [tables[0].name] if named is None else named if isinstance(named, list) else [named]


def table_fields(data: dict[str, Any], tables: tuple[Table, ...], catalogue: Catalogue | None = None
                 ) -> dict[str, tuple[str, ...]]:
    """The fields the mapping reads in each table: a workbook's header must hold them all."""
    found: dict[str, dict[str, None]] = {t.name: {} for t in tables}
    for table in tables:
        own = [table.record_key, table.visit_field, table.visit_date, *table.unique]
        found[table.name].update(dict.fromkeys(f for f in own if f))

    def walk(expr: Any, into: list[str]) -> None:
        if isinstance(expr, dict) and "table" in expr:
            found.setdefault(expr["table"], {})[expr["field"]] = None
        elif isinstance(expr, dict) and any(op in expr for op in ("sum", "difference", "product", "ratio", "mean",
                                                                   "min", "max")):
            for op in ("sum", "difference", "product", "ratio", "mean", "min", "max"):
                for part in expr.get(op, []):
                    walk(part, into)
        else:
            for name in fields_of(expr):
                for table in into:
                    found.setdefault(table, {})[name] = None

    for rule in data["rules"]:
        into = _rule_tables(rule, tables)
        kind = next(k for k in KINDS if k in rule)
        for key, expr in body_of(rule, kind).items():
            if key == "unit" and isinstance(expr, dict):
                walk(expr["field"], into)
            elif key not in ("observation", "body_site", "name", "when", "per", "for_each", "instrument", "items",
                             "not_tested", "unit"):
                walk(expr, into)
        if kind == "instrument" and catalogue is not None:
            for n in catalogue.item_numbers(rule["instrument"]):
                walk(item_field(rule["items"], n), into)
        when = rule.get("when", {})
        for name in [*when.get("equals", {}), *when.get("present", [])]:
            walk(name, into)
        each = rule.get("for_each", {})
        for name in each.get("split", []):
            walk(name, into)
    return {name: tuple(fields) for name, fields in found.items()}
