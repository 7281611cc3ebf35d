"""What the study page shows, from the repository the request may use: enrolment by site and
arm, change from baseline per arm (the same `population()` the outcomes command and
Measure/$evaluate-measure use, so the numbers agree), adherence per child and visit, and
adverse events by grade, seriousness and causality."""
from __future__ import annotations

import collections
import functools
import threading
import time
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from adapter.fhir.outcomes import FhirError
from adapter.fhir.sites import sites_of
from adapter.outcomes.measures import Outcome, Row, child_changes, outcomes_of, population
from adapter.pages.figures import bar_figure, change_figure
from adapter.protocol.adherence import adherence
from adapter.protocol.apply import search_all
from adapter.protocol.cli import SPECS
from adapter.protocol.spec import Spec, load_spec
from adapter.store.repository import Repository

__all__ = ["spec", "enrolment", "outcome_sections", "adherence_matrix", "adverse_event_counts",
           "PLOTTED", "MATRIX_ROWS"]

PLOTTED = ("adl", "gmfm-88-total", "gmfm-66")  # the protocol's primary and key secondary outcomes
# Children per page of the adherence matrix: each child is a few searches (~20 ms), so a page
# costs about 2 s whatever the study's size.
MATRIX_ROWS = 100
# The change-from-baseline figures read every outcome Observation of the study: ~0.65 s per
# 1,000 children per outcome (measured, SQLite), some 20 s for three outcomes at 10,000. They are
# kept this long per reader (client, site, scopes, policy) and worker, so a page read again, or
# the matrix paged through, does not pay it again; the page says how old they are.
OUTCOMES_SECONDS = 60.0
_remembered: dict[Any, tuple[float, list[OutcomeSection]]] = {}
_lock = threading.Lock()
# Worst first: a visit with any activity by the wrong route is shown as that.
_ORDER = ("wrong-route", "missing", "done-out-of-window", "not-yet-due", "done-in-window")
EXTRA = "extra"


@functools.cache
def spec() -> Spec:
    return load_spec(SPECS / "ucmsc-cp-v1.yaml")


def _site(subject: dict[str, Any]) -> str:
    sites = sites_of(subject)
    return next(iter(sites)) if len(sites) == 1 else "(no site)"


@dataclass
class Enrolment:
    subjects: list[dict[str, Any]]
    sites: list[str]
    arms: list[str]
    counts: dict[tuple[str, str], int]  # (site, arm) -> children
    figure: dict[str, Any] = field(default_factory=dict)

    @property
    def by_site(self) -> dict[str, int]:
        return {site: sum(n for (s, _), n in self.counts.items() if s == site) for site in self.sites}

    @property
    def by_arm(self) -> dict[str, int]:
        return {arm: sum(n for (_, a), n in self.counts.items() if a == arm) for arm in self.arms}


def enrolment(repo: Repository, study: str) -> Enrolment:
    subjects = sorted(search_all(repo, "ResearchSubject", [("study", f"ResearchStudy/{study}")]),
                      key=lambda s: s["id"])
    counts = collections.Counter((_site(s), s.get("assignedArm") or "(no arm)") for s in subjects)
    sites = sorted({site for site, _ in counts})
    arms = sorted({arm for _, arm in counts})
    figure = bar_figure("Children enrolled by site and arm", sites,
                        {arm: [counts[(site, arm)] for site in sites] for arm in arms})
    return Enrolment(subjects, sites, arms, dict(counts), figure)


@dataclass
class OutcomeSection:
    outcome: Outcome
    rows: list[Row]
    figure: dict[str, Any]


