"""What the study page shows, from the repository the request may use: enrolment by site and
arm, change from baseline per arm (the same `population()` the outcomes command and
Measure/$evaluate-measure use, so the numbers agree), adherence per child and visit, and
adverse events by grade, seriousness and causality."""
from __future__ import annotations

import collections
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from adapter.fhir.outcomes import FhirError
from adapter.fhir.sites import sites_of
from adapter.outcomes.adverse_events import AdverseEventRow, adverse_event_rows, study_events
from adapter.outcomes.cache import changes
from adapter.outcomes.cohort import cohort
from adapter.outcomes.measures import Outcome, Row, outcomes_of, population
from adapter.outcomes.memo import remember
from adapter.outcomes.reading import matches
from adapter.pages.figures import bar_figure, change_figure
from adapter.pages.protocol import spec
from adapter.pages.states import describe
from adapter.pages.units import outcome_unit
from adapter.protocol.adherence import adherence
from adapter.protocol.visit_states import visit_states
from adapter.store.repository import Repository

__all__ = ["spec", "enrolment", "outcome_sections", "adherence_matrix", "adverse_events", "grade_of", "causality_of",
           "PLOTTED", "MATRIX_ROWS", "IN_PLACE_CHILDREN"]

PLOTTED = ("adl", "gmfm-88-total", "gmfm-66")  # the protocol's primary and key secondary outcomes
# Children per page of the adherence matrix: each child is four searches (~8 ms with the protocol's
# definitions read once a page), so a page costs about 0.4 s whatever the study's size.
MATRIX_ROWS = 50
# Up to this many children the outcomes and adverse events are part of the study page itself
# (0.4 s with nothing cached at the demo's 76, then kept per store generation): fetched after
# the page, they waited for plotly.min.js and a second request, 11.7 s on a busy machine.
# Beyond it they follow as fragments (3 s of reading at 10,000 children).
IN_PLACE_CHILDREN = 1000


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
    subjects = remember(repo, "study-page-subjects", study, lambda: sorted(
        matches(repo, "ResearchSubject", [("study", f"ResearchStudy/{study}")]), key=lambda s: s["id"]))
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
    unit: str = ""


def outcome_sections(repo: Repository, study: str) -> list[OutcomeSection]:
    """The plotted outcomes per arm. Each child's values come from adapter/outcomes/cache.py:
    kept per reader's view and store generation, so a page read again (or the matrix paged
    through) does not read them again, and any write shows on the next page."""
    known = outcomes_of(spec())
    sections = []
    for key in PLOTTED:
        outcome = known[key]
        rows = population(outcome, changes(repo, outcome, study), "arm")
        sections.append(OutcomeSection(outcome, rows, change_figure(
            "Mean change from baseline and 95% CI, by arm", outcome.follow_up, rows, outcome_unit(outcome.code)),
            outcome_unit(outcome.code)))
    return sections


@dataclass
class MatrixRow:
    patient: str  # Patient id
    site: str
    arm: str
    cells: dict[str, tuple[str, str]] = field(default_factory=dict)  # visit -> (state, what was done and not)
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
    """A page of children x visits; each cell the visit's state (adapter/protocol/visit_states.py)
    from the findings `$adherence` reports, so the grid says what the operation says."""
    pages = max(1, -(-len(subjects) // MATRIX_ROWS))
    page = min(max(page, 1), pages)
    shown = subjects[(page - 1) * MATRIX_ROWS:page * MATRIX_ROWS]
    # kept per store generation like the outcomes: the page read again costs no 200 searches
    return remember(repo, "study-page-matrix", (tuple(s["id"] for s in shown), as_of, page),
                    lambda: _matrix(repo, shown, len(subjects), as_of, page, pages))


def _matrix(repo: Repository, shown: list[dict[str, Any]], total: int, as_of: date, page: int, pages: int) -> Matrix:
    rows: list[MatrixRow] = []
    visits: dict[str, None] = {}  # in the order the plans list them
    definitions: dict[Any, Any] = {}  # the protocol's, read once for the page
    for subject in shown:
        patient = subject["individual"]["reference"].split("/")[-1]
        row = MatrixRow(patient, _site(subject), subject.get("assignedArm") or "")
        try:
            findings = adherence(repo, subject["id"], as_of, definitions)
        except FhirError as error:
            if error.status == 403:
                raise  # the reader's access, not this child: said once for the section
            row.problem = str(error)  # e.g. no start date: this child cannot be checked
            rows.append(row)
            continue
        for visit, state in visit_states(findings).items():
            visits.setdefault(visit, None)
            row.cells[visit] = (state.state, describe(state, short=True))
        rows.append(row)
    return Matrix(list(visits), rows, total, page, pages, as_of)


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


def adverse_events(repo: Repository, study: str) -> list[AdverseEventRow]:
    """Every child's row ("all"), then one per arm: the same adverse_event_rows() as the adverse
    events' MeasureReport and `fhir-adapter outcomes --measure adverse-events`."""
    def rows() -> list[AdverseEventRow]:
        children = cohort(repo, study)
        events = study_events(repo, children)
        return [row for by in (None, "arm") for row in adverse_event_rows(repo, study, by, children, events=events)]
    return remember(repo, "study-page-adverse-events", study, rows)
