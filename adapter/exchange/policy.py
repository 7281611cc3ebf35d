"""Exchange policies: what of a site's data may leave it, declared in `mappings/exchange/*.yaml`.

A policy is an allow-list. Each rule names an element by a FHIRPath path (`Patient.birthDate`;
`Resource.meta` for every type) and keeps, redacts, generalizes (a date to its year or
year-month) or pseudonymizes it (every Identifier becomes a study pseudonym: an HMAC-SHA256 of
system|value with the site's exchange key, so the same child has the same pseudonym at every
pull and nobody without the key can go back). An element no rule names, at any depth, is
redacted, as is a type no rule names: an element added to a mapping later cannot leak by
omission. The most specific rule wins; a rule on an element covers what is inside it.

Ids of the `rekey_ids` types, and every reference to them, become `<site>-<keyed hash>`: an id
like `site-a-A0001` carries the site's record number. Only a site's own data leaves: a resource
without exactly one site label (a protocol definition, or one whose site cannot be told) stays. Every resource that leaves
carries the policy's stamp in `meta.security` (system EXCHANGE_POLICY_SYSTEM, the policy's name
as code, its version as the coding's version).
"""
from __future__ import annotations

import base64
import fnmatch
import functools
import hashlib
import hmac
import os
import pathlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import orjson

from adapter.fhir.definitions import r4_schema, resource_types
from adapter.fhir.extract import parse_reference
from adapter.fhir.sites import sites_of
from adapter.yamlspec import SpecError, load_checked, package_schema

__all__ = ["Policy", "Rule", "load_policy", "Deidentifier", "EXCHANGE_POLICY_SYSTEM", "AGE_AT_ENROLMENT",
           "policy_path", "SpecError"]

EXCHANGE_POLICY_SYSTEM = "http://ucmsc-cp.example.org/fhir/CodeSystem/exchange-policy"
AGE_AT_ENROLMENT = "http://ucmsc-cp.example.org/fhir/StructureDefinition/age-at-enrolment"
_UCUM = "http://unitsofmeasure.org"
# Elements of every resource, for `Resource.*` rules (checked against Patient, which has them all).
_ANY = "Resource"


@dataclass(frozen=True)
class Rule:
    path: str
    action: str  # keep | redact | generalize | pseudonymize
    to: str | None = None  # generalize: year | year-month
    age_at_enrolment: bool = False
    line: int = 0


@dataclass
class _Node:
    """The rules under one element path: its own rule (None: inherit) and its children's."""

    rule: Rule | None = None
    children: dict[str, _Node] = field(default_factory=dict)
    keeps_below: bool = False  # some rule below keeps or transforms: the element cannot go whole

    def child(self, key: str) -> _Node | None:
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

    @property
    def stamp(self) -> dict[str, str]:
        return {"system": EXCHANGE_POLICY_SYSTEM, "code": self.name, "version": self.version}

    @functools.cached_property
    def _trees(self) -> dict[str, _Node]:
        trees: dict[str, _Node] = {}
        for rtype in sorted({r.path.split(".")[0] for r in self.rules} - {_ANY}) or []:
            trees[rtype] = _tree([r for r in self.rules if r.path.split(".")[0] in (rtype, _ANY)])
        return trees

    def tree(self, rtype: str) -> _Node | None:
        """The rules of one type; None when no rule names the type (nothing of it leaves)."""
        return self._trees.get(rtype)


def _tree(rules: list[Rule]) -> _Node:
    root = _Node()
    # Resource.* first, so that a type's own rule on the same element wins.
    for rule in sorted(rules, key=lambda r: r.path.startswith(_ANY + ".") is False):
        node = root
        for part in rule.path.split(".")[1:]:
            if rule.action != "redact":
                node.keeps_below = True
            node = node.children.setdefault(part, _Node())
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
                    lines.line(("rules", i)))
        problem = _element_problem(rule.path)
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
    if problems:
        raise SpecError(problems)
    return Policy(head["name"], head["version"], head["title"], head["pseudonym_system"],
                  frozenset(head["rekey_ids"]), tuple(rules), str(path),
                  tuple(head.get("non_personal_identifiers", ())))


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


def _months_between(born: date, on: date) -> int:
    return (on.year - born.year) * 12 + on.month - born.month - (on.day < born.day)


