"""The mapping engine: one source record (a CSV row, a JSON document) at a time to validated FHIR,
or to rejections that name file, row, column, value, the rule (spec file:line), the reason and
the resources not made.

A bad cell rejects only what it feeds: the resources of the rule that read it (a rule's
resources are all or nothing), and the record's resources that refer to one of them (an
adverse event naming an injection that was not made; everything, when the Patient was not
made). The rest of the record is kept: it is "partly accepted", and it is quarantined whole
all the same, so that the fixed record re-ingests in place (ids do not depend on what else
the record made). A record that makes nothing is rejected, and a value that a rule drops (its
rule made nothing although it had data) is a warning with its cell: nothing read is lost
without a word. Accepted records also get a
Provenance (site, file, row, mapping name and version, HMAC-SHA256 of the record with the site's
key: the record holds the MRN, and an unkeyed digest would give it away to a search over
candidate MRNs, every other column being rebuilt from the served resources).
"""
from __future__ import annotations

import dataclasses
import itertools

import pathlib
from dataclasses import dataclass, field
from typing import Any

from adapter.fhir import jsonio
from adapter.fhir.extract import Indexed
from adapter.fhir.sites import with_site
from adapter.fhir.validation import ShapeValidator
from adapter.mapping.failures import Failures, Rejection, ref_of, references_in
from adapter.mapping.fields import Problem, Scope, date_of, text_of
from adapter.mapping.resources import BUILDERS, Context, intended, keyed_hash, safe_id
from adapter.mapping.reading import WORKBOOKS
from adapter.mapping.sources import SourceRow
from adapter.mapping.scopes import holds, idle, items_of, read_source, root_scope, unique_key, visit_of, visit_scopes
from adapter.mapping.spec import MappingSpec, Rule
from adapter.mapping.visits import visit_encounter
from adapter.protocol.organisations import SITE_SYSTEM_PATH

__all__ = ["Rejection", "RecordResult", "read_source", "unique_key", "map_record"]

# Full validation once per resource shape, values on every resource (see ShapeValidator).
_validate = ShapeValidator()


@dataclass
class RecordResult:
    file: str
    line: int
    resources: list[dict[str, Any]] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    # (type, id, status) of each resource made: "mapped", or what the store did with it
    written: list[tuple[str, str, str]] = field(default_factory=list)
    warnings: list[Rejection] = field(default_factory=list)  # accepted, but a value made nothing
    # references of its resources that did not resolve when written: offered again at the end
    # of the ingest (its resources kept), rejected with these if they still do not
    dangling: list[Rejection] = field(default_factory=list)
    fired: set[int] = field(default_factory=set)  # rules that made something
    # rows (file, line) of its record holding values its rules look up: quarantined with it
    looked: set[tuple[str, int]] = field(default_factory=set)
    seen: set[str] = field(default_factory=set)  # fields read
    prepared: list[Indexed] = field(default_factory=list)  # its resources with their index rows (run.py)

    partly: bool = False  # some resources made, some rejected

    @property
    def accepted(self) -> bool:
        """Fully accepted: nothing of it rejected."""
        return not self.rejections

    @property
    def kept(self) -> bool:
        """Something of it is written: fully or partly accepted."""
        return not self.rejections or self.partly


def map_record(spec: MappingSpec, key: bytes, row: SourceRow, recorded: str,
               check: bool = True, histories: dict[str, list[Any]] | None = None) -> RecordResult:
    """Every rule over one record; with `check`, every resource through the validator too.
    `histories`: each record's visits with the fields rules look up (lookups.py)."""
    return _Record(spec, key, row, recorded, histories).mapped(check)


