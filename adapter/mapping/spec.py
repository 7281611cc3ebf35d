"""Site mapping specs (mappings/sites/*.yaml): loaded, checked against mapping.schema.json and
against the catalogue, and compiled into rules that know their line in the spec.

Checks beyond the schema: concepts, body sites and codes the catalogue does not know; units
UCUM cannot convert into the catalogue's unit; fields a REDCap data dictionary (or a sample
file's header) does not have; code-map keys that are not choices of their REDCap field.
"""
from __future__ import annotations

import csv
import decimal
import pathlib
from dataclasses import dataclass
from dataclasses import field as default
from typing import Any

from adapter.mapping.catalogue import Catalogue, load_catalogue
from adapter.mapping.arithmetic import is_arithmetic, operation
from adapter.mapping.fields import map_targets
from adapter.mapping.identifiers import check_identifiers
from adapter.mapping.rules import CODE_TABLES, FLAT_KINDS, KINDS, body_of, referenced_fields, table_fields
from adapter.mapping.plan import When, compile_when, idle_columns, seen_labels
from adapter.mapping.site_local import extend_catalogue, load_site
from adapter.mapping.tables import VISIT_KEY, Table, compile_tables
from adapter.mapping.spec_units import derived_factors, source_factors, value_problems
from adapter.yamlspec import Lines, SpecError, load_checked, package_schema

__all__ = ["Rule", "MappingSpec", "load_mapping", "SITE_SPECS", "TABULAR", "shipped_mappings"]

# The site mappings this adapter ships (mappings/sites/).
SITE_SPECS = pathlib.Path(__file__).resolve().parent.parent.parent / "mappings" / "sites"

_VISIT = VISIT_KEY
TABULAR = ("csv", "redcap", "xlsx", "xls")
_REDCAP_SYSTEM = {"record_id", "redcap_event_name", "redcap_repeat_instrument", "redcap_repeat_instance",
                  "redcap_data_access_group"}


def shipped_mappings() -> list[pathlib.Path]:
    """The site mappings this adapter ships (mappings/sites/site-*.yaml), not the files beside
    them (site-e.site.yaml, site-e.catalogue.yaml: a site's file and its catalogue extension)."""
    return sorted(p for p in SITE_SPECS.glob("site-*.yaml") if "." not in p.stem)


@dataclass(frozen=True)
class Rule:
    index: int
    kind: str
    fields: dict[str, Any]  # the kind's own fields (for an observation: value, unit, ...)
    data: dict[str, Any]  # the whole rule as written
    line: int
    name: str
    # observation: the catalogue entry, and per source unit (UCUM) the factor to its unit
    concept: dict[str, Any] | None = None
    factors: dict[str, decimal.Decimal] | None = None
    # fields whose expression has a unit (arithmetic, or `unit:` on a field): the factor from
    # it into the unit the field is stored in, worked out when the spec is loaded
    derived: dict[str, decimal.Decimal] = default(default_factory=dict)
    rounding: dict[str, int] = default(default_factory=dict)  # decimal places, of a derived value
    when: When | None = None  # `when:` compiled (plan.py)
    # the columns whose being all empty in a row means the rule does nothing there (plan.py)
    idle: tuple[str, ...] | None = None
    idle_seen: frozenset[str] = frozenset()  # those columns as coverage records them

    @property
    def per_document(self) -> bool:
        return self.data.get("per") == "document"


@dataclass(frozen=True)
class MappingSpec:
    path: str
    data: dict[str, Any]
    lines: Lines
    catalogue: Catalogue
    rules: tuple[Rule, ...]
    tables: tuple[Table, ...]  # what the source's rows are (tables.py): one, unless `tables:` lists more
    looked_up: frozenset[str] = frozenset()  # fields rules read from other rows of the record
    warnings: tuple[str, ...] = ()  # `file:line: key: message`, printed by `mapping check`
    table_fields: dict[str, tuple[str, ...]] = default(default_factory=dict)  # the fields read, per table
    site_entry: dict[str, Any] | None = None  # the site declared beside the mapping (mapping.site_file)

    def table(self, name: str) -> Table:
        """A table by name ("": the one table of a source without `tables:`)."""
        return next((t for t in self.tables if t.name == name), self.tables[0])

    @property
    def site(self) -> str:
        return str(self.data["mapping"]["site"])

    @property
    def name(self) -> str:
        return str(self.data["mapping"]["name"])

    @property
    def version(self) -> str:
        return str(self.data["mapping"]["version"])

    @property
    def source(self) -> dict[str, Any]:
        return self.data["source"]  # type: ignore[no-any-return]

    @property
    def tabular(self) -> bool:
        """Rows of named columns (CSV, REDCap, workbooks), not JSON documents."""
        return self.source["format"] in TABULAR

    def where(self, rule: Rule) -> str:
        return f"{pathlib.Path(self.path).name}:{rule.line}"

    def where_key(self, path: tuple[Any, ...]) -> str:
        return f"{pathlib.Path(self.path).name}:{self.lines.line(path)}"

    def relative(self, name: str) -> pathlib.Path:
        return pathlib.Path(self.path).parent / name


