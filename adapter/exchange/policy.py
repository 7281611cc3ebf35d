"""Exchange policies: what of a site's data may leave it, declared in `mappings/exchange/*.yaml`.

A policy is an allow-list. Each rule names an element by a FHIRPath path (`Patient.birthDate`;
`Resource.meta` for every type) and keeps, redacts, generalizes (a date to its year or
year-month) or pseudonymizes it (every Identifier becomes a study pseudonym: an HMAC-SHA256 of
system|value with the site's exchange key, so the same child has the same pseudonym at every
pull and nobody without the key can go back). An element no rule names, at any depth, is
redacted, as is a type no rule names: an element added to a mapping later cannot leak by
omission. The most specific rule wins; a rule on an element covers what is inside it. What a
`keep` keeps is decided by each element's datatype (scrub.py): never free text, unless a rule
names that very element and says why; every date of a child's resources moves by one offset of
the child's own (deidentify.py); and the quasi-identifiers the policy declares leave only as
generalised as k-anonymity needs (anonymity.py).

Ids of the `rekey_ids` types, and every reference to them, become `<site>-<keyed hash>`: an id
like `site-a-A0001` carries the site's record number. Only a site's own data leaves: a resource
without exactly one site label (a protocol definition, or one whose site cannot be told) stays. Every resource that leaves
carries the policy's stamp in `meta.security` (system EXCHANGE_POLICY_SYSTEM, the policy's name
as code, its version as the coding's version).
"""
from __future__ import annotations

import functools
import os
import pathlib
import re
from dataclasses import dataclass, field
from typing import Any

from adapter.exchange.anonymity import KAnonymity
from adapter.fhir.datatypes import FREE_TEXT, element_type
from adapter.fhir.definitions import r4_schema, resource_types
from adapter.yamlspec import SpecError, load_checked, package_schema

__all__ = ["Policy", "Rule", "RuleNode", "rule_kind", "load_policy", "EXCHANGE_POLICY_SYSTEM", "policy_path", "SpecError"]

EXCHANGE_POLICY_SYSTEM = "http://ucmsc-cp.example.org/fhir/CodeSystem/exchange-policy"
# Elements of every resource, for `Resource.*` rules (checked against Patient, which has them all).
_ANY = "Resource"


@dataclass(frozen=True)
class Rule:
    path: str
    action: str  # keep | redact | generalize | pseudonymize
    to: str | None = None  # generalize: year | year-month
    age_at_enrolment: bool = False
    line: int = 0
    why: str = ""


@dataclass
class RuleNode:
    """The rules under one element path: its own rule (None: inherit) and its children's."""

    rule: Rule | None = None
    children: dict[str, RuleNode] = field(default_factory=dict)
    keeps_below: bool = False  # some rule below keeps or transforms: the element cannot go whole

    def child(self, key: str) -> RuleNode | None:
        node = self.children.get(key)
        if node is None and key[:1] != "_" and key != key.lower():  # valueQuantity -> value[x]
            stem = re.match(r"[a-z][a-z0-9]*(?:[A-Z][a-z0-9]*)*?(?=[A-Z])", key)
            if stem:
                node = self.children.get(stem.group(0) + "[x]")
        return node


@dataclass(frozen=True)
class Policy:
    name: str
    version: str
    title: str
    pseudonym_system: str
    rekey_ids: frozenset[str]
    rules: tuple[Rule, ...]
    file: str
    non_personal_identifiers: tuple[str, ...] = ()
    extensions: frozenset[str] = frozenset()  # extensions that may leave (the adapter's own: no free text)
    shift_days: int = 180  # every date of a child's resources moves by one offset within +/- this
    k_anonymity: KAnonymity | None = None

    @property
    def stamp(self) -> dict[str, str]:
        return {"system": EXCHANGE_POLICY_SYSTEM, "code": self.name, "version": self.version}

    @functools.cached_property
    def _trees(self) -> dict[str, RuleNode]:
        trees: dict[str, RuleNode] = {}
        for rtype in sorted({r.path.split(".")[0] for r in self.rules} - {_ANY}) or []:
            trees[rtype] = _tree([r for r in self.rules if r.path.split(".")[0] in (rtype, _ANY)])
        return trees

    def release_problems(self) -> list[str]:
        """What the policy's rules would let out that no data can make safe: a birth date finer
        than its year (HIPAA Safe Harbor's bound; with the age at enrolment and the enrolment
        date, a year-month narrowed the birth date to a few weeks)."""
        rule = next((r for r in self.rules if r.path == "Patient.birthDate"), None)
        if rule is not None and (rule.action == "keep" or (rule.action == "generalize" and rule.to != "year")):
            return [f"Patient.birthDate ({rule.action}{' to ' + rule.to if rule.to else ''}, line {rule.line}) leaves "
                    "finer than its year: a birth date may leave as its year at most, with the age at enrolment"]
        return []

    @functools.cached_property
    def free_text_kept(self) -> frozenset[str]:
        """The element paths whose free text a rule keeps on purpose (with its why)."""
        return frozenset(r.path for r in self.rules if r.action == "keep" and rule_kind(r.path) in FREE_TEXT)

    def tree(self, rtype: str) -> RuleNode | None:
        """The rules of one type; None when no rule names the type (nothing of it leaves)."""
        return self._trees.get(rtype)


