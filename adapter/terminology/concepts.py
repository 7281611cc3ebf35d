"""A CodeSystem's concepts as an index: every concept by code, and the hierarchy both ways,
from the nesting of `concept` and from `parent` / `child` properties
(https://hl7.org/fhir/R4/codesystem.html#hierarchy). Built per call: the code systems served
here are small, and an index is a walk over one resource."""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from adapter.fhir.outcomes import FhirError, Issue

__all__ = ["Concepts", "value_of", "INACTIVE_STATUSES", "MAX_CONCEPTS"]

INACTIVE_STATUSES = frozenset({"retired", "inactive"})  # values of the standard `status` property
# A CodeSystem may come in a request body ($validate-code's codeSystem): no statement runs while
# it is indexed, so the request deadline cannot stop the work; the size must.
MAX_CONCEPTS = 100_000


def value_of(holder: dict[str, Any]) -> tuple[str, Any] | None:
    """(suffix, value) of an element's value[x], e.g. ("Code", "male"); None when it has none."""
    for key, value in holder.items():
        if key.startswith("value") and len(key) > 5:
            return key[5:], value
    return None


@dataclass
class Concepts:
    resource: dict[str, Any]
    by_code: dict[str, dict[str, Any]] = field(default_factory=dict)
    parents: dict[str, list[str]] = field(default_factory=dict)
    children: dict[str, list[str]] = field(default_factory=dict)
    links: set[tuple[str, str]] = field(default_factory=set)  # (parent, child): a link made once, in O(1)
    folded: dict[str, str] = field(default_factory=dict)  # lower-case code -> code, when case-insensitive

    @classmethod
    def of(cls, code_system: dict[str, Any]) -> Concepts:
        index = cls(code_system)
        index._walk(code_system.get("concept") or [], None)
        for code, concept in index.by_code.items():
            for prop in concept.get("property") or []:
                target = value_of(prop)
                if target is None or not isinstance(target[1], str):
                    continue
                if prop.get("code") == "parent":
                    index._link(target[1], code)
                elif prop.get("code") == "child":
                    index._link(code, target[1])
        if code_system.get("caseSensitive") is False:
            index.folded = {code.lower(): code for code in index.by_code}
        return index

    def _walk(self, concepts: list[Any], parent: str | None) -> None:
        for concept in concepts:
            if not isinstance(concept, dict) or not isinstance(concept.get("code"), str):
                continue
            code = concept["code"]
            if len(self.by_code) >= MAX_CONCEPTS and code not in self.by_code:
                raise FhirError(422, [Issue("too-costly", f"the CodeSystem {self.resource.get('url', '')} has more "
                                            f"than {MAX_CONCEPTS} concepts: too many to index here", "CodeSystem.concept")])
            self.by_code.setdefault(code, {k: v for k, v in concept.items() if k != "concept"})
            if parent is not None:
                self._link(parent, code)
            self._walk(concept.get("concept") or [], code)

    def _link(self, parent: str, child: str) -> None:
        if parent != child and (parent, child) not in self.links:
            self.links.add((parent, child))
            self.children.setdefault(parent, []).append(child)
            self.parents.setdefault(child, []).append(parent)

    @property
    def url(self) -> str:
        return str(self.resource.get("url", ""))

    @property
    def version(self) -> str | None:
        return self.resource.get("version")

    @property
    def complete(self) -> bool:
        """Whether every code of the system is here (else an unknown code may still exist)."""
        return self.resource.get("content", "complete") == "complete"

    def code(self, code: str) -> str | None:
        """The code as the system writes it, or None when it has no such code."""
        if code in self.by_code:
            return code
        return self.folded.get(code.lower()) if self.folded else None

    def get(self, code: str) -> dict[str, Any] | None:
        found = self.code(code)
        return self.by_code[found] if found is not None else None

    def _reach(self, start: str, links: dict[str, list[str]]) -> set[str]:
        seen: set[str] = set()
        todo = list(links.get(start, []))
        while todo:  # a walk, not recursion: a parent property may close a cycle
            code = todo.pop()
            if code not in seen:
                seen.add(code)
                todo.extend(links.get(code, []))
        seen.discard(start)
        return seen

    def descendants(self, code: str) -> set[str]:
        return self._reach(code, self.children)

    def ancestors(self, code: str) -> set[str]:
        return self._reach(code, self.parents)

    def properties(self, code: str) -> Iterator[tuple[str, str, Any]]:
        """(property code, value[x] suffix, value) of a concept: its own properties, then its
        parents and children (as Code values, R4's standard `parent` and `child`)."""
        concept = self.by_code[code]
        own = [(p.get("code"), *v) for p in concept.get("property") or [] if (v := value_of(p))
               and p.get("code") not in ("parent", "child")]
        yield from own
        yield from (("parent", "Code", p) for p in self.parents.get(code, []))
        yield from (("child", "Code", c) for c in self.children.get(code, []))

    def property_texts(self, code: str, name: str) -> list[str]:
        """A property's values as text, for filters (`=`, exists): a Coding by its code, a
        boolean as true/false."""
        texts = []
        for prop, _kind, value in self.properties(code):
            if prop == name:
                if isinstance(value, bool):
                    texts.append("true" if value else "false")
                elif isinstance(value, dict):
                    texts.append(str(value.get("code", "")))
                else:
                    texts.append(str(value))
        return texts

    def abstract(self, code: str) -> bool:
        return "true" in self.property_texts(code, "notSelectable")

    def inactive(self, code: str) -> bool:
        return ("true" in self.property_texts(code, "inactive")
                or bool(INACTIVE_STATUSES & set(self.property_texts(code, "status"))))

    def all_codes(self) -> Iterable[str]:
        return self.by_code.keys()
