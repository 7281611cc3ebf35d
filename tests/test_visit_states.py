"""A visit's one state from its activities' findings (adapter/protocol/visit_states.py): a visit
with its injection done and its review missing is partly done, not missing."""
from __future__ import annotations

from datetime import date

import pytest

from adapter.protocol.adherence import Finding
from adapter.protocol.visit_states import visit_states

DAY = date(2026, 1, 5)


def _finding(activity: str, status: str, visit: str = "c1-d0") -> Finding:
    done = status.startswith("done") or status == "wrong-route"
    return Finding(visit, activity, status, DAY, DAY, DAY, DAY if done else None)


@pytest.mark.parametrize(("statuses", "state"), [
    (["done-in-window", "done-in-window"], "done"),
    (["done-in-window", "done-out-of-window"], "out-of-window"),
    (["done-in-window", "missing"], "partly-done"),
    (["done-out-of-window", "not-yet-due"], "partly-done"),
    (["missing", "missing"], "missing"),
    (["missing", "not-yet-due"], "missing"),
    (["not-yet-due"], "not-yet-due"),
    (["wrong-route", "done-in-window"], "wrong-route"),
])
def test_a_visit_is_what_its_activities_say(statuses: list[str], state: str) -> None:
    findings = [_finding(f"a{i}", s) for i, s in enumerate(statuses)]
    assert visit_states(findings)["c1-d0"].state == state


def test_extra_injections_belong_to_no_visit_and_the_order_is_the_findings() -> None:
    findings = [_finding("x", "done-in-window", "baseline"), _finding("y", "missing"),
                Finding("-", "-", "extra", None, None, None, DAY)]
    states = visit_states(findings)
    assert list(states) == ["baseline", "c1-d0"] and states["baseline"].first_done == DAY
