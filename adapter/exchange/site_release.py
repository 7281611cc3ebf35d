"""The release a site's data get under a policy with k-anonymity: worked out on the whole store
(each child's Patient and cerebral palsy Conditions, as the policy lets them out), kept while
the store is unchanged (a write makes the next request work it out again), and the same for
`exchange check`, every export and every read of the policy's client."""
from __future__ import annotations

import collections
from collections.abc import Callable, Iterator
from datetime import date
from typing import Any

import orjson

from adapter.exchange.anonymity import Child, Release, release
from adapter.exchange.deidentify import Deidentifier
from adapter.fhir.outcomes import FhirError
from adapter.fhir.search import parse_search
from adapter.fhir.sites import sites_of
from adapter.outcomes.memo import remember
from adapter.protocol.apply import arm_protocol
from adapter.protocol.schedule import schedule
from adapter.store.repository import Repository

__all__ = ["site_release", "enrolments", "schedules", "Schedule"]

# (a child's first injection day, the dates of its planned visits from any first day)
Schedule = tuple[date, Callable[[date], list[tuple[date, date, date]]]]

_ICD10 = "http://hl7.org/fhir/sid/icd-10"


def site_release(store: Repository, deidentifier: Deidentifier) -> Release | None:
    config = deidentifier.policy.k_anonymity
    if config is None:
        return None
    key = (deidentifier.policy.name, deidentifier.policy.version, repr(config),
           deidentifier.keyed("release"))  # the key's digest: a new key is another release
    return remember(store, "exchange release", key, lambda: release(config, _children(store), deidentifier.share))


def enrolments(store: Repository) -> dict[str, str]:
    """Patient id -> the first day of its ResearchSubject's period (the first injection)."""
    return {who: subject[0] for who, subject in _subjects(store).items()}


def schedules(store: Repository) -> Callable[[str], Schedule | None]:
    """Patient id -> (its first injection day, its protocol's schedule from any day), for the
    children on an arm of a study the store holds: what a date shift must leave unchanged."""
    subjects = _subjects(store)
    plans: dict[tuple[str, str], dict[str, Any] | None] = {}

    def of(child: str) -> Schedule | None:
        found = subjects.get(child)
        if found is None:
            return None
        start, study_id, arm = found
        if study_id is None or arm is None or len(start) < 10:
            return None
        if (study_id, arm) not in plans:
            plans[(study_id, arm)] = _plan(store, study_id, arm)
        plan = plans[(study_id, arm)]
        if plan is None:
            return None
        return date.fromisoformat(start[:10]), lambda day: [(v.target, v.earliest, v.latest)
                                                            for v in schedule(plan, day)]
    return of


def _plan(store: Repository, study_id: str, arm: str) -> dict[str, Any] | None:
    study = store.current("ResearchStudy", study_id)
    try:
        return store.current("PlanDefinition", arm_protocol(study, arm)) if study else None
    except FhirError:
        return None


def _subjects(store: Repository) -> dict[str, tuple[str, str | None, str | None]]:
    """Patient id -> (first injection day, study id, arm) of its earliest ResearchSubject."""
    def read() -> dict[str, tuple[str, str | None, str | None]]:
        found: dict[str, tuple[str, str | None, str | None]] = {}
        for subject in _every(store, "ResearchSubject"):
            who = ((subject.get("individual") or {}).get("reference") or "").removeprefix("Patient/")
            start = (subject.get("period") or {}).get("start")
            study = ((subject.get("study") or {}).get("reference") or "").removeprefix("ResearchStudy/") or None
            if who and isinstance(start, str) and (who not in found or start < found[who][0]):
                found[who] = (start, study, subject.get("assignedArm"))
        return found
    return remember(store, "exchange subjects", "all", read)


def _children(store: Repository) -> list[Child]:
    conditions: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for condition in _every(store, "Condition"):
        if _cerebral_palsy(condition):
            who = ((condition.get("subject") or {}).get("reference") or "").removeprefix("Patient/")
            conditions[who].append(condition)
    return [(patient["id"], patient, conditions.get(patient["id"], [])) for patient in _every(store, "Patient")
            if len(sites_of(patient)) == 1]


def _cerebral_palsy(condition: dict[str, Any]) -> bool:
    codings = (condition.get("code") or {}).get("coding") or []
    return any(c.get("system") == _ICD10 and str(c.get("code", "")).startswith("G80") for c in codings)


def _every(store: Repository, rtype: str) -> Iterator[dict[str, Any]]:
    for page in store.scan(parse_search(rtype, [("_count", "1000"), ("_total", "none")])):
        for entry in page:
            yield orjson.loads(entry.data or b"{}")