def load_mapping(path: str | pathlib.Path, header: list[str] | None = None) -> MappingSpec:
    """Read, check and compile a site mapping; SpecError lists every problem with its line.

    `header`: the columns of a sample export, to check every field the spec reads is there.
    """
    data, lines = load_checked(path, package_schema("adapter.mapping", "mapping.schema.json"))
    try:
        catalogue = load_catalogue(pathlib.Path(path).parent / data["mapping"]["catalogue"])
    except SpecError as exc:
        raise SpecError([lines.problem(("mapping", "catalogue"), p) for p in exc.problems]) from exc
    catalogue, site_entry = _site_local(data, lines, path, catalogue)
    problems: list[str] = []
    tabular = data["source"]["format"] in TABULAR
    tables = compile_tables(data["source"], lines, problems)
    default = tables[0].name if len(tables) > 1 else None  # a rule without `when: {table:}` reads the first
    rules = [_compile(i, rule, lines, catalogue, problems, tabular, default) for i, rule in enumerate(data["rules"])]
    names = [t.name for t in tables]
    for i, rule in enumerate(data["rules"]):
        for j, name in enumerate(_listed(rule.get("when", {}).get("table"))):
            if name not in names:
                problems.append(lines.problem(("rules", i, "when", "table", j), f"unknown table {name!r} (the "
                                              f"source's: {', '.join(names)})"))
    for i, rule in enumerate(data["rules"]):
        for j, name in enumerate(_listed(rule.get("when", {}).get("visit"))):
            if not _VISIT.match(name):
                problems.append(lines.problem(("rules", i, "when", "visit", j), f"{name!r} is not a visit "
                                              "(baseline, injection-N or month-N)"))
    problems += _check_fields(data, lines, path, header, catalogue)
    looked = _check_lookups(data, lines, problems, names)
    refused, warnings = check_identifiers(data, lines)
    problems += refused
    problems += _check_arms(data, lines, catalogue)
    site = data["mapping"]["site"]
    if catalogue.sites and site not in catalogue.sites and site_entry is None:  # its Provenance would name no Organization
        problems.append(lines.problem(("mapping", "site"), f"unknown site {site!r}: not one of the protocol's "
                                      f"sites ({', '.join(catalogue.sites)}; declare it in a file of its own, "
                                      "mapping.site_file, or add it under `sites:` in "
                                      f"{catalogue.data['catalogue']['protocol']})"))
    if problems:
        raise SpecError(problems)
    return MappingSpec(str(path), data, lines, catalogue, tuple(rules), tables, looked, tuple(warnings),
                       table_fields(data, tables, catalogue), site_entry)


def _site_local(data: dict[str, Any], lines: Lines, path: str | pathlib.Path, catalogue: Catalogue
                ) -> tuple[Catalogue, dict[str, Any] | None]:
    """The site file and the catalogue extension the mapping names, beside it (site_local.py)."""
    folder, mapping = pathlib.Path(path).parent, data["mapping"]
    site = None
    for key in ("site_file", "catalogue_extension"):
        if key not in mapping:
            continue
        try:
            if key == "site_file":
                site = load_site(folder / mapping[key], mapping["site"], catalogue)
            else:
                catalogue = extend_catalogue(catalogue, folder / mapping[key], mapping["site"])
        except SpecError as exc:
            raise SpecError([lines.problem(("mapping", key), p) for p in exc.problems]) from exc
    return catalogue, site


def _check_lookups(data: dict[str, Any], lines: Lines, problems: list[str], tables: list[str]) -> frozenset[str]:
    found: set[str] = set()

    def walk(expr: Any, at: tuple[Any, ...]) -> None:
        if isinstance(expr, dict) and is_arithmetic(expr):
            op = operation(expr)
            for j, part in enumerate(expr[op]):
                walk(part, at + (op, j))
        elif isinstance(expr, dict) and ("from_visit" in expr or "latest" in expr):
            found.add(expr["field"])
            if "table" in expr and expr["table"] not in tables:
                problems.append(lines.problem(at + ("table",), f"unknown table {expr['table']!r} (the source's: "
                                              f"{', '.join(tables)})"))
            if "from_visit" in expr and not _VISIT.match(expr["from_visit"]):
                problems.append(lines.problem(at + ("from_visit",), f"{expr['from_visit']!r} is not a visit "
                                              "(baseline, injection-N or month-N)"))
    for i, rule in enumerate(data["rules"]):
        kind = next(k for k in KINDS if k in rule)
        body = body_of(rule, kind)
        for name, expr in body.items():
            walk(expr, ("rules", i) + (() if kind in FLAT_KINDS else (kind,)) + (name,))
    return frozenset(found)