def outcome_sections(repo: Repository, study: str, reader: Any = None) -> tuple[list[OutcomeSection], float]:
    """The plotted outcomes per arm, and how many seconds ago they were computed (0: now).
    `reader` identifies who reads (what their repository lets through): their figures may be
    remembered for OUTCOMES_SECONDS; None computes them afresh."""
    now = time.monotonic()
    with _lock:
        for key in [k for k, (at, _) in _remembered.items() if now - at > OUTCOMES_SECONDS]:
            del _remembered[key]  # forgotten when stale, so the dict stays as small as its readers
        kept = _remembered.get((reader, study)) if reader is not None else None
    if kept is not None:
        return kept[1], now - kept[0]
    known = outcomes_of(spec())
    sections = []
    for key in PLOTTED:
        outcome = known[key]
        rows = population(outcome, child_changes(repo, outcome, study), "arm")
        sections.append(OutcomeSection(outcome, rows, change_figure(
            "Mean change from baseline and 95% CI, by arm", outcome.follow_up, rows)))
    if reader is not None:
        with _lock:
            _remembered[(reader, study)] = (now, sections)
    return sections, 0.0


@dataclass
class MatrixRow:
    patient: str  # Patient id
    site: str
    arm: str
    cells: dict[str, tuple[str, str]] = field(default_factory=dict)  # visit -> (status, what the cell says on hover)
    problem: str = ""  # why the child could not be checked


@dataclass
class Matrix:
    visits: list[str]
    rows: list[MatrixRow]
    total: int
    page: int
    pages: int
    as_of: date
    per_page: int = MATRIX_ROWS


def adherence_matrix(repo: Repository, subjects: list[dict[str, Any]], as_of: date, page: int) -> Matrix:
    """A page of children x visits; each cell the visit's worst status (see _ORDER)."""
    pages = max(1, -(-len(subjects) // MATRIX_ROWS))
    page = min(max(page, 1), pages)
    rows: list[MatrixRow] = []
    visits: dict[str, None] = {}  # in the order the plans list them
    for subject in subjects[(page - 1) * MATRIX_ROWS:page * MATRIX_ROWS]:
        patient = subject["individual"]["reference"].split("/")[-1]
        row = MatrixRow(patient, _site(subject), subject.get("assignedArm") or "")
        try:
            findings = adherence(repo, subject["id"], as_of)
        except FhirError as error:
            if error.status == 403:
                raise  # the reader's access, not this child: said once for the section
            row.problem = str(error)  # e.g. no start date: this child cannot be checked
            rows.append(row)
            continue
        by_visit: dict[str, list[str]] = collections.defaultdict(list)
        for finding in findings:
            if finding.status != EXTRA:
                visits.setdefault(finding.visit, None)
                by_visit[finding.visit].append(finding.status)
        for visit, statuses in by_visit.items():
            worst = min(statuses, key=_ORDER.index)
            counted = collections.Counter(statuses)
            row.cells[visit] = (worst, ", ".join(f"{n} {s}" for s, n in sorted(counted.items())))
        rows.append(row)
    return Matrix(list(visits), rows, len(subjects), page, pages, as_of)


def _coding_label(concept: dict[str, Any] | None) -> str:
    if not concept:
        return "(not recorded)"
    coding = (concept.get("coding") or [{}])[0]
    return str(concept.get("text") or coding.get("display") or coding.get("code") or "(not recorded)")


def grade_of(event: dict[str, Any]) -> str:
    for ext in event.get("extension", []):
        if ext.get("url", "").endswith("/ctcae-grade"):
            return _coding_label(ext.get("valueCodeableConcept"))
    return "(not graded)"


def causality_of(event: dict[str, Any]) -> list[str]:
    found = [_coding_label(c.get("assessment")) for s in event.get("suspectEntity", [])
             for c in s.get("causality", [])]
    return found or ["(not assessed)"]


def adverse_event_counts(repo: Repository) -> dict[str, collections.Counter[str]]:
    """Adverse events counted by grade, seriousness and causality (an event with two suspect
    entities counts once per assessment under causality)."""
    counts: dict[str, collections.Counter[str]] = {"grade": collections.Counter(),
                                                   "seriousness": collections.Counter(),
                                                   "causality": collections.Counter()}
    for event in search_all(repo, "AdverseEvent", []):
        counts["grade"][grade_of(event)] += 1
        counts["seriousness"][_coding_label(event.get("seriousness"))] += 1
        counts["causality"].update(causality_of(event))
    return counts
