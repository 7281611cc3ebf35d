"""The trial's other outcome measures equal a calculation made here by hand from the four sites'
raw export files (plain csv and json, not the adapter): GMFM-88 total and dimension B, the CD4/CD8
ratio, the Modified Ashworth shift table and adverse events by CTCAE grade. Also: out-of-window
values are reported apart, missing ones counted with their reason, and a bad outcome is refused
when the spec loads."""
from __future__ import annotations

import csv
import json
import re
import statistics
import time
from collections import Counter, defaultdict
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

import pytest
from datetime import date
from click.testing import CliRunner

from adapter.cli import main
from adapter.outcomes.adverse_events import adverse_event_rows
from adapter.outcomes.cohort import cohort
from adapter.outcomes.measures import COLUMNS, child_changes, outcomes_of, population
from adapter.outcomes.shifts import shift_rows
from adapter.protocol.spec import SPECS
from adapter.protocol.spec import SpecError, load_spec
from test_outcomes import SITES, _bad_rows, site_b_visits

SPEC = load_spec(SPECS / "ucmsc-cp-v1.yaml")


def _copy(url: str, path) -> None:
    """The session's store as it is now, WAL included (a file copy would miss what the WAL holds)."""
    import sqlite3
    with sqlite3.connect(url.removeprefix("sqlite:///")) as source, sqlite3.connect(path) as target:
        source.backup(target)
OUTCOMES = outcomes_of(SPEC)
DIMENSIONS = {"a": (1, 17), "b": (18, 37), "c": (38, 51), "d": (52, 64), "e": (65, 88)}


def _tenth(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)


def _csv_rows(site: str, encoding: str, delimiter: str, visit_pattern: str):
    """(record, visit key, row, lost column) of every kept row of a CSV export, by the site's own
    visit names (a pattern whose group 1 is the month, none at baseline; injection-N apart)."""
    rejected, lost = _bad_rows(site)
    with (SITES / site / "export.csv").open(encoding=encoding, newline="") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter)
        key = reader.fieldnames[0]
        for line, row in enumerate(reader, 2):
            if line in rejected:
                continue
            event = row.get("redcap_event_name") or row.get("访视", "")
            found = re.fullmatch(visit_pattern, event)
            injection = re.search(r"(?:injection_|dose_|第)(\d+)", event)
            visit = (("baseline" if not found.group(1) else f"month-{found.group(1)}") if found
                     else f"injection-{injection.group(1)}" if injection else None)
            yield row[key], visit, row, lost.get(line)


PATTERNS = {"site-a": ("utf-8", ",", r"(?:screening|month_(\d+))_arm_1"),
            "site-c": ("gb18030", ";", r"(?:基线|随访(\d+)月)"),
            "site-d": ("utf-8", ",", r"(?:screening|fu_m(\d+))_arm_[12]")}


def _num(text: str | None) -> Decimal | None:
    return Decimal(text.replace(",", ".")) if text not in (None, "") else None


def _site_d_dimension(row: dict, lost: str | None, letter: str) -> Fraction | None:
    """The dimension % from its items, unrounded (the stored value is this to 0.1)."""
    first, last = DIMENSIONS[letter]
    items = [row.get(f"gmfm_{n}", "") for n in range(first, last + 1)]
    if lost in {f"gmfm_{n}" for n in range(first, last + 1)} or any(i not in ("0", "1", "2", "3") for i in items):
        return None  # not tested, empty or a bad item: not derived
    return Fraction(sum(int(i) for i in items) * 100, 3 * len(items))