def _tree(rules: list[Rule]) -> RuleNode:
    root = RuleNode()
    # Resource.* first, so that a type's own rule on the same element wins.
    for rule in sorted(rules, key=lambda r: r.path.startswith(_ANY + ".") is False):
        node = root
        for part in rule.path.split(".")[1:]:
            if rule.action != "redact":
                node.keeps_below = True
            node = node.children.setdefault(part, RuleNode())
        node.rule = rule
    return root


def policy_path(directory: str | os.PathLike[str], name: str) -> pathlib.Path:
    """mappings/exchange/NAME.yaml; a name that is no plain name never reaches the disk."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,40}", name):
        raise SpecError([f"{name!r} is no policy name (lower-case letters, digits and '-')"])
    return pathlib.Path(directory) / f"{name}.yaml"


def load_policy(path: str | pathlib.Path) -> Policy:
    """A checked policy; SpecError gives `file:line: key: message` for every problem."""
    data, lines = load_checked(path, package_schema("adapter.exchange", "policy.schema.json"))
    head = data["policy"]
    problems = []
    if pathlib.Path(path).stem != head["name"]:
        problems.append(lines.problem(("policy", "name"), f"the file {pathlib.Path(path).name} must be named "
                                      f"{head['name']}.yaml, the name clients are registered with"))
    rules: list[Rule] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(data["rules"]):
        rule = Rule(raw["path"], raw["action"], raw.get("to"), raw.get("age_at_enrolment", False),
                    lines.line(("rules", i)), raw.get("why", "").strip())
        problem = _element_problem(rule.path) or _free_text_problem(rule)
        if problem:
            problems.append(lines.problem(("rules", i, "path"), problem))
        if rule.path in seen:
            problems.append(lines.problem(("rules", i, "path"), f"{rule.path} has a rule already (line {seen[rule.path]})"))
        seen[rule.path] = rule.line
        if rule.age_at_enrolment and rule.path != "Patient.birthDate":
            problems.append(lines.problem(("rules", i, "age_at_enrolment"), "only Patient.birthDate gives an age"))
        rules.append(rule)
    for i, rtype in enumerate(head["rekey_ids"]):
        if rtype not in resource_types():
            problems.append(lines.problem(("policy", "rekey_ids", i), f"{rtype} is not an R4 resource type"))
    k = _k_anonymity(data.get("k_anonymity"), lines, problems)
    if problems:
        raise SpecError(problems)
    return Policy(head["name"], head["version"], head["title"], head["pseudonym_system"],
                  frozenset(head["rekey_ids"]), tuple(rules), str(path),
                  tuple(head.get("non_personal_identifiers", ())), frozenset(head.get("extensions", ())),
                  int(head.get("shift_days", 180)), k)


def rule_kind(path: str) -> str | None:
    """The datatype of the element a rule's path names (None: a whole resource)."""
    parts = path.split(".")
    owner, kind = "Patient" if parts[0] == _ANY else parts[0], None
    for part in parts[1:]:
        kind = element_type(owner, part.replace("[x]", "String") if part.endswith("[x]") else part)
        owner = kind or owner
    return kind


def _free_text_problem(rule: Rule) -> str | None:
    """`keep` of an element that holds free text (a string, an Annotation...) lets out what a
    person wrote: only with a reason written beside it, and only of the element named."""
    if rule.action != "keep" or "." not in rule.path or rule.why:
        return None
    kind = rule_kind(rule.path)
    if kind in FREE_TEXT:
        return (f"keep of {rule.path}, which holds free text ({kind}), needs its reason (why:): whatever a "
                "site's user writes there would leave")
    return None


def _k_anonymity(raw: dict[str, Any] | None, lines: Any, problems: list[str]) -> KAnonymity | None:
    if raw is None:
        return None
    qis = tuple(raw["quasi_identifiers"])
    hierarchies = {qi: tuple(levels) for qi, levels in raw.get("hierarchies", {}).items()}
    for i, step in enumerate(raw.get("steps", [])):
        if step not in qis or step == "site":
            problems.append(lines.problem(("k_anonymity", "steps", i), f"{step!r} is no quasi-identifier this "
                                          "policy may generalise (the site is never generalised)"))
    for qi in hierarchies:
        if qi not in qis:
            problems.append(lines.problem(("k_anonymity", "hierarchies", qi), f"{qi!r} is no quasi-identifier here"))
    return KAnonymity(int(raw.get("k", 5)), float(raw.get("max_suppressed", 0.05)), qis, hierarchies,
                      tuple(raw.get("steps", ())))


def _element_problem(path: str) -> str | None:
    """Why `path` names no element of R4 (the official JSON Schema's properties), or None."""
    definitions = r4_schema()["definitions"]
    parts = path.split(".")
    rtype = "Patient" if parts[0] == _ANY else parts[0]
    if parts[0] != _ANY and parts[0] not in resource_types():
        return f"{parts[0]} is not an R4 resource type"
    definition: dict[str, Any] = definitions[rtype]
    for depth, part in enumerate(parts[1:], 1):
        properties = definition.get("properties", {})
        if part.endswith("[x]"):
            matches = [k for k in properties if k.startswith(part[:-3]) and k[len(part[:-3]):][:1].isupper()]
            prop = properties[matches[0]] if matches else None
        else:
            prop = properties.get(part)
        if prop is None:
            return f"{'.'.join(parts[:depth + 1])}: {part} is not an element of {'.'.join(parts[:depth])}"
        ref = (prop.get("items") or prop).get("$ref", "")
        definition = definitions.get(ref.rsplit("/", 1)[-1], {})
    return None


