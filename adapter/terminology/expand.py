"""ValueSet/$expand (https://hl7.org/fhir/R4/valueset-operation-expand.html): a value set's
codes from its compose (https://hl7.org/fhir/R4/valueset.html#compose) over the code systems
the repository holds, or from an expansion it already carries.

Handled: an include of a whole stored code system, of a concept list (displays and
designations from the code system when it is stored), of filters on a stored code system
(is-a, descendent-of, is-not-a, generalizes, =, in, not-in, exists), of other value sets
(imports, intersected), and excludes of the same. A whole-system include of a code system not
held here (LOINC, SNOMED CT) cannot be expanded: a 422 that says so, as is any other filter
operator. The expansion is flat: R4 lets a server leave out the hierarchy, which is what
excludeNested asks for anyway.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from adapter.fhir.dates import now_instant
from adapter.fhir.outcomes import FhirError, Issue
from adapter.store.repository import Repository
from adapter.terminology.concepts import Concepts
from adapter.terminology.resolve import find, split_canonical

__all__ = ["Member", "members", "expand", "MAX_EXPANSION"]

MAX_EXPANSION = 10_000  # codes: past this an expansion is refused as too costly, never cut short
_HIERARCHY = ("is-a", "descendent-of", "is-not-a", "generalizes")


@dataclass(frozen=True)
class Member:
    system: str | None
    code: str
    display: str | None = None
    version: str | None = None
    abstract: bool = False
    inactive: bool = False
    designation: tuple[dict[str, Any], ...] = ()

    @property
    def key(self) -> tuple[str | None, str]:
        return self.system, self.code

    def as_contains(self, designations: bool) -> dict[str, Any]:
        entry: dict[str, Any] = {"system": self.system} if self.system else {}
        entry |= {"abstract": True} if self.abstract else {}
        entry |= {"inactive": True} if self.inactive else {}
        entry |= {"version": self.version} if self.version else {}
        entry["code"] = self.code
        entry |= {"display": self.display} if self.display else {}
        if designations and self.designation:
            entry["designation"] = list(self.designation)
        return entry


def _unexpandable(code: str, message: str, expression: str) -> FhirError:
    return FhirError(422, [Issue(code, message, expression)])


class _Expander:
    def __init__(self, repo: Repository) -> None:
        self.repo = repo
        self.systems: dict[tuple[str, str | None], Concepts | None] = {}
        self.used: dict[str, str | None] = {}  # code systems drawn on: url -> version
        self.partial: set[str] = set()  # code systems drawn on whole that are held in part (fragment)
        self.imports: dict[str, list[Member]] = {}  # imported value sets, expanded once a call

    def code_system(self, url: str, version: str | None) -> Concepts | None:
        if (url, version) not in self.systems:
            found = find(self.repo, "CodeSystem", url, version)
            self.systems[(url, version)] = Concepts.of(found) if found is not None else None
        return self.systems[(url, version)]

    def members(self, vs: dict[str, Any], path: str, seen: frozenset[str]) -> list[Member]:
        compose = vs.get("compose")
        if not isinstance(compose, dict):
            if isinstance(vs.get("expansion"), dict):
                return list(_flatten(vs["expansion"].get("contains") or []))
            raise _unexpandable("not-supported", f"the ValueSet {vs.get('url', '')} has neither a compose nor an "
                                "expansion: nothing to expand", path)
        seen = seen | {vs.get("url", "")}
        found: dict[tuple[str | None, str], Member] = {}
        for i, rule in enumerate(compose.get("include") or []):
            for member in self.rule(rule, f"{path}.compose.include[{i}]", seen):
                found.setdefault(member.key, member)
                if len(found) > MAX_EXPANSION:
                    raise _unexpandable("too-costly", f"the ValueSet {vs.get('url', '')} holds more than "
                                        f"{MAX_EXPANSION} codes: too many to expand here", path)
        for i, rule in enumerate(compose.get("exclude") or []):
            for member in self.rule(rule, f"{path}.compose.exclude[{i}]", seen):
                found.pop(member.key, None)
        return list(found.values())

    def rule(self, rule: dict[str, Any], path: str, seen: frozenset[str]) -> list[Member]:
        imported: list[set[tuple[str | None, str]]] = []
        first: list[Member] = []
        for j, url in enumerate(rule.get("valueSet") or []):
            if split_canonical(url, None)[0] in seen:
                raise _unexpandable("processing", f"the value set {url} includes itself (through {path})",
                                    f"{path}.valueSet[{j}]")
            if url not in self.imports:
                other = find(self.repo, "ValueSet", url)
                if other is None:
                    raise _unexpandable("not-found", f"the value set {url} that {path} imports is not on this "
                                        "server", f"{path}.valueSet[{j}]")
                self.imports[url] = self.members(other, f"{path}.valueSet[{j}]", seen)
            these = self.imports[url]
            imported.append({m.key for m in these})
            first = first or these
        system = rule.get("system")
        if not system:
            return [m for m in first if all(m.key in keys for keys in imported)]
        members = self.from_system(rule, system, path)
        return [m for m in members if all(m.key in keys for keys in imported)]

    def from_system(self, rule: dict[str, Any], system: str, path: str) -> list[Member]:
        version = rule.get("version")
        index = self.code_system(system, version)
        if index is not None:
            self.used[system] = index.version
        if rule.get("concept"):
            return [m for c in rule["concept"] if (m := _listed(c, system, version, index)) is not None]
        if index is None or index.resource.get("content") not in (None, "complete", "fragment"):
            held = "not held by this server" if index is None else \
                f"held here without its codes (content {index.resource.get('content')})"
            raise _unexpandable("not-supported", f"the code system {system} is {held}: a value set that "
                                f"includes all of it (or filters it) cannot be expanded here; list its codes "
                                f"in compose.include.concept instead", f"{path}.system")
        if not index.complete:
            self.partial.add(system)
        codes = list(index.all_codes())
        for k, f in enumerate(rule.get("filter") or []):
            keep = _filter(index, codes, f, f"{path}.filter[{k}]")
            codes = [c for c in codes if c in keep]
        return [_member(index, c, version) for c in codes]


def _member(index: Concepts, code: str, version: str | None) -> Member:
    concept = index.by_code[code]
    return Member(index.url, code, concept.get("display"), version or index.version, index.abstract(code),
                  index.inactive(code), tuple(concept.get("designation") or ()))


def _listed(concept: dict[str, Any], system: str, version: str | None, index: Concepts | None) -> Member | None:
    code = concept.get("code")
    if not isinstance(code, str):
        return None
    if index is None:
        return Member(system, code, concept.get("display"), version, designation=tuple(concept.get("designation") or ()))
    known = index.code(code)
    if known is None:  # a code the (complete) system does not define is no member
        return None if index.complete else Member(system, code, concept.get("display"), version)
    member = _member(index, known, version)
    if concept.get("display") or concept.get("designation"):
        member = Member(member.system, member.code, concept.get("display") or member.display, member.version,
                        member.abstract, member.inactive,
                        tuple(concept.get("designation") or ()) or member.designation)
    return member


def _texts(index: Concepts, code: str, prop: str) -> list[str]:
    if prop in ("concept", "code"):
        return [code]
    if prop == "display":
        return [str(index.by_code[code].get("display", ""))]
    return index.property_texts(code, prop)


def _filter(index: Concepts, codes: list[str], f: dict[str, Any], path: str) -> set[str]:
    """The codes of `codes` one include.filter keeps."""
    prop, op, value = str(f.get("property", "")), f.get("op"), str(f.get("value", ""))
    if op in _HIERARCHY:
        root = index.code(value)
        if root is None:
            return set(codes) if op == "is-not-a" else set()
        below = index.descendants(root)
        if op == "is-a":
            return below | {root}
        if op == "descendent-of":
            return below
        if op == "generalizes":
            return index.ancestors(root) | {root}
        return set(codes) - below - {root}
    if op == "=":
        return {c for c in codes if value in _texts(index, c, prop)}
    if op in ("in", "not-in"):
        values = {v.strip() for v in value.split(",")}
        hits = {c for c in codes if values & set(_texts(index, c, prop))}
        return hits if op == "in" else set(codes) - hits
    if op == "exists":
        return {c for c in codes if bool(_texts(index, c, prop)) == (value == "true")}
    raise _unexpandable("not-supported", f"the filter operator {op!r} is not supported here (is-a, "
                        "descendent-of, is-not-a, generalizes, =, in, not-in, exists are)", f"{path}.op")


def _flatten(contains: list[Any]) -> Any:
    for entry in contains:
        if not isinstance(entry, dict):
            continue
        if isinstance(entry.get("code"), str):
            yield Member(entry.get("system"), entry["code"], entry.get("display"), entry.get("version"),
                         bool(entry.get("abstract")), bool(entry.get("inactive")),
                         tuple(entry.get("designation") or ()))
        yield from _flatten(entry.get("contains") or [])


def members(repo: Repository, vs: dict[str, Any]) -> tuple[list[Member], set[str]]:
    """Every code of the value set, in compose order, each once; and the code systems it draws
    on whole that are held here only in part (their other codes are unknown here)."""
    expander = _Expander(repo)
    return expander.members(vs, "ValueSet", frozenset()), expander.partial


def expand(repo: Repository, vs: dict[str, Any], text: str | None = None, offset: int = 0,
           count: int | None = None, designations: bool = False, active_only: bool = False,
           echo: list[dict[str, Any]] | None = None, selectable_only: bool = False) -> dict[str, Any]:
    """The ValueSet with an expansion: codes matching `text` (case-insensitive, in the code or
    the display), active ones only if asked, selectable ones only if asked (excludeNotForUI:
    abstract codes are for grouping, not for a pick list), `count` of them from `offset`, the
    total of all. A code system drawn on whole that is held only in part is named in a
    `fragment` parameter: its other codes are not in the expansion because they are unknown."""
    expander = _Expander(repo)
    found = expander.members(vs, "ValueSet", frozenset())
    if active_only:
        found = [m for m in found if not m.inactive]
    if selectable_only:
        found = [m for m in found if not m.abstract]
    if text:
        needle = text.casefold()
        found = [m for m in found if needle in m.code.casefold() or needle in (m.display or "").casefold()]
    page = found[offset:] if count is None else found[offset:offset + count]
    used = [{"name": "version", "valueUri": f"{url}|{version}" if version else url}
            for url, version in expander.used.items()]
    used += [{"name": "fragment", "valueUri": url} for url in sorted(expander.partial)]
    expansion: dict[str, Any] = {"identifier": f"urn:uuid:{uuid.uuid4()}", "timestamp": now_instant(),
                                 "total": len(found), "offset": offset}
    if echo or used:
        expansion["parameter"] = (echo or []) + used
    if page:
        expansion["contains"] = [m.as_contains(designations) for m in page]
    return {k: v for k, v in vs.items() if k not in ("text", "meta", "expansion")} | {"expansion": expansion}