class _Record:
    """One record being mapped: what its rules made so far, what was rejected, and why."""

    def __init__(self, spec: MappingSpec, key: bytes, row: SourceRow, recorded: str,
                 histories: dict[str, list[Any]] | None) -> None:
        self.spec, self.key, self.row, self.recorded = spec, key, row, recorded
        self.result = RecordResult(row.file, row.line)
        self.root = root_scope(spec, row)
        self.table = self.root.table
        self.key_value = self.root.get(self.table.record_key)
        self.record = text_of(self.key_value.raw).strip()
        if histories:
            self.root.history = histories.get(self.record, [])
        self.made: list[tuple[Rule, dict[str, Any]]] = []
        self.taken: set[str] = set()  # Type/id of what the row's rules made so far
        # id() of a resource made -> (the run of the rule that made it, the cells that run read).
        # A run is numbered, not named by id() of its set: a set freed by a rule that made
        # nothing lends its id to the next rule's, which would then pass for the rule that
        # rejected the cell.
        self.reads: dict[int, tuple[int, set[str]]] = {}
        self.runs = itertools.count()
        self.failed = Failures()

    def reject(self, problem: Problem, rule: Rule | str, lost: list[str] | None = None,
               origin: int | None = None) -> None:
        self.failed.add(Rejection(self.row.file, self.row.line, problem.column, problem.value,
                                  self.spec.where(rule) if isinstance(rule, Rule) else rule, problem.reason),
                        lost or [], origin)

    def warn(self, column: str, value: str, where: str, reason: str) -> None:
        self.result.warnings.append(Rejection(self.row.file, self.row.line, column, value, where, reason))

    def mapped(self, check: bool) -> RecordResult:
        spec, root = self.spec, self.root
        for name in self.table.unique:
            root.get(name)  # read for the duplicate check: counted as used by coverage
        if not self.record:
            self.reject(Problem(self.key_value.label, "", "missing record key"),
                        spec.where_key(self.table.at + ("record_key",)))
            self.result.rejections = self._placed(self.failed.rejections())
            return self.result
        for scope in self._visits():
            self._visit(scope)
        if not spec.tabular:
            for rule in spec.rules:
                if rule.per_document:
                    self.run(rule, root)
        self.result.seen = root.seen or set()
        if check:
            self._validate()
        return self._settled()

    def _visits(self) -> list[Scope]:
        try:
            return list(visit_scopes(self.spec, self.root))
        except Problem as problem:
            self.reject(problem, self.spec.where_key(("source", "items")))
            return []

    def _visit(self, scope: Scope) -> None:
        spec = self.spec
        scope.place = (self.row.file, self.row.line, scope.item_path)
        try:
            scope.visit = visit_of(spec, scope)
        except Problem as problem:
            self.reject(problem, spec.where_key(self.table.at + ("visit",)))
            return
        day = scope.get(self.table.visit_date) if self.table.visit_date else None
        if day is not None and not day.empty:  # checked once here, not by every rule that dates its resource
            try:
                scope.visit_date = date_of(day, spec.source["date_formats"], spec.source["format"] in WORKBOOKS)
            except Problem as problem:
                scope.visit_date = "1900-01-01"  # only to name what the visit would have made
                self._rejected_visit(problem, spec.where_key(self.table.at + ("visit_date",)), scope)
                return
        before, failures = len(self.made), len(self.failed)
        for rule in spec.rules:
            if spec.tabular or not rule.per_document:
                self.run(rule, scope)
        if len(self.made) == before and not spec.tabular and len(self.failed) == failures:
            label = scope.get(self.table.visit_field).label
            self.warn(label, scope.visit or "", spec.where_key(self.table.at + ("visit",)), "this visit makes no resource")
        self.made += visit_encounter(spec, self.key, self.record, scope, self.made[before:])  # visits.py

    def _rejected_visit(self, problem: Problem, where: str, scope: Scope) -> None:
        lost: list[str] = []
        if scope.visit is not None:
            for rule in self.spec.rules:
                if self.spec.tabular or not rule.per_document:
                    self.run(rule, scope, lost)
        self.reject(problem, where, [ref for ref in lost if "/" in ref])

    def run(self, rule: Rule, scope: Scope, lost: list[str] | None = None) -> None:
        """One rule in one scope; `lost`: the visit is rejected, only collect what it would make."""
        context, number = Context(self.spec, self.key, self.record, scope), next(self.runs)
        try:
            if not holds(rule, scope) or idle(rule, scope):
                return
            read: set[str] = set()  # the cells its builder reads: a rejected one taints what it made
            scope.reads = read
            for item in items_of(rule, scope):
                context = Context(self.spec, self.key, self.record, item)
                self._build(rule, context, number, read, lost)
        except Problem as problem:
            if lost is None:
                self.reject(problem, rule, intended(context, rule), number if scope.reads is not None else None)
            else:
                lost += intended(context, rule)
        finally:
            scope.reads = None

    def _build(self, rule: Rule, context: Context, number: int, read: set[str], lost: list[str] | None) -> None:
        built = BUILDERS[rule.kind](context, rule)
        rule_made = built if isinstance(built, list) else [built] if built else []
        if lost is not None:
            lost += [ref_of(resource) for resource in rule_made]
            lost += [ref for _, refs in context.failures for ref in refs]
            return
        for problem, refs in context.failures:  # the builder kept the rest
            self.reject(problem, rule, refs, number)
        for note in context.notes:
            self.warn(note.column, note.value, self.spec.where(rule), note.reason)
        for twice in _distinct(rule_made, self.taken, self.key):
            self.reject(Problem(_value_label(rule), _shown(twice), f"a second value for {ref_of(twice)} in "
                                "this row (one per visit and code: the first is kept)"), rule, [], number)
        rule_made = [r for r in rule_made if not r.pop(_TWICE, False)]
        self.made.extend((rule, resource) for resource in rule_made)
        self.reads.update((id(resource), (number, read)) for resource in rule_made)
        if rule_made:
            self.result.fired.add(rule.index)
        dropped = None if built else _dropped(context, rule)
        if dropped:
            self.warn(dropped.column, dropped.value, self.spec.where(rule), dropped.reason)

    def _validate(self) -> None:
        for rule, resource in self.made:
            for issue in _validate(resource):
                self.failed.add(Rejection(self.row.file, self.row.line, "", "", self.spec.where(rule),
                                          f"invalid FHIR {resource['resourceType']}: {issue.expression or '-'}: "
                                          f"{issue.diagnostics}"), [ref_of(resource)])

    def _placed(self, found: list[Rejection]) -> list[Rejection]:
        """A workbook's rejections and warnings at the cell the site wrote (`随访!AB5`, under the
        header as written, before any reshaping); a problem of no one cell, at the row."""
        if not self.row.sheet:
            return found
        cells = self.root.cells
        return [dataclasses.replace(r, column=cells[r.column][0], cell=cells[r.column][1]) if r.column in cells
                else dataclasses.replace(r, cell=f"{self.row.sheet}!{self.row.line}:{self.row.line}") for r in found]

    def _settled(self) -> RecordResult:
        spec, row, result, failed = self.spec, self.row, self.result, self.failed
        kept = failed.settle(self.made, self.reads)
        if failed:  # a visit whose resources were all rejected keeps no Encounter of its own
            visited = {ref for _, resource in kept for ref in references_in(resource.get("encounter", {}))}
            kept = [(rule, r) for rule, r in kept if r["resourceType"] != "Encounter" or ref_of(r) in visited]
        if not kept and not failed:
            cell = self.root.get(self.table.visit_field) if spec.tabular else self.key_value  # what the row is
            failed.add(Rejection(
                row.file, row.line, cell.label, text_of(cell.raw), "",
                "the row makes no resource: no rule's `when` holds, or the fields its rules read are empty"), [])
        result.rejections = self._placed(failed.rejections())
        if result.rejections and self.root.history:  # quarantined with the rows it may read values from
            result.looked = {v.place[:2] for v in self.root.history if v.values} - {(row.file, row.line)}
        if not kept:
            result.warnings = []  # the row is quarantined whole
            return result
        result.warnings = self._placed(result.warnings)
        result.partly = bool(result.rejections)
        result.resources = [resource for _, resource in kept]
        result.resources.append(_provenance(spec, self.key, row, self.record, result.resources, self.recorded))
        for resource in result.resources:  # site segregation rests on this label (adapter/fhir/sites.py)
            with_site(resource, spec.site)
        result.written = [(r["resourceType"], r["id"], "mapped") for r in result.resources]
        return result


