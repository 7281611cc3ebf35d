"""The workbench's dry run (adapter/pages/workbench.py) without a browser: each site fixture
through its mapping shows exactly the fixture's expected rejections, a file of the wrong shape
or a name off the list is said, never raised, and nothing reaches a store (it is given none)."""
from __future__ import annotations

import csv

import pytest

from adapter.pages.workbench import dry_run, fixtures, mappings
from conftest import ROOT

SITES = ROOT / "fixtures" / "sites"


@pytest.mark.parametrize("site", ["site-a", "site-b", "site-c", "site-d", "site-e"])
def test_each_fixture_shows_its_expected_rejections(site):
    name = next(n for n in fixtures() if n.startswith(f"{site}/"))
    run = dry_run(site, name, path=fixtures()[name])
    assert not run.error and run.found is not None
    with (SITES / site / "expected-rejections.csv").open(encoding="utf-8") as handle:
        expected = list(csv.DictReader(handle))
    got = [(str(r.row), r.column, r.value) for r in run.found.report.rejections]
    assert got == [(e["row"], e["column"], e["value"]) for e in expected]
    assert all(r.rule.startswith(f"{site}.yaml:") or not r.rule for r in run.found.report.rejections)
    assert run.children and run.visits[0] == "baseline" and run.grid


def test_a_file_of_another_shape_or_an_unknown_mapping_is_said_not_raised():
    assert mappings() == ["site-a", "site-b", "site-c", "site-d", "site-e"]
    wrong = dry_run("site-b", "site-a/export.csv", path=fixtures()["site-a/export.csv"])  # CSV to a JSON mapping
    assert wrong.error or (wrong.found is not None and wrong.found.report.rows_rejected)
    assert "unknown mapping" in dry_run("../site-a", "x", upload=b"").error
    empty = dry_run("site-a", "empty.csv", upload=b"")
    assert empty.error or (empty.found is not None and empty.found.report.rows_read == 0)


def test_a_long_upload_is_cut_to_its_first_rows_and_says_so(monkeypatch):
    monkeypatch.setattr("adapter.pages.workbench.MAX_ROWS", 50)
    run = dry_run("site-a", "export.csv", upload=(SITES / "site-a" / "export.csv").read_bytes())
    assert run.cut == (50, 188) and run.found is not None and run.found.report.rows_read == 50


def test_a_workbook_upload_is_dry_run_with_each_rejection_at_its_cell():
    run = dry_run("site-e", "export.xlsx", upload=(SITES / "site-e" / "export.xlsx").read_bytes())
    assert not run.error and run.found is not None and run.cut is None
    with (SITES / "site-e" / "expected-rejections.csv").open(encoding="utf-8") as handle:
        expected = [e["cell"] for e in csv.DictReader(handle)]
    assert [r.cell for r in run.found.report.rejections] == expected
    assert run.children == 10 and run.visits[:2] == ["baseline", "c1-d0"]  # as the study grid
    assert "fu-m12" in run.grid["site-e-E0001"]
    renamed = dry_run("site-e", "export.xlsx", upload=(SITES / "site-c" / "export.csv").read_bytes())
    assert "not an Excel workbook (.xlsx)" in renamed.error  # one clear error, said on the page
