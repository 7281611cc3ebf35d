"""What an outcome report reads from the store, in as few passes as it can.

Three reads, each one statement over the search index (Repository.scan at_once): the study's
ResearchSubjects, the Encounters of the outcome's visits (by Encounter.type), the Observations
of the outcome's code. Paging by keyset instead gathers the matches again for every page (15x
the work at 50,000); an `_include` of each page's Encounters cost 10 s at 10,000 children.
Stored bytes were validated on the way in, so they are parsed with orjson; a number keeps its
shortest decimal text.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson

from adapter.fhir.search import parse_search
from adapter.fhir.sites import sites_of
from adapter.store.repository import Repository

__all__ = ["Measured", "measured_at_visits", "study_subjects", "matches"]

PAGE = 1000


def matches(repo: Repository, resource_type: str, params: list[tuple[str, str]]) -> Iterator[dict[str, Any]]:
    """Every match of a search, parsed, read by one statement (Repository.scan at_once)."""
    request = parse_search(resource_type, params + [("_count", str(PAGE))])
    for page in repo.scan(request, at_once=True):
        for entry in page:
            if entry.data:
                yield orjson.loads(entry.data)


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


def measured_at_visits(repo: Repository, system: str, code: str, keys: tuple[str, ...],
                       visit_system: str | None = None,
                       period: tuple[str, str] | None = None) -> dict[tuple[str, str], Measured]:
    """(Patient/id, visit key) -> the value of the code measured at that visit (one of `keys`):
    the first Observation by id when there are several. An Observation with no value, no
    Encounter of one of those visits, or (with a period) taken on a day outside it, places
    nothing. Two reads: the Encounters of those visits, the Observations of the code."""
    found: dict[tuple[str, str], Measured] = {}
    visits = {f"Encounter/{e['id']}": _visit(e, visit_system)
              for e in matches(repo, "Encounter", [("type", ",".join(v.replace(",", "\\,") for v in keys))])} \
        if keys else {}
    for observation in matches(repo, "Observation", [("code", f"{system}|{code}")]):
        value = _value(observation)
        encounter = observation.get("encounter", {}).get("reference", "")
        visit = visits.get(encounter) if keys else None
        day = str(observation.get("effectiveDateTime", ""))[:10]
        if value is None or visit is None or (period and not period[0] <= day <= period[1]):
            continue
        patient = observation.get("subject", {}).get("reference", "")
        found.setdefault((patient, visit), Measured(value, f"Observation/{observation['id']}", day, encounter))
    return found


def study_subjects(repo: Repository, study: str) -> dict[str, tuple[str, str]]:
    """Patient/id -> (arm, site label; "" when it has none or several) of the study's children."""
    subjects = {}
    for subject in matches(repo, "ResearchSubject", [("study", f"ResearchStudy/{study}")]):
        sites = sites_of(subject)
        subjects[subject["individual"]["reference"]] = (subject.get("assignedArm", ""),
                                                        next(iter(sites)) if len(sites) == 1 else "")
    return subjects