_TWICE = "__made twice__"  # marks a resource whose id the row had made already (never stored)


def _distinct(resources: list[dict[str, Any]], taken: set[str], key: bytes) -> list[dict[str, Any]]:
    """Two resources of one row with one id would be one, the second overwriting the first. Two
    adverse events with one term and onset (a fever of grade 1, then of grade 3) are two events:
    the second gets `-2`, and so on (in the row's order, so a re-ingest gives the same ids; nothing
    of a row refers to an adverse event). Anything else (two weights of one visit) is one value
    too many: it is marked _TWICE, and returned for the rejection."""
    twice: list[dict[str, Any]] = []
    for resource in resources:
        if ref_of(resource) in taken:
            if resource["resourceType"] != "AdverseEvent":
                resource[_TWICE] = True
                twice.append(resource)
                continue
            base, n = resource["id"], 2
            while f"AdverseEvent/{safe_id(key, base, str(n))}" in taken:
                n += 1
            resource["id"] = safe_id(key, base, str(n))
        taken.add(ref_of(resource))
    return twice


def _shown(resource: dict[str, Any]) -> str:
    """The value a resource holds, as a rejection shows it: a number, or a code."""
    if "valueQuantity" in resource:
        return str(resource["valueQuantity"].get("value", ""))
    codings: list[dict[str, Any]] = (resource.get("valueCodeableConcept") or {}).get("coding") or [{}]
    return str(codings[0].get("code", ""))


