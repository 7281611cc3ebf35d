"""One state per planned visit, from `$adherence`'s findings (adapter/protocol/adherence.py):
what the study grid, the child's timeline and its table show, so that they say the same as the
operation, cell for cell.

A visit is several activities (an injection, each vital sign, the adverse-reaction review, ...).
Showing the worst of them made a visit whose injection and vital signs were done in window
"missing" because one unrecorded item was; so a visit is:

- ``wrong-route``: an injection was given by the other route (whatever else was done);
- ``done``: every activity done in its window;
- ``out-of-window``: every activity done, at least one outside its window;
- ``partly-done``: some done, some missing or not yet due (which ones: `missing`, `pending`);
- ``missing``: nothing done and the window has passed;
- ``not-yet-due``: nothing done and the window is still open.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date

from adapter.protocol.adherence import Finding

__all__ = ["VisitState", "visit_states", "STATES"]

STATES = ("done", "partly-done", "out-of-window", "missing", "wrong-route", "not-yet-due")
_DONE = ("done-in-window", "done-out-of-window", "wrong-route")


@dataclass
class VisitState:
    visit: str
    state: str  # one of STATES
    planned: date | None = None
    findings: list[Finding] = field(default_factory=list)

    def having(self, *statuses: str) -> list[Finding]:
        return [f for f in self.findings if f.status in statuses]

    @property
    def first_done(self) -> date | None:
        days = [f.actual for f in self.having(*_DONE) if f.actual is not None]
        return min(days) if days else None


def _state(statuses: set[str]) -> str:
    if "wrong-route" in statuses:
        return "wrong-route"
    done = statuses & {"done-in-window", "done-out-of-window"}
    if not done:
        return "missing" if "missing" in statuses else "not-yet-due"
    if statuses - done:
        return "partly-done"
    return "out-of-window" if "done-out-of-window" in done else "done"


def visit_states(findings: Iterable[Finding]) -> dict[str, VisitState]:
    """Planned visit id -> its state, in the findings' (the protocol's) order; extra injections,
    which belong to no planned visit, are left out."""
    states: dict[str, VisitState] = {}
    for finding in findings:
        if finding.status == "extra":
            continue
        states.setdefault(finding.visit, VisitState(finding.visit, "", finding.planned)).findings.append(finding)
    for state in states.values():
        state.state = _state({f.status for f in state.findings})
    return states