def gmfm_by_hand(which: str) -> dict[tuple[str, str], dict[str, Decimal]]:
    """(site, record) -> visit -> GMFM-88 value: `total` or a dimension letter."""
    values: dict[tuple[str, str], dict[str, Decimal]] = defaultdict(dict)
    for site in ("site-a", "site-c", "site-d"):
        for record, visit, row, lost in _csv_rows(site, *PATTERNS[site]):
            if not visit or visit.startswith("injection"):
                continue
            if site == "site-a":
                dims = {d: None if lost == f"gmfm_{d}" else _num(row[f"gmfm_{d}"]) for d in DIMENSIONS}
            elif site == "site-d":  # the total from the unrounded dimensions, rounded once
                exact = {d: _site_d_dimension(row, lost, d) for d in DIMENSIONS}
                dims = {d: None if v is None else _tenth(Decimal(v.numerator) / v.denominator) for d, v in exact.items()}
                if which == "total" and all(v is not None for v in exact.values()):
                    mean = sum(exact.values()) / 5
                    values[(site, record)].setdefault(visit, _tenth(Decimal(mean.numerator) / mean.denominator))
                    continue
            else:
                dims = {}
            if which == "total":
                if site == "site-c":
                    value = None if lost == "GMFM-88总分(%)" else _num(row["GMFM-88总分(%)"])
                else:
                    value = _tenth(sum(dims.values()) / 5) if all(v is not None for v in dims.values()) else None
            else:
                value = dims.get(which)
            if value is not None:
                values[(site, record)].setdefault(visit, value)
    for record, visit, found, _ in site_b_visits():
        gmfm = found.get("scores", {}).get("gmfm88")
        if gmfm:
            dims = {d: Decimal(str(gmfm[d.upper()])) for d in DIMENSIONS}
            value = _tenth(sum(dims.values()) / 5) if which == "total" else dims[which]
            values[("site-b", record)].setdefault(visit, value)
    return values


def ratio_by_hand() -> dict[tuple[str, str], dict[str, float]]:
    values: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    for site in ("site-a", "site-d"):
        for record, visit, row, lost in _csv_rows(site, *PATTERNS[site]):
            if visit and row.get("cd4_pct") and row.get("cd8_pct") and lost not in ("cd4_pct", "cd8_pct"):
                values[(site, record)].setdefault(visit, float(row["cd4_pct"]) / float(row["cd8_pct"]))
    for record, visit, found, _ in site_b_visits():
        cells = found.get("labs", {}).get("lymphocytes", {})
        if "CD4" in cells and "CD8" in cells:
            values[("site-b", record)].setdefault(visit, cells["CD4"]["value"] / cells["CD8"]["value"])
    return values


def _changes(values, visit: str) -> dict[str, list[float]]:
    """site -> follow-up minus baseline of every child with both."""
    found: dict[str, list[float]] = defaultdict(list)
    for (site, _), by_visit in values.items():
        if "baseline" in by_visit and visit in by_visit:
            found[site].append(float(by_visit[visit]) - float(by_visit["baseline"]))
    return found


def _assert_same(rows, expected: dict[str, list[float]]) -> None:
    assert {g for g, c in expected.items() if c} == {r.group for r in rows if r.summary.n}
    for row in rows:
        changes = expected.get(row.group, [])
        assert row.summary.n == len(changes), row.group
        if changes:
            assert row.summary.mean == pytest.approx(statistics.fmean(changes)), row.group
            assert row.summary.median == pytest.approx(statistics.median(changes)), row.group
        if len(changes) > 1:
            assert row.summary.sd == pytest.approx(statistics.stdev(changes)), row.group


@pytest.mark.parametrize("key,which", [("gmfm-88-total", "total"), ("gmfm-88-b", "b")])
def test_gmfm_88_change_equals_the_calculation_by_hand(four_sites, key, which):
    store, _ = four_sites
    outcome = OUTCOMES[key]
    changes = child_changes(store, outcome, "ucmsc-cp")
    by_hand = gmfm_by_hand(which)
    for visit in outcome.follow_up:
        _assert_same(population(outcome, [c for c in changes if c.visit == visit], "site"), _changes(by_hand, visit))
    assert all(r.out_of_window.n == 0 for r in population(outcome, changes))  # the demo keeps its windows


def test_cd4_cd8_ratio_change_equals_the_calculation_by_hand(four_sites):
    store, _ = four_sites
    outcome = OUTCOMES["cd4-cd8-ratio"]
    changes = child_changes(store, outcome, "ucmsc-cp")
    for visit in outcome.follow_up:
        _assert_same(population(outcome, [c for c in changes if c.visit == visit], "site"),
                     _changes(ratio_by_hand(), visit))
    assert any(" / " in (c.baseline_observation or "") for c in changes)  # both parts named


