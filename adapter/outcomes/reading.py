"""What an outcome report reads from the store, in as few passes as it can.

The Observations of one code, each with the Encounter that places it at a visit, come in one
search with `_include=Observation:encounter` (pages of 1,000): a report never reads the
Encounters of other measurements, nor Encounters one by one. Stored bytes were validated on
the way in, so they are parsed with orjson; a number keeps its shortest decimal text.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson

from adapter.fhir.search import encode_cursor, parse_search
from adapter.fhir.sites import sites_of
from adapter.store.repository import Repository

__all__ = ["Measured", "measured_at_visits", "study_subjects", "pages"]

PAGE = 1000


def pages(repo: Repository, resource_type: str, params: list[tuple[str, str]]) -> Iterator[tuple[list[Any], list[Any]]]:
    """Every page of a search: (matches, included), each parsed."""
    cursor: tuple[Any, ...] | None = None
    while True:
        extra = [("_cursor", encode_cursor(cursor))] if cursor else []
        page = repo.search(parse_search(resource_type, params + [("_count", str(PAGE)), ("_total", "none")] + extra))
        yield ([orjson.loads(e.data) for e in page.entries if e.data],
               [orjson.loads(e.data) for e in page.included if e.data])
        cursor = page.next_cursor
        if cursor is None:
            return


@dataclass(frozen=True)
class Measured:
    value: Decimal
    observation: str  # Observation/id
    day: str  # YYYY-MM-DD: the Observation's effective date ("" when it has none)
    encounter: str  # Encounter/id


def _value(observation: dict[str, Any]) -> Decimal | None:
    quantity = observation.get("valueQuantity", {}).get("value")
    value = quantity if quantity is not None else observation.get("valueInteger")
    return None if value is None or isinstance(value, bool) else Decimal(repr(value))


def _visit(encounter: dict[str, Any], visit_system: str | None) -> str | None:
    for kind in encounter.get("type", [])[:1]:
        for coding in kind.get("coding", [])[:1]:
            if visit_system is None or coding.get("system") == visit_system:
                return str(coding.get("code"))
    return None


def measured_at_visits(repo: Repository, system: str, code: str, visit_system: str | None = None,
                       period: tuple[str, str] | None = None) -> dict[tuple[str, str], Measured]:
    """(Patient/id, visit key) -> the value of the code measured at that visit: the first
    Observation by id when there are several. An Observation with no value, no Encounter of a
    visit, or (with a period) taken on a day outside it, places nothing."""
    found: dict[tuple[str, str], Measured] = {}
    for observations, encounters in pages(repo, "Observation", [("code", f"{system}|{code}"),
                                                                 ("_include", "Observation:encounter"),
                                                                 ("_sort", "_id")]):
        visits = {f"Encounter/{e['id']}": _visit(e, visit_system) for e in encounters}
        for observation in observations:
            value = _value(observation)
            encounter = observation.get("encounter", {}).get("reference", "")
            visit = visits.get(encounter)
            day = str(observation.get("effectiveDateTime", ""))[:10]
            if value is None or visit is None or (period and not period[0] <= day <= period[1]):
                continue
            patient = observation.get("subject", {}).get("reference", "")
            found.setdefault((patient, visit), Measured(value, f"Observation/{observation['id']}", day, encounter))
    return found


def study_subjects(repo: Repository, study: str) -> dict[str, tuple[str, str]]:
    """Patient/id -> (arm, site label; "" when it has none or several) of the study's children."""
    subjects = {}
    for found, _ in pages(repo, "ResearchSubject", [("study", f"ResearchStudy/{study}")]):
        for subject in found:
            sites = sites_of(subject)
            subjects[subject["individual"]["reference"]] = (subject.get("assignedArm", ""),
                                                            next(iter(sites)) if len(sites) == 1 else "")
    return subjects