def _check_arms(data: dict[str, Any], lines: Lines, catalogue: Catalogue) -> list[str]:
    """Every arm the spec can give a child (mapping.arm, a research_subject rule's `arm` map
    targets or constant) is an arm of the protocol; a rule without `arm` needs mapping.arm."""
    problems = []
    known = catalogue.arms

    def check(where: tuple[Any, ...], arm: Any) -> None:
        if arm not in known:
            problems.append(lines.problem(where, f"unknown arm {arm!r} (the protocol has: {', '.join(known)})"))

    if "arm" in data["mapping"]:
        check(("mapping", "arm"), data["mapping"]["arm"])
    for i, rule in enumerate(data["rules"]):
        if "research_subject" not in rule:
            continue
        expr = rule["research_subject"].get("arm")
        at = ("rules", i, "research_subject", "arm")
        if expr is None and "arm" not in data["mapping"]:
            problems.append(lines.problem(("rules", i, "research_subject"), "no arm: give mapping.arm, or "
                                          "`arm` here (e.g. {field: rand_arm, map: {\"1\": arm-1}})"))
        elif isinstance(expr, dict) and "map" in expr:
            for code, arm in expr["map"].items():
                for target in map_targets(arm):
                    check(at + ("map", code), target)
        elif isinstance(expr, dict) and "const" in expr:
            check(at + ("const",), expr["const"])
    return problems


def _listed(value: Any) -> list[Any]:
    return [] if value is None else value if isinstance(value, list) else [value]


def _compile(index: int, rule: dict[str, Any], lines: Lines, catalogue: Catalogue,
             problems: list[str], tabular: bool = True, table: str | None = None) -> Rule:
    kind = next(k for k in KINDS if k in rule)
    at = ("rules", index)
    fields = {k: v for k, v in rule.items() if k not in (kind, "name", "when", "per", "for_each")} \
        if kind in FLAT_KINDS else rule[kind]
    problems += _unknown_codes(kind, fields, at, lines, catalogue)
    concept = factors = None
    name = rule.get("name") or kind.replace("_", "-")
    if kind == "instrument":
        name = rule.get("name") or rule["instrument"]
        if rule["instrument"] not in catalogue.data.get("instruments", {}):
            problems.append(lines.problem(at + ("instrument",), f"unknown instrument {rule['instrument']!r} (the "
                                          f"catalogue has: {', '.join(catalogue.data.get('instruments', {}))})"))
    if kind == "observation":
        name = rule.get("name") or "-".join(filter(None, [rule["observation"], rule.get("body_site")]))
        concept, factors = _observation(rule, at, lines, catalogue, problems)
    fields = dict(fields)
    where = at if kind in FLAT_KINDS else at + (kind,)
    problems += value_problems(kind, rule, fields, concept, lines, where)
    derived = derived_factors(kind, fields, concept, lines, where, problems, "unit" in rule and kind == "observation")
    rounding = {}
    for key in derived:  # rounded in the unit the value is stored in, after the conversion
        if is_arithmetic(fields[key]) and "round" in fields[key]:
            rounding[key] = fields[key]["round"]
            fields[key] = {k: v for k, v in fields[key].items() if k != "round"}
    idle = idle_columns(kind, rule, fields, tabular)
    return Rule(index, kind, fields, rule, lines.line(at), name, concept, factors, derived, rounding,
                compile_when(rule, table), idle, seen_labels(idle))


def _unknown_codes(kind: str, fields: dict[str, Any], at: tuple[Any, ...], lines: Lines,
                   catalogue: Catalogue) -> list[str]:
    """A code map's targets that the catalogue's table for that field does not have."""
    problems = []
    for (table_kind, field), table in CODE_TABLES.items():
        expr = fields.get(field) if table_kind == kind else None
        if isinstance(expr, dict) and "map" in expr:
            known = catalogue.codes(table)
            for source_code, entry in expr["map"].items():
                if isinstance(entry, list) and (kind, field) != ("injection", "route"):
                    problems.append(lines.problem(at + (kind, field, "map", source_code), "several keys: only an "
                                                  "injection's route maps to several (one Procedure per route)"))
                for target in map_targets(entry):
                    if target not in known:
                        problems.append(lines.problem(at + (kind, field, "map", source_code),
                                                      f"unknown {table} code {target!r} (the catalogue has: "
                                                      f"{', '.join(known)})"))
    return problems