def mas_by_hand(visit: str) -> tuple[Counter, int]:
    """(baseline grade, follow-up grade) -> child-muscle pairs at `visit`, and the children."""
    grades: dict[tuple[str, str, str], dict[str, str]] = defaultdict(dict)
    columns = {"site-a": ["mas_hams_l", "mas_hams_r", "mas_gast_l", "mas_gast_r"], "site-d": ["mas_elbow_l", "mas_elbow_r"]}
    for site, names in columns.items():
        for record, at, row, lost in _csv_rows(site, *PATTERNS[site]):
            for name in names:
                if at and row.get(name) and lost != name:
                    grades[(site, record, name)].setdefault(at, row[name])
    for record, at, found, _ in site_b_visits():
        for muscle, sides in found.get("scores", {}).get("ashworth", {}).items():
            for side, grade in sides.items():
                grades[("site-b", record, f"{muscle}-{side}")].setdefault(at, grade)
    pairs = Counter((g["baseline"], g[visit]) for g in grades.values() if "baseline" in g and visit in g)
    children = {k[:2] for k, g in grades.items() if "baseline" in g and visit in g}
    return pairs, len(children)


def test_modified_ashworth_shift_table_equals_the_calculation_by_hand(four_sites):
    store, _ = four_sites
    outcome = OUTCOMES["mas"]
    rows = {(r.visit, r.group): r for r in shift_rows(store, outcome, "ucmsc-cp")}
    pairs, children = mas_by_hand("month-6")
    row = rows[("month-6", "all")]
    assert {k: v for k, v in row.counts.items() if v} == dict(pairs)
    assert (row.n, row.children, row.n_out_of_window) == (sum(pairs.values()), children, 0)
    assert pairs and any(b != f for b, f in pairs)  # some children changed grade: a real table
    assert row.categories == ("0", "1", "1+", "2", "3", "4")
    by_site = {r.group: r for r in shift_rows(store, outcome, "ucmsc-cp", by="site") if r.visit == "month-6"}
    assert by_site["site-c"].n == 0 and by_site["site-c"].missing == {"no baseline and no follow-up value": 15}
    cells = row.cells()
    assert len(cells) == 36 + len(row.missing) and cells[0][:5] == ["mas", "month-6", "all", "0", "0"]


def adverse_events_by_hand() -> tuple[Counter, Counter, dict[str, int]]:
    """Events per CTCAE grade, children with one per grade, and enrolled children per site."""
    events: set[tuple[str, str, str, str, str, str]] = set()  # (site, record, visit, term, onset, grade)
    enrolled: dict[str, set[str]] = defaultdict(set)
    for site in ("site-a", "site-c", "site-d"):
        for record, visit, row, _ in _csv_rows(site, *PATTERNS[site]):
            repeat = row.get("redcap_repeat_instrument", "")
            if visit == "injection-1" and not repeat and (site != "site-c" or row.get("注射途径")):
                enrolled[site].add(record)
            if site == "site-a" and repeat == "adverse_event":
                for n in range(1, 6):
                    if row[f"ae_symptoms___{n}"] == "1":
                        after = row["ae_after_injection"]
                        events.add((site, record, f"injection-{after}" if after else visit, str(n), row["ae_onset"],
                                    row["ae_grade"]))
            elif site == "site-d" and repeat == "adverse_events":
                events.add((site, record, visit, row["ae_term"], row["ae_onset"], row["ae_grade"]))
            elif site == "site-c" and row["不良反应"]:
                for term, grade in zip(row["不良反应"].split("、"), row["不良反应分级"].split("、"), strict=True):
                    events.add((site, record, visit, term, "", grade))
    rejected, _ = _bad_rows("site-b")
    for line, text in enumerate((SITES / "site-b" / "export.ndjson").read_text(encoding="utf-8").splitlines(), 1):
        if line in rejected:
            continue
        document = json.loads(text)
        record = document["patient"]["id"]
        if any(v["kind"] == "infusion" and v.get("infusion", {}).get("number") == 1 for v in document["visits"]):
            enrolled["site-b"].add(record)
        for event in document.get("adverseEvents", []):
            events.add(("site-b", record, str(event.get("afterInfusion")), event["term"], event["date"],
                        str(event["ctcaeGrade"])))
    counted = [e for e in events if e[1] in enrolled[e[0]]]
    by_grade = Counter(e[5] for e in counted)
    children = Counter(grade for grade in by_grade for child in {(e[0], e[1]) for e in counted if e[5] == grade})
    return by_grade, children, {site: len(found) for site, found in enrolled.items()}


