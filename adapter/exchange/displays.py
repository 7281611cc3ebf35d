"""A code system's own displays: the only Coding.display a policy lets leave (a display that is
not the code system's own may be anything a site's user typed).

From the CodeSystems the site's store holds (the protocol's local codes, the catalogue's, a
site's own), the reference table of external codes (mappings/reference/codes.yaml) and the R4
core code systems of the required bindings.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

import orjson

from adapter.fhir.search import parse_search
from adapter.mapping.reference import load_reference
from adapter.outcomes.memo import remember
from adapter.store.repository import Repository
from adapter.terminology.core import core_code_system

__all__ = ["known_displays"]

Displays = dict[tuple[str, str], str]


def known_displays(store: Repository) -> Callable[[str, str], str | None]:
    """(system, code) -> the system's own display, or None when unknown."""
    held = remember(store, "code system displays", "all", lambda: dict(_held(store)))
    reference = _reference()

    def display(system: str, code: str) -> str | None:
        found = held.get((system, code)) or reference.get((system, code))
        if found is None:
            core = core_code_system(system)
            found = next((c.get("display") for c in (core or {}).get("concept", []) if c.get("code") == code), None)
        return found
    return display


def _held(store: Repository) -> Iterator[tuple[tuple[str, str], str]]:
    request = parse_search("CodeSystem", [("_count", "200"), ("_total", "none")])
    for page in store.scan(request):
        for entry in page:
            system = orjson.loads(entry.data or b"{}")
            url = system.get("url")
            if isinstance(url, str):
                yield from ((((url, code), text) for code, text in _concepts(system.get("concept") or [])))


def _concepts(concepts: list[Any]) -> Iterator[tuple[str, str]]:
    for concept in concepts:
        if isinstance(concept, dict) and isinstance(concept.get("code"), str):
            if isinstance(concept.get("display"), str):
                yield concept["code"], concept["display"]
            yield from _concepts(concept.get("concept") or [])


@functools.cache
def _reference() -> Displays:
    data = load_reference().data["systems"]
    return {(system, str(code)): str(entry["display"]) for system, table in data.items()
            for code, entry in (table.get("codes") or {}).items() if isinstance(entry, dict) and entry.get("display")}