class Deidentifier:
    """A policy with the site's exchange key: turns a stored resource into what may leave."""

    def __init__(self, policy: Policy, key: bytes, enrolment: Callable[[str], str | None] | None = None) -> None:
        self.policy, self._key = policy, key
        self._enrolment = enrolment or (lambda patient_id: None)  # Patient id -> date enrolled
        self._ids: dict[tuple[str, str, str], str] = {}

    def keyed(self, text: str) -> str:
        return hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()

    def seal(self, text: str, context: str = "") -> str:
        """`text` (a stored id in a paging cursor) sealed with the site's key (AES-GCM): the
        client can hand it back, neither read it nor make one up."""
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        nonce = os.urandom(12)
        box = AESGCM(self._sealing).encrypt(nonce, text.encode(), f"cursor|{context}".encode())
        return base64.urlsafe_b64encode(nonce + box).rstrip(b"=").decode()

    def unseal(self, token: str, context: str = "") -> str | None:
        """What `seal` sealed for the same `context`, or None when `token` is not such a seal
        (a cursor of an Observation search placed in a Patient search would place the stored
        id of a child's Observation among the Patients: `context` is the searched type)."""
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            return AESGCM(self._sealing).decrypt(raw[:12], raw[12:], f"cursor|{context}".encode()).decode()
        except (ValueError, InvalidTag, UnicodeDecodeError):
            return None

    @functools.cached_property
    def _sealing(self) -> bytes:
        return hmac.new(self._key, b"paging cursor seal", hashlib.sha256).digest()

    def new_id(self, site: str, rtype: str, rid: str) -> str:
        """The id a resource has outside the site: `<site>-<32 hex>` (the same every time)."""
        key = (site, rtype, rid)
        found = self._ids.get(key)
        if found is None:
            if len(self._ids) > 200_000:  # a long export must not grow without bound
                self._ids.clear()
            found = self._ids[key] = f"{site}-{self.keyed(f'{rtype}/{rid}')[:32]}"
        return found

    def apply(self, resource: dict[str, Any]) -> dict[str, Any] | None:
        rtype, rid = resource.get("resourceType", ""), resource.get("id")
        tree = self.policy.tree(rtype)
        if tree is None:
            return None
        sites = sites_of(resource)
        site = next(iter(sites)) if len(sites) == 1 else None
        if site is None:
            return None  # not one site's data (a definition, or whose it is cannot be told): it stays
        out = self._project(resource, tree, None, rtype) or {}
        out = {"resourceType": rtype, **({"id": self._id(site, rtype, rid)} if rid else {}),
               **{k: v for k, v in out.items() if k not in ("resourceType", "id")}}
        if rtype == "Patient":
            self._age(resource, out, tree)
        meta = out.setdefault("meta", {})
        meta["security"] = [*(c for c in meta.get("security", []) if c.get("system") != EXCHANGE_POLICY_SYSTEM),
                            self.policy.stamp]
        if self.policy.rekey_ids:
            out = orjson.loads(orjson.dumps(out))  # a copy: kept parts are the caller's own objects
            self._rekey_references(out, site)
        if rtype == "Group" and isinstance(out.get("member"), list):
            # members are stored in record-number order: in that order, the n-th shared id
            # would be the n-th record number. In the order of their shared ids, nothing.
            out["member"].sort(key=lambda m: str(((m or {}).get("entity") or {}).get("reference", "")))
        return out

    def _rekey_references(self, node: Any, site: str) -> None:
        """Every reference to a re-keyed type, however written (relative, absolute, versioned:
        parsed as the store parses it), becomes `Type/<shared id>`; the base and the version
        would tell the stored id or the site's history."""
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "reference" and isinstance(value, str):
                    rtype, rid = parse_reference(value)
                    if rtype in self.policy.rekey_ids and rid:
                        node[key] = f"{rtype}/{self.new_id(site, rtype, rid)}"
                else:
                    self._rekey_references(value, site)
        elif isinstance(node, list):
            for item in node:
                self._rekey_references(item, site)

    def _id(self, site: str, rtype: str, rid: str) -> str:
        return self.new_id(site, rtype, rid) if rtype in self.policy.rekey_ids else rid

    def _project(self, value: Any, node: _Node, inherited: Rule | None, rtype: str) -> Any:
        rule = node.rule or inherited
        action = rule.action if rule else "redact"
        if action == "redact" and not node.keeps_below:
            return None
        if rule is not None and action == "generalize":
            return _generalize(value, rule.to or "year") if isinstance(value, str) else None
        if rule is not None and action == "pseudonymize":
            return self._pseudonyms(value)
        if isinstance(value, list):
            items = [self._project(item, node, inherited, rtype) for item in value]
            return [i for i in items if i not in (None, {}, [])] or None
        if not isinstance(value, dict):
            return value if action == "keep" else None
        out = {}
        for key, item in value.items():
            child = node.child(key[1:] if key.startswith("_") else key)
            if child is None:  # no rule below: the element goes whole or not at all
                if action == "keep":
                    kept = self._scrubbed(key, item)
                    if kept not in (None, {}, []):
                        out[key] = kept
                continue
            child_rule = child.rule or rule
            if key.startswith("_") and child_rule is not None and child_rule.action in ("generalize", "pseudonymize"):
                continue  # the original value's extensions do not go with the transformed one
            kept = self._project(item, child, rule, rtype)
            if kept not in (None, {}, []):
                out[key] = kept
        return out or None

    def _scrubbed(self, key: str, value: Any) -> Any:
        """What a kept element holds that a rule on the element cannot foresee, whatever a
        mapping puts there later: contained resources (their narrative, names, birth dates) do
        not go; an Identifier anywhere (a Reference's, a valueIdentifier) becomes a pseudonym
        unless its system is a non-personal one; a Reference's display (a name) does not go."""
        if key == "contained":
            return None
        if key in ("identifier", "valueIdentifier"):
            if isinstance(value, list):
                return [self._identifier(i) for i in value if isinstance(i, dict)] or None
            return self._identifier(value) if isinstance(value, dict) else None
        if isinstance(value, list):
            items = [self._scrubbed(key, item) for item in value]
            return [i for i in items if i not in (None, {}, [])] or None
        if isinstance(value, dict):
            out = {}
            for k, item in value.items():
                if k == "display" and ("reference" in value or "identifier" in value):
                    continue
                kept = self._scrubbed(k, item)
                if kept not in (None, {}, []):
                    out[k] = kept
            return out or None
        return value

    def _identifier(self, identifier: dict[str, Any]) -> dict[str, Any] | None:
        system = str(identifier.get("system", ""))
        if system == self.policy.pseudonym_system or any(
                fnmatch.fnmatchcase(system, p) for p in self.policy.non_personal_identifiers):
            return identifier
        return self._pseudonyms(identifier)  # type: ignore[no-any-return]

    def _pseudonyms(self, value: Any) -> Any:
        identifiers = value if isinstance(value, list) else [value]
        out = []
        for identifier in identifiers:
            if isinstance(identifier, dict) and identifier.get("value"):
                pseudonym = {"system": self.policy.pseudonym_system,
                             "value": self.keyed(f"{identifier.get('system', '')}|{identifier['value']}")}
                if pseudonym not in out:
                    out.append(pseudonym)
        return (out or None) if isinstance(value, list) else (out[0] if out else None)

    def _age(self, source: dict[str, Any], out: dict[str, Any], tree: _Node) -> None:
        node = tree.children.get("birthDate")
        if node is None or node.rule is None or not node.rule.age_at_enrolment:
            return
        born, enrolled = source.get("birthDate"), self._enrolment(source.get("id", ""))
        if not (isinstance(born, str) and len(born) == 10 and enrolled and len(enrolled) >= 10):
            return
        # Completed months, not days: days and the (kept) enrolment date would give the birth date back.
        months = _months_between(date.fromisoformat(born), date.fromisoformat(enrolled[:10]))
        out.setdefault("extension", []).append({"url": AGE_AT_ENROLMENT, "valueAge": {
            "value": months, "unit": "mo", "system": _UCUM, "code": "mo"}})


def _generalize(value: str, to: str) -> str | None:
    """A date, dateTime or instant cut to its year or year-month (None when it is no date).

    Examples:
        >>> _generalize("2019-05-22", "year-month"), _generalize("2019-05-22T10:00:00Z", "year")
        ('2019-05', '2019')
    """
    match = re.match(r"(\d{4})(-\d{2})?", value)
    if not match:
        return None
    return match.group(1) + ((match.group(2) or "") if to == "year-month" else "")