def test_adverse_events_by_grade_equal_the_calculation_by_hand(four_sites):
    store, _ = four_sites
    by_grade, children, enrolled = adverse_events_by_hand()
    (row,) = adverse_event_rows(store, "ucmsc-cp")
    assert {c.value: c.events for c in row.counts if c.dimension == "grade" and c.events} == dict(by_grade)
    assert {c.value: c.children for c in row.counts if c.dimension == "grade" and c.children} == dict(children)
    assert [c.value for c in row.counts if c.dimension == "grade"][:5] == ["1", "2", "3", "4", "5"]  # zeros listed
    assert row.events == sum(by_grade.values()) and row.enrolled == sum(enrolled.values())
    assert row.rate == pytest.approx(row.children / row.enrolled) and row.rate_low <= row.rate <= row.rate_high
    per_site = {r.group: r for r in adverse_event_rows(store, "ucmsc-cp", by="site")}
    assert {site: r.enrolled for site, r in per_site.items()} == enrolled
    assert sum(r.events for r in per_site.values()) == row.events
    for r in per_site.values():  # each dimension splits the same events
        for dimension in ("grade", "seriousness", "causality"):
            assert sum(c.events for c in r.counts if c.dimension == dimension) == r.events


@pytest.fixture()
def moved(four_sites, tmp_path):
    """A copy of the four sites' store with one child's month-6 visit moved 30 days later."""
    from adapter.protocol.apply import read_json
    from adapter.store import open_store
    store, url = four_sites
    path = tmp_path / "moved.db"
    _copy(url, path)
    copy = open_store(f"sqlite:///{path}")
    children = cohort(copy, "ucmsc-cp")
    adl = OUTCOMES["adl"]
    change = next(c for c in child_changes(copy, adl, "ucmsc-cp", cohort=children) if c.visit == "month-6" and c.change is not None)
    observation = read_json(copy, "Observation", change.follow_up_observation.split("/")[1])
    day = children.windows(change.patient)["month-6"][1]
    from datetime import timedelta
    observation["effectiveDateTime"] = (day + timedelta(days=30)).isoformat()
    copy.update(observation)
    yield copy, change
    copy.close()


def test_an_out_of_window_value_is_reported_apart_never_mixed_in(moved):
    store, before = moved
    adl = OUTCOMES["adl"]
    changes = child_changes(store, adl, "ucmsc-cp")
    after = next(c for c in changes if c.patient == before.patient and c.visit == "month-6")
    assert (after.follow_up_days_outside, after.baseline_days_outside, after.out_of_window) == (30, 0, True)
    row = next(r for r in population(adl, changes) if r.visit == "month-6")
    inside = [c.change for c in changes if c.visit == "month-6" and c.change is not None and c is not after]
    assert row.out_of_window.n == 1 and row.out_of_window.mean == float(after.change)
    assert row.summary.n == len(inside) and row.summary.mean == pytest.approx(statistics.fmean(map(float, inside)))
    cells = dict(zip(COLUMNS, row.cells(), strict=True))
    assert cells["n_out_of_window"] == 1 and COLUMNS[:13] == ["outcome", "visit", "group", "n", "n_missing",
                                                              "mean_change", "sd", "ci95_low", "ci95_high", "median",
                                                              "q1", "q3", "missing"]