def _value_label(rule: Rule) -> str:
    """The column a rule takes its value from, when it is one (for a rejection naming it)."""
    value = rule.fields.get("value")
    return value if isinstance(value, str) else str(value.get("field", "")) if isinstance(value, dict) else ""


def _dropped(ctx: Context, rule: Rule) -> Problem | None:
    """Why a rule that made nothing dropped data: the first of its fields that is empty, when
    others hold values (an injection's route and lot without its date)."""
    empty, filled = [], []
    if rule.kind == "instrument":
        return None  # its items are read by number, and say themselves what they lack
    for name, expr in rule.fields.items():
        if name == "unit" or (isinstance(expr, dict) and "const" in expr):
            continue  # not read from the row
        try:
            value = ctx.value(rule, name)
        except Problem:
            filled.append(name)  # it holds something (the rule stopped before reading it)
            continue
        if value.empty:
            empty.append(value)
        else:
            filled.append(value.label)
    if not empty or not filled:
        return None
    return Problem(empty[0].label, "", f"empty, so this {rule.kind} rule made nothing, though "
                   f"{', '.join(filled)} hold{'s' if len(filled) == 1 else ''} values")


def _site_agent(spec: MappingSpec) -> dict[str, Any]:
    """The site's Organization when the protocol lists sites (mapping check: this one among
    them); a protocol without `sites:` makes no Organization to name: the site's identifier."""
    if spec.site in spec.catalogue.sites:
        return {"reference": f"Organization/{spec.site}", "display": spec.catalogue.sites[spec.site]}
    if spec.site_entry is not None:  # declared beside the mapping: each ingest writes its Organization
        return {"reference": f"Organization/{spec.site}", "display": spec.site_entry["name"]}
    return {"identifier": {"system": f"{spec.catalogue.base}/{SITE_SYSTEM_PATH}", "value": spec.site},
            "display": spec.data["mapping"].get("title", spec.site)}


def _provenance(spec: MappingSpec, key: bytes, row: SourceRow, record: str, targets: list[dict[str, Any]],
                recorded: str) -> dict[str, Any]:
    base = spec.catalogue.base
    digest = keyed_hash(key, jsonio.dumps(row.values, sort_keys=True))
    identity = keyed_hash(key, "\x1f".join(unique_key(spec, row)).encode())[:16]
    file = pathlib.Path(row.file).name + (f" sheet {row.sheet} row" if row.sheet else " line")
    return {
        "resourceType": "Provenance", "id": safe_id(key, spec.site, "provenance", identity),
        "target": [{"reference": f"{r['resourceType']}/{r['id']}"} for r in targets],
        "recorded": recorded,
        "policy": [f"{base}/mapping/{spec.name}/{spec.version}"],
        "agent": [
            {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                                  "code": "assembler"}]},
             "who": {"display": f"fhir-adapter mapping {spec.name} {spec.version}"}},
            {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                                  "code": "author"}]},
             "who": _site_agent(spec)}],
        "entity": [{"role": "source", "what": {
            "identifier": {"system": f"{base}/sid/source-record-hmac-sha256", "value": digest},
            "display": f"{spec.site} {file} {row.line} (record {record})"}}]}
