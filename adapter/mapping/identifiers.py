"""Direct identifiers (a spec's `source.identifiers`, and whatever the patient rule's `mrn`
reads) are never copied into a resource or an id: `mapping check` refuses a spec that would,
and warns of a field read whose name looks identifying but is not declared."""
from __future__ import annotations

import re
from typing import Any

from adapter.mapping.fields import fields_of
from adapter.mapping.rules import FLAT_KINDS, KINDS, referenced_fields
from adapter.mapping.tables import table_sources
from adapter.yamlspec import Lines

__all__ = ["check_identifiers", "direct_identifiers"]


def _in_rule(data: dict[str, Any], where: tuple[Any, ...]) -> tuple[Any, ...]:
    """("rules", 3, "route") -> ("rules", 3, "injection", "route"): where the key is written."""
    if where[0] != "rules" or where[2] == "when":
        return where
    kind = next(k for k in KINDS if k in data["rules"][where[1]])
    return where if kind in FLAT_KINDS else where[:2] + (kind,) + where[2:]


# Column names that look like a direct identifier: read but not declared, `mapping check` warns.
_LOOKS_IDENTIFYING = re.compile(r"mrn|name|phone|mobile|e-?mail|address|passport|ssn|姓名|电话|手机|地址|住址|身份证|住院号",
                                re.IGNORECASE)


def direct_identifiers(data: dict[str, Any]) -> list[str]:
    """The fields a mapping names as direct identifiers: source.identifiers, then what the patient
    rule's mrn reads."""
    declared = list(data["source"].get("identifiers", []))
    mrns = [f for rule in data["rules"] if "patient" in rule for f in fields_of(rule["patient"].get("mrn"))]
    return declared + [m for m in mrns if m not in declared]


def check_identifiers(data: dict[str, Any], lines: Lines) -> tuple[list[str], list[str]]:
    """Direct identifiers (source.identifiers, and whatever the patient rule's mrn reads) must
    never be copied into a resource or an id: only the mrn reads one, as a keyed hash; `when`
    may test one and `unique` use one (duplicate detection and keyed hashes only).

    Returns the problems, and warnings for fields read whose names look identifying."""
    source = data["source"]
    tabular = source["format"] in ("csv", "redcap")
    declared = list(source.get("identifiers", []))
    identifiers = direct_identifiers(data)
    read = [(_in_rule(data, where), name) for where, name in referenced_fields(data)
            if where[0] == "rules" or where[-1] in ("record_key", "visit_date") or where[-2:] == ("visit", "field")]
    read += [(("source", "items"), source["items"])] if "items" in source else []
    for at, table in table_sources(source):
        for i, value in enumerate(table.get("visit", {}).get("values", [])):
            read += [(at + ("visit", "values", i, "visit"), name)
                     for name in re.findall(r"\{([^}]+)\}", value["visit"]) if not name.isdigit()]
    for i, rule in enumerate(data["rules"]):
        each = rule.get("for_each", {})
        for key in ("items", "checked"):
            read += [(("rules", i, "for_each", key), each[key])] if key in each else []
        read += [(("rules", i, "for_each", "split", j), f) for j, f in enumerate(each.get("split", []))]

    def same(name: str, identifier: str) -> bool:  # JSON: `$.a.b` and `a.b`; `$.a` and `$.a.b` overlap
        if not tabular:
            name, identifier = name.removeprefix("$."), identifier.removeprefix("$.")
        return name == identifier or (not tabular and (identifier.startswith(name + ".")
                                                       or name.startswith(identifier + ".")))

    problems, warnings = [], []
    for where, name in read:
        if where[0] == "rules" and "when" in where:
            continue  # tested, never copied
        if where[0] == "rules" and where[2:] == ("patient", "mrn"):
            continue  # the patient's MRN: a keyed hash
        hit = next((ident for ident in identifiers if same(name, ident)), None)
        if hit is not None:
            part = where[-2] if where[-2:] == ("visit", "field") else where[-1]
            into = {"record_key": "every id, the Patient's subject identifier and every Provenance",
                    "visit": "ids", "visit_date": "every Observation's date", "items": "ids"}.get(
                part if not str(part).isdigit() else "visit", "a resource") if where[0] == "source" else "a resource"
            what = "the patient rule's mrn" if hit not in declared else "declared in source.identifiers"
            named = f"{name!r} is" if name == hit else f"{name!r} overlaps {hit!r},"
            problems.append(lines.problem(where, f"{named} a direct identifier ({what}): it would be copied "
                                          f"into {into}; only the patient rule's mrn may read it (as a keyed hash)"))
        elif where[0] == "rules" and _LOOKS_IDENTIFYING.search(name):
            warnings.append(lines.problem(where, f"{name!r} looks like a direct identifier: if it is, list it in "
                                          "source.identifiers (mapping check then refuses copying it)"))
    return problems, warnings