def test_the_measure_reports_keep_an_out_of_window_value_apart_too(moved):
    """The population report and the child's own: excluded, with its days outside, never the score."""
    from adapter.outcomes.evaluate import evaluate_measure
    from adapter.outcomes.reports import statistics_url
    store, before = moved
    period = (date(2000, 1, 1), date(2100, 1, 1))
    child = evaluate_measure(store, "ucmsc-cp-adl", "subject", before.patient, period)
    group = next(g for g in child["group"] if g["code"]["coding"][0]["code"] == "month-6")
    counts = {p["code"]["coding"][0]["code"]: p["count"] for p in group["population"]}
    assert counts == {"initial-population": 1, "measure-population": 0, "measure-population-exclusion": 1}
    assert "measureScore" not in group
    parts = {p["url"]: p.get("valueInteger", p.get("valueDecimal")) for p in group["extension"][0]["extension"]
             if group["extension"][0]["url"] == statistics_url("http://ucmsc-cp.example.org/fhir")}
    assert parts["follow-up-days-outside"] == 30 and parts["change"] == float(before.change)
    everyone = evaluate_measure(store, "ucmsc-cp-adl", "population", None, period)
    month_6 = next(g for g in everyone["group"] if g["code"]["coding"][0]["code"] == "month-6")
    stats = {p["url"]: p.get("valueInteger", p.get("valueDecimal")) for p in month_6["extension"][0]["extension"]
             if "url" in p and p["url"] != "missing"}
    assert stats["out-of-window-n"] == 1 and stats["out-of-window-mean"] == float(before.change)


def test_a_missing_value_is_counted_with_its_reason(four_sites):
    store, _ = four_sites
    ratio = OUTCOMES["cd4-cd8-ratio"]
    changes = child_changes(store, ratio, "ucmsc-cp")
    rows = population(ratio, changes, "site")
    site_c = next(r for r in rows if r.group == "site-c" and r.visit == "month-6")  # no lymphocyte subsets sent
    assert site_c.summary.n == 0 and site_c.missing == {"no baseline and no follow-up value": 15}
    for row in rows:
        members = [c for c in changes if c.visit == row.visit and c.site == row.group]
        assert row.summary.n + row.out_of_window.n + sum(row.missing.values()) == len(members)
    mrc = OUTCOMES["mrc"]  # per child and muscle: n counts muscles, `children` the children
    row = next(r for r in population(mrc, child_changes(store, mrc, "ucmsc-cp"), "site")
               if r.group == "site-a" and r.visit == "month-6")
    assert row.summary.n == 2 * row.children


def test_a_ratio_with_a_missing_part_is_missing_with_that_reason(four_sites, tmp_path):
    from adapter.protocol.apply import search_all
    from adapter.store import open_store
    _, url = four_sites
    path = tmp_path / "part.db"
    _copy(url, path)
    store = open_store(f"sqlite:///{path}")
    try:
        ratio = OUTCOMES["cd4-cd8-ratio"]
        child = next(c for c in child_changes(store, ratio, "ucmsc-cp") if c.site == "site-a" and c.visit == "month-6")
        cd8 = next(o for o in search_all(store, "Observation", [("code", "http://loinc.org|8101-8"),
                                                                  ("subject", child.patient)])
                   if o["id"] in child.follow_up_observation)
        store.delete("Observation", cd8["id"])
        after = next(c for c in child_changes(store, ratio, "ucmsc-cp") if c.patient == child.patient
                     and c.visit == "month-6")
        assert after.change is None and after.missing == "no follow-up value (no CD8+ % value, a part of the ratio)"
    finally:
        store.close()