def _observation(rule: dict[str, Any], at: tuple[Any, ...], lines: Lines, catalogue: Catalogue,
                 problems: list[str]) -> tuple[dict[str, Any] | None, dict[str, decimal.Decimal] | None]:
    """An observation rule's catalogue concept and its source units' factors (None when unknown)."""
    key = rule["observation"]
    concept = factors = None
    if key not in catalogue.data["observations"]:
        problems.append(lines.problem(at + ("observation",), f"unknown observation {key!r} (the catalogue "
                                      f"has: {', '.join(catalogue.data['observations'])})"))
    else:
        concept = catalogue.observation(key)
        factors = source_factors(rule, concept, lines, at, problems)
        needs = list(concept["components"]) if concept["value"] == "components" else ["value"]
        missing = [n for n in needs if n not in rule]
        unwanted = [n for n in ("value", "systolic", "diastolic") if n in rule and n not in needs]
        if missing or unwanted:
            problems.append(lines.problem(at, f"{key} needs {' and '.join(map(repr, needs))}"
                                          + (f", not {' or '.join(map(repr, unwanted))}" if unwanted else "")))
    if "body_site" in rule and rule["body_site"] not in catalogue.data["body_sites"]:
        problems.append(lines.problem(at + ("body_site",), f"unknown body site {rule['body_site']!r} "
                                      f"(the catalogue has: {', '.join(catalogue.data['body_sites'])})"))
    return concept, factors


def _check_fields(data: dict[str, Any], lines: Lines, path: str | pathlib.Path,
                  header: list[str] | None, catalogue: Catalogue | None = None) -> list[str]:
    source = data["source"]
    if source["format"] not in ("csv", "redcap"):
        return []  # a workbook's header is checked when it is read (reading.py), JSON paths by coverage
    choices: dict[str, set[str]] = {}
    if "dictionary" in source:
        dictionary = pathlib.Path(path).parent / source["dictionary"]
        try:
            choices = _dictionary_choices(dictionary)
        except OSError as exc:
            return [lines.problem(("source", "dictionary"), f"cannot read {dictionary}: {exc.strerror}")]
    known = set(header) if header is not None else set(choices) if choices else None
    if known is None:
        return []
    return _unknown_columns(data, lines, header, known, catalogue) + _unknown_choices(data, lines, choices)


def _dictionary_choices(dictionary: pathlib.Path) -> dict[str, set[str]]:
    """A REDCap data dictionary's fields, each with its coded choices (empty: free)."""
    with dictionary.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    choices: dict[str, set[str]] = {}
    for row in rows:
        name = row.get("Variable / Field Name", "")
        text = row.get("Choices, Calculations, OR Slider Labels", "")
        if row.get("Field Type") == "yesno":
            choices[name] = {"0", "1"}
        elif text and row.get("Field Type") in ("radio", "dropdown", "checkbox"):
            choices[name] = {part.split(",", 1)[0].strip() for part in text.split("|")}
        else:
            choices.setdefault(name, set())
    return choices


def _unknown_columns(data: dict[str, Any], lines: Lines, header: list[str] | None, known: set[str],
                     catalogue: Catalogue | None) -> list[str]:
    source = data["source"]
    checkboxes = {r["for_each"]["checked"] for r in data["rules"] if "checked" in r.get("for_each", {})}
    declared = [(("source", "identifiers", i), f) for i, f in enumerate(source.get("identifiers", []))]
    problems = []
    for where, name in referenced_fields(data, catalogue) + declared:
        base = name.rsplit("___", 1)[0] if header is None else name
        if name in checkboxes and (header is None or any(h.startswith(name + "___") for h in header)):
            continue
        if base not in known and not (header is None and base in _REDCAP_SYSTEM):
            problems.append(lines.problem(where, f"unknown column {name!r}"))
    return problems


def _unknown_choices(data: dict[str, Any], lines: Lines, choices: dict[str, set[str]]) -> list[str]:
    problems = []
    for i, rule in enumerate(data["rules"]):
        kind = next(k for k in KINDS if k in rule)
        for key, expr in body_of(rule, kind).items():
            if isinstance(expr, dict) and "map" in expr and choices.get(expr["field"]):
                for code in set(expr["map"]) - choices[expr["field"]]:
                    problems.append(lines.problem(("rules", i, kind, key, "map", code),
                                                  f"{code!r} is not a choice of {expr['field']} in the data "
                                                  f"dictionary ({', '.join(sorted(choices[expr['field']]))})"))
    return problems