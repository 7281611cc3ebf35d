"""The study and child pages: what the study's data say, read through the repository the
gateway hands the request (adapter/pages/views.py registers these)."""
from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date
from typing import TypeVar

from flask import redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from adapter.fhir.outcomes import FhirError, bad_request
from adapter.pages.child import child_page
from adapter.pages.context import repository
from adapter.pages.study import (IN_PLACE_CHILDREN, adherence_matrix, adverse_events, enrolment, outcome_sections,
                                 spec)

__all__ = ["study", "study_outcomes", "study_adverse_events", "child"]

T = TypeVar("T")


def _as_of() -> date:
    raw = request.args.get("as-of")
    try:
        return date.fromisoformat(raw) if raw else date.today()
    except ValueError:
        raise bad_request(f"as-of: {raw!r} is not a date (YYYY-MM-DD)", "as-of") from None


def _allowed(notes: list[str], what: str, make: Callable[[], T]) -> T | None:
    """A section of a page, or None and a note when the token may not read what it needs (a
    403): the rest of the page is still the reader's to see."""
    try:
        return make()
    except FhirError as error:
        if error.status != 403:
            raise
        notes.append(f"{what}: not shown with your access ({error})")
        return None


def study() -> str:
    repo, study_id = repository(), spec().protocol["id"]
    page = request.args.get("page", "1")
    started = time.perf_counter()
    notes: list[str] = []
    # Without ResearchSubject read, no enrolment and no matrix (its rows are the enrolled
    # children): each said in a note, the rest of the page still shown (issue 29, item 7).
    enrolled = _allowed(notes, "Enrolment", lambda: enrolment(repo, study_id))
    as_of, number = _as_of(), int(page) if page.isascii() and page.isdigit() and len(page) < 7 else 1
    whole = request.args.get("whole") == "1"
    if request.args.get("section") == "adherence" and request.headers.get("X-Fragment") == "1":
        matrix = None if enrolled is None else _allowed(
            notes, "Adherence", lambda: adherence_matrix(repo, enrolled.subjects, as_of, number))
        if enrolled is None:
            notes.append("Adherence: not shown with your access (its rows are the enrolled children)")
        return render_template("study_adherence.html", matrix=matrix, section_notes=notes)
    # The outcomes and adverse events read the whole study once after a write (3 s at 10,000
    # children): for a large study the page comes first and they follow as fragments (pages.js);
    # ?whole=1 renders them in place (no script). The adherence matrix (50 children's $adherence,
    # 0.4-1 s after a write) always follows, so that the outcomes above it need not wait for it.
    lazy = not whole and enrolled is not None and len(enrolled.subjects) > IN_PLACE_CHILDREN
    sections = None if lazy else _allowed(notes, "Change from baseline",
                                          lambda: outcome_sections(repo, study_id)) or []
    matrix = None if not whole or enrolled is None else _allowed(
        notes, "Adherence", lambda: adherence_matrix(repo, enrolled.subjects, as_of, number))
    if enrolled is None:
        notes.append("Adherence: not shown with your access (its rows are the enrolled children)")
    events = None if lazy else _allowed(notes, "Adverse events", lambda: adverse_events(repo, study_id))
    return render_template("study.html", enrolled=enrolled, sections=sections, matrix=matrix, lazy=lazy,
                           lazy_matrix=not whole and enrolled is not None, page=number, as_of=as_of, events=events, study=study_id,
                           notes=notes, seconds=time.perf_counter() - started)


def study_outcomes() -> ResponseReturnValue:
    if request.headers.get("X-Fragment") != "1":  # opened as a page: the whole study page, in place
        return redirect(url_for("pages.study", whole="1", _anchor="outcomes"))
    repo, notes = repository(), list[str]()
    sections = _allowed(notes, "Change from baseline", lambda: outcome_sections(repo, spec().protocol["id"]))
    return render_template("study_outcomes.html", sections=sections or [], section_notes=notes)


def study_adverse_events() -> ResponseReturnValue:
    if request.headers.get("X-Fragment") != "1":
        return redirect(url_for("pages.study", whole="1", _anchor="adverse-events"))
    repo, notes = repository(), list[str]()
    events = _allowed(notes, "Adverse events", lambda: adverse_events(repo, spec().protocol["id"]))
    return render_template("study_adverse_events.html", events=events, section_notes=notes)


def child(patient_id: str) -> str:
    return render_template("child.html", child=child_page(repository(), patient_id, _as_of()),
                           patient_id=patient_id)