BAD = {
    "shift without categories": ("  mas2: {title: t, summary: shift, code: {system: local, code: gmfm-66}, "
                                 "baseline: baseline, follow_up: [month-6]}\n", "'categories' is a required property"),
    "a change without a code": ("  x: {title: t, baseline: baseline, follow_up: [month-6]}\n",
                                "'code' is a required property"),
    "categories on a change": ("  x: {title: t, code: {system: local, code: gmfm-66}, baseline: baseline, "
                               "follow_up: [month-6], categories: [{label: a, system: s, code: a}, "
                               "{label: b, system: s, code: b}]}\n", "outcomes.x.categories: not for an outcome of summary 'change'"),
    "an unknown summary": ("  x: {title: t, summary: mean, code: {system: local, code: gmfm-66}, baseline: baseline, "
                           "follow_up: [month-6]}\n", "'mean' is not one of ['change', 'shift', 'adverse-events']"),
    "a code on adverse events": ("  x: {title: t, summary: adverse-events, code: {system: local, code: gmfm-66}}\n",
                                 "outcomes.x.code: not for an outcome of summary 'adverse-events'"),
    "an unknown local code": ("  x: {title: t, code: {system: local, code: nope}, baseline: baseline, "
                              "follow_up: [month-6]}\n", "outcomes.x.code.code: local code 'nope' is not in local_codes"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_outcome_is_refused_with_a_clear_message(tmp_path, case):
    text, message = BAD[case]
    path = tmp_path / "spec.yaml"
    path.write_text((SPECS / "ucmsc-cp-v1.yaml").read_text(encoding="utf-8") + text, encoding="utf-8")
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert any(message in problem for problem in caught.value.problems), caught.value.problems


def test_the_command_prints_and_writes_shift_tables_and_adverse_events(four_sites, tmp_path):
    _, url = four_sites
    table = tmp_path / "results.csv"
    started = time.perf_counter()
    result = CliRunner().invoke(main, ["outcomes", "--measure", "mas", "--measure", "adverse-events", "--measure",
                                       "cd4-cd8-ratio", "--by", "arm", "--csv", str(table), "--db", url],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert time.perf_counter() - started < 10
    assert "baseline \\ follow-up" in result.output and "enrolled" in result.output
    with (tmp_path / "results-shift.csv").open(encoding="utf-8") as handle:
        shifts = list(csv.DictReader(handle))
    assert {r["group"] for r in shifts} == {"arm-1", "arm-2"} and {r["visit"] for r in shifts} >= {"month-6"}
    with (tmp_path / "results-adverse-events.csv").open(encoding="utf-8") as handle:
        events = list(csv.DictReader(handle))
    assert {(r["group"], r["dimension"]) for r in events} >= {("arm-1", "all"), ("arm-1", "grade")}
    with table.open(encoding="utf-8") as handle:
        assert next(csv.reader(handle)) == COLUMNS
    help_text = CliRunner().invoke(main, ["outcomes", "--help"]).output
    assert "--measure mas" in help_text and "--measure adverse-events" in help_text


def test_population_and_shift_tables_keep_out_of_window_and_unchecked_values_apart():
    from decimal import Decimal as D

    from adapter.outcomes.measures import ChildChange
    from adapter.outcomes.shifts import ChildShift, shift_table
    adl = OUTCOMES["adl"]
    changes = [ChildChange("Patient/1", "arm-1", "site-a", "month-1", D(10), D(20), "O/1", "O/2", "", 0, 0),
               ChildChange("Patient/2", "arm-1", "site-a", "month-1", D(10), D(15), "O/3", "O/4", "", 0, 0),
               ChildChange("Patient/3", "arm-1", "site-a", "month-1", D(10), D(90), "O/5", "O/6", "", 0, -9),
               ChildChange("Patient/4", "arm-1", "site-a", "month-1", D(10), D(40), "O/7", "O/8", "", None, None),
               ChildChange("Patient/5", "arm-1", "site-a", "month-1", None, D(40), None, "O/9", "", None, 0)]
    (row,) = population(adl, changes)
    assert (row.summary.n, row.summary.mean, row.window_unknown) == (3, 15.0, 1)  # 10, 5 and the unchecked 30
    assert (row.out_of_window.n, row.out_of_window.mean) == (1, 80.0)  # 9 days early: apart
    assert row.missing == {"no baseline value": 1} and changes[2].out_of_window and not changes[3].window_checked
    mas = OUTCOMES["mas"]
    shifts = [ChildShift("Patient/1", "arm-1", "site-a", "month-3", "hamstrings-left", "1", "1+", "O/1", "O/2", 0, 0),
              ChildShift("Patient/1", "arm-1", "site-a", "month-3", "hamstrings-right", "1", "1", "O/3", "O/4", 0, 0),
              ChildShift("Patient/2", "arm-1", "site-a", "month-3", "hamstrings-left", "2", "1", "O/5", "O/6", 0, 12),
              ChildShift("Patient/3", "arm-1", "site-a", "month-3", "", None, "2", None, "O/7", None, 0,
                         "no baseline value")]
    (table,) = shift_table(mas, shifts)
    assert {k: v for k, v in table.counts.items() if v} == {("1", "1+"): 1, ("1", "1"): 1}
    assert {k: v for k, v in table.out_of_window.items() if v} == {("2", "1"): 1}
    assert (table.n, table.children, table.n_out_of_window, table.missing) == (2, 1, 1, {"no baseline value": 1})
