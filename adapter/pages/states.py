"""The visit states' one legend: label and colour of each, used by the study grid, the child's
timeline and its table (the colours reach the CSS through base.html, so a table cell and a plot
marker of one state cannot differ), and the words that say which activity a finding is."""
from __future__ import annotations

import functools

from adapter.pages.protocol import spec
from adapter.protocol.adherence import Finding
from adapter.protocol.visit_states import STATES, VisitState

__all__ = ["LEGEND", "COLOURS", "activity_name", "describe"]

# state -> (what the cell says, its colour); every colour with dark text is readable (WCAG AA),
# and the word is always there: the colour is never the only sign.
LEGEND: dict[str, tuple[str, str]] = {
    "done": ("done", "#74c476"),
    "partly-done": ("partly done", "#c7e9c0"),
    "out-of-window": ("out of window", "#fdae61"),
    "missing": ("missing", "#bdbdbd"),
    "wrong-route": ("wrong route", "#f08070"),
    "not-yet-due": ("not yet due", "#eef2f7"),
}
assert tuple(LEGEND) == STATES, "every state has a legend entry, in the same order"
COLOURS = {state: colour for state, (_, colour) in LEGEND.items()}


@functools.cache
def _names() -> tuple[dict[str, str], dict[tuple[str, str], str], frozenset[str]]:
    """(ActivityDefinition id -> title, code -> display, activities of more than one code)."""
    protocol = spec()
    pid = protocol.protocol["id"]
    titles, displays, several = {}, {}, set()
    for key, activity in protocol.data["activities"].items():
        titles[f"{pid}-{key}"] = str(activity.get("title") or key)
        codes = activity.get("codes") or []
        if len(codes) > 1:
            several.add(f"{pid}-{key}")
        for c in codes:
            displays[(protocol.system(c["system"]), str(c["code"]))] = str(c.get("display") or c["code"])
    return titles, displays, frozenset(several)


def activity_name(finding: Finding) -> str:
    """"Vital signs: Body temperature": the activity, and which of its codes when it has several
    (a visit's vital signs are four Observations; saying only "vital signs" hid which one)."""
    titles, displays, several = _names()
    name = titles.get(finding.activity, finding.activity)
    if finding.activity in several and finding.code:
        return f"{name}: {displays.get(finding.code, finding.code[1])}"
    return name


def describe(state: VisitState, short: bool = False) -> str:
    """What a cell says on hover and in its note: what was done, out of window, missing. An
    activity of several codes is named whole when all its codes share a status, else by code
    ("Vital signs: Body temperature" when only the temperature is missing). `short` (the study
    grid, 50 children x 12 visits a page) counts what was done in window rather than naming it."""
    titles, displays, _ = _names()
    if state.state == "done":
        return f"all {len(state.findings)} activities done in their windows"
    in_window = len(state.having("done-in-window"))
    parts = [f"{in_window} of {len(state.findings)} done in window"] if short and in_window else []
    for label, status in ((("done in window", "done-in-window"),) if not short else ()) + (
                          ("out of window", "done-out-of-window"),
                          ("wrong route", "wrong-route"), ("missing", "missing"), ("not yet due", "not-yet-due")):
        names: dict[str, None] = {}
        for f in state.having(status):
            whole = all(g.status == status for g in state.findings if g.activity == f.activity)
            name = titles.get(f.activity, f.activity) if whole else activity_name(f)
            names[name + (f" ({f.days_outside:+d} days)" if f.days_outside else "")] = None
        if names:
            parts.append(f"{label}: {', '.join(names)}")
    return "; ".join(parts)
