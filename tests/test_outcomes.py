"""The trial's results (change from baseline per arm and site) equal a calculation made here by
hand from the four sites' raw export files, not through the adapter."""
from __future__ import annotations

import csv
import json
import re
import statistics
from collections import defaultdict

import pytest
from click.testing import CliRunner
from scipy.stats import t as student_t

from adapter.cli import main
from adapter.outcomes.measures import child_changes, outcomes_of, population
from adapter.protocol.spec import SPECS
from adapter.protocol.spec import load_spec
from conftest import ROOT

SITES = ROOT / "fixtures" / "sites"


def _bad_rows(site: str) -> tuple[set[int], dict[int, str]]:
    """From the fixture's own list: rows rejected whole, and the cell lost from partly kept rows."""
    with (SITES / site / "expected-rejections.csv").open(encoding="utf-8") as handle:
        listed = list(csv.DictReader(handle))
    return ({int(r["row"]) for r in listed if r["outcome"] == "rejected"},
            {int(r["row"]): r["column"] for r in listed if r["outcome"] == "partly"})


def _csv_site(site: str, encoding: str, delimiter: str, key: str, event: str, column: str, visit_of) -> dict:
    rejected, lost = _bad_rows(site)
    values: dict[tuple[str, str], float] = {}
    arms: dict[str, str] = {}
    with (SITES / site / "export.csv").open(encoding=encoding, newline="") as handle:
        for line, row in enumerate(csv.DictReader(handle, delimiter=delimiter), 2):
            if line in rejected:
                continue
            if "rand_arm" in row and row["rand_arm"]:
                arms[row[key]] = f"arm-{row['rand_arm']}"
            visit = visit_of(row[event])
            if visit and row.get(column) and lost.get(line) != column:
                values.setdefault((row[key], visit), float(row[column].replace(",", ".")))
    return {"values": values, "arms": arms}


def _real_date(text: str) -> bool:
    from datetime import datetime
    try:
        datetime.strptime(text, "%d/%m/%Y")
    except ValueError:
        return False
    return True


def site_b_visits():
    """(record, visit key, the visit's dict, the document) of site B's kept documents."""
    rejected, _ = _bad_rows("site-b")
    for line, text in enumerate((SITES / "site-b" / "export.ndjson").read_text(encoding="utf-8").splitlines(), 1):
        if line in rejected:
            continue
        document = json.loads(text)
        for visit in document["visits"]:
            kind = {"baseline": "baseline", "follow-up": f"month-{visit.get('month')}"}.get(visit["kind"])
            if kind and _real_date(visit["date"]):
                yield document["patient"]["id"], kind, visit, document


def _site_b() -> dict:
    values = {}
    for record, kind, visit, _ in site_b_visits():
        adl = visit.get("scores", {}).get("adl")
        if adl is not None:
            values.setdefault((record, kind), float(adl))
    return {"values": values, "arms": {}}


def by_hand() -> dict[tuple[str, str, str], list[float]]:
    """ADL change from baseline, (visit, arm, site) -> changes, straight from the files."""
    def month(pattern: str):
        def visit_of(event: str) -> str | None:
            found = re.fullmatch(pattern, event)
            return None if not found else "baseline" if not found.group(1) else f"month-{found.group(1)}"
        return visit_of
    sites = {
        "site-a": _csv_site("site-a", "utf-8", ",", "record_id", "redcap_event_name", "barthel",
                            month(r"(?:screening|month_(\d+))_arm_1")),
        "site-b": _site_b(),
        "site-c": _csv_site("site-c", "gb18030", ";", "患者编号", "访视", "ADL评分", month(r"(?:基线|随访(\d+)月)")),
        "site-d": _csv_site("site-d", "utf-8", ",", "record_id", "redcap_event_name", "barthel",
                            month(r"(?:screening|fu_m(\d+))_arm_[12]")),
    }
    changes: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for site, found in sites.items():
        for (record, visit), value in found["values"].items():
            base = found["values"].get((record, "baseline"))
            if visit in ("month-1", "month-3", "month-6", "month-12") and base is not None:
                changes[(visit, found["arms"].get(record, "arm-1"), site)].append(value - base)
    return changes


@pytest.mark.parametrize("by", ["arm", "site"])
def test_adl_change_from_baseline_equals_the_calculation_by_hand(four_sites, by):
    store, _ = four_sites
    spec = load_spec(SPECS / "ucmsc-cp-v1.yaml")
    adl = outcomes_of(spec)["adl"]
    rows = {(r.visit, r.group): r for r in population(adl, child_changes(store, adl, "ucmsc-cp"), by)}
    expected: dict[tuple[str, str], list[float]] = defaultdict(list)
    for (visit, arm, site), changes in by_hand().items():
        expected[(visit, arm if by == "arm" else site)] += changes
    assert set(rows) == set(expected)
    for key, changes in expected.items():
        summary = rows[key].summary
        assert summary.n == len(changes), key
        assert summary.mean == pytest.approx(statistics.fmean(changes)), key
        assert summary.median == pytest.approx(statistics.median(changes)), key
        if len(changes) > 1:
            sd = statistics.stdev(changes)
            assert summary.sd == pytest.approx(sd), key
            half = student_t.ppf(0.975, len(changes) - 1) * sd / len(changes) ** 0.5
            assert (summary.ci_low, summary.ci_high) == pytest.approx((statistics.fmean(changes) - half,
                                                                        statistics.fmean(changes) + half)), key
    arm_2 = [r for r in rows.values() if r.group == "arm-2"] if by == "arm" else []
    assert by == "site" or (arm_2 and all(r.summary.n == 4 for r in arm_2))  # site D's randomised children


def test_missing_values_are_counted_with_their_reason_not_imputed(four_sites):
    store, _ = four_sites
    spec = load_spec(SPECS / "ucmsc-cp-v1.yaml")
    language = outcomes_of(spec)["language-dq"]  # not measured at every site's every visit
    changes = child_changes(store, language, "ucmsc-cp")
    rows = population(language, changes)
    for row in rows:
        members = [c for c in changes if c.visit == row.visit]
        assert row.summary.n + sum(row.missing.values()) == len(members)
    assert all(c.change is None and c.missing for c in changes if c.baseline is None or c.follow_up is None)


def test_the_command_prints_the_table_and_writes_csv_a_statistician_can_read(four_sites, tmp_path):
    _, url = four_sites
    table, children = tmp_path / "results.csv", tmp_path / "children.csv"
    result = CliRunner().invoke(main, ["outcomes", "--measure", "adl", "--by", "arm", "--csv", str(table),
                                       "--children", str(children), "--db", url], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0].split()[:4] == ["outcome", "visit", "group", "n"]
    with table.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert {(r["visit"], r["group"]) for r in rows} >= {("month-12", "arm-1"), ("month-12", "arm-2")}
    assert all(float(r["ci95_low"]) <= float(r["mean_change"]) <= float(r["ci95_high"]) for r in rows
               if r["ci95_low"])
    assert oct(children.stat().st_mode & 0o777) == "0o600"  # per child, though pseudonymous
    bad = CliRunner().invoke(main, ["outcomes", "--measure", "walking", "--db", url])
    assert bad.exit_code == 2 and "the spec has: adl" in bad.output
