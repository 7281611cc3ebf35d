"""The four sites' exports through their mappings into the store (SQLite and PostgreSQL):
exactly the expected rejections, every stored resource valid, re-ingest updates in place."""
from __future__ import annotations

import csv
import json
from collections import Counter
from datetime import date
from fractions import Fraction

import pytest
from sqlalchemy import select

from adapter.fhir.validation import validate
from adapter.mapping.ingest import ingest
from adapter.mapping.spec import load_mapping
from adapter.protocol.adherence import Finding, adherence
from adapter.protocol.spec import SPECS
from adapter.store.schema import resources
from conftest import ROOT, table_counts
from r4schema import assert_r4

SITES = ROOT / "fixtures" / "sites"
MAPPINGS = ROOT / "mappings" / "sites"
KEY = b"test-pseudonym-key-0123456789"
CHILDREN = {"site-a": 20, "site-b": 15, "site-c": 15, "site-d": 12}
# site B's bad documents are children of their own, partly accepted: one loses a lab, the other
# the visit with the bad date (its second injection); site D's fourth dose of one child, entered
# a year early, has no weight at or before it: its cells given, so its Procedure, are lost
PARTLY_NEW_CHILDREN = {"site-b": 2}
INJECTIONS_LOST = {"site-b": 1, "site-d": 1}


def expected_rejections(site: str) -> list[dict[str, str]]:
    with (SITES / site / "expected-rejections.csv").open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def exports(site: str) -> list:
    return sorted((SITES / site).glob("export.*"))


def stored(store) -> list[dict]:
    with store.engine.connect() as conn:
        return [json.loads(row.data) for row in conn.execute(select(resources.c.data).where(~resources.c.deleted))]


def _protocol(store) -> None:
    """The study the sites' ResearchSubjects belong to: with references checked, it must exist."""
    from adapter.study.build import build_resources
    from adapter.protocol.spec import load_spec
    store.load([r for spec in SPECS.glob("*.yaml") for r in build_resources(load_spec(spec))])


@pytest.mark.parametrize("site", sorted(CHILDREN))
@pytest.mark.slow
def test_each_site_loads_with_exactly_the_expected_rejections(checked_store, site):
    store = checked_store  # every reference of every accepted row resolves
    _protocol(store)
    spec = load_mapping(MAPPINGS / f"{site}.yaml")
    report = ingest(spec, exports(site), store, KEY)
    expected = expected_rejections(site)
    got = [(r.file.rsplit("/", 1)[-1], str(r.row), r.column, r.value) for r in report.rejections]
    assert got == [(e["file"], e["row"], e["column"], e["value"]) for e in expected]
    everything = stored(store)
    ids = {f"{r['resourceType']}/{r['id']}" for r in everything}
    for rejection, wanted in zip(report.rejections, expected, strict=True):
        assert rejection.reason.startswith(wanted["reason"]), (rejection.reason, wanted["reason"])
        assert rejection.rule.startswith(f"{site}.yaml:")
        # what the cell fed is named, and is not stored: the rest of a partly accepted row is
        assert not ids & set(rejection.not_made)
        if wanted["outcome"] == "partly" and "date" not in wanted["reason"]:
            # a bad cell costs the Observations it feeds; a failed lookup, the Procedure it feeds
            fed = ("Procedure/",) if wanted["reason"].startswith("needed for") else ("Observation/",)
            assert rejection.not_made and all(r.startswith(fed) for r in rejection.not_made)
    lines = sum(1 for path in exports(site) for _ in path.open("rb"))
    rows = lines - (1 if spec.tabular else 0)
    assert report.rows_read == rows == report.rows_accepted + report.rows_partly + report.rows_rejected
    outcomes = Counter(e["outcome"] for e in expected)
    assert (report.rows_partly, report.rows_rejected) == (outcomes["partly"], outcomes["rejected"])
    assert report.cells_rejected == len(expected)
    types = Counter(r["resourceType"] for r in everything)
    children = CHILDREN[site] + PARTLY_NEW_CHILDREN.get(site, 0)
    assert types["Patient"] == types["ResearchSubject"] == types["Condition"] == children
    assert types["Procedure"] == 4 * children - INJECTIONS_LOST.get(site, 0)
    assert sum(types.values()) == len({(r["resourceType"], r["id"]) for r in everything})
    for resource in everything:
        assert validate(resource) == [], resource["id"]
        assert_r4(resource)
    _assert_visits_are_encounters(site, everything)
    if site == "site-d":
        assert_site_d_derived_values(everything)


def assert_site_d_derived_values(everything: list[dict]) -> None:
    """Site D's derived values, worked out by hand from the export: GMFM-88 dimension % =
    100 x item sum / (3 x items), total = mean of the five; cells given = dose per kg x the
    screening weight (dose rows hold no weight)."""
    from decimal import ROUND_HALF_UP, Decimal
    dimensions = {"a": (1, 17), "b": (18, 37), "c": (38, 51), "d": (52, 64), "e": (65, 88)}
    bad = {int(e["row"]) for e in expected_rejections("site-d")}
    by_id = {r["id"]: r for r in everything if r["resourceType"] != "Encounter"}  # theirs are the visits'
    with (SITES / "site-d" / "export.csv").open(encoding="utf-8", newline="") as handle:
        rows = [r for line, r in enumerate(csv.DictReader(handle), 2) if line not in bad]
    weights = {r["record_id"]: r["weight_kg"] for r in rows if r["redcap_event_name"].startswith("screening_")}
    percentages = procedures = not_derived = 0
    for row in rows:
        event = row["redcap_event_name"]
        visit = ("baseline" if event.startswith("screening_") else
                 f"injection-{event.split('_')[1]}" if event.startswith("dose_") else
                 f"month-{event.split('_')[1][1:]}")
        prefix = f"site-d-{row['record_id']}-{visit}"
        if row["adm_dose_per_kg"] and row["redcap_repeat_instrument"] == "":
            cells = Decimal(row["adm_dose_per_kg"]) * Decimal(weights[row["record_id"]])
            given = next(e["valueQuantity"] for e in by_id[prefix]["extension"] if "valueQuantity" in e)
            assert Decimal(str(given["value"])) == cells.quantize(Decimal("0.1"), ROUND_HALF_UP), prefix
            procedures += 1
        if not row["gmfm_1"]:
            continue
        derived, exact = {}, {}
        for d, (first, last) in dimensions.items():
            items = [row[f"gmfm_{n}"] for n in range(first, last + 1)]
            if "NT" in items:
                assert f"{prefix}-gmfm-88-{d}" not in by_id  # not derived: not tested is not a zero
                not_derived += 1
                continue
            exact[d] = Fraction(100 * sum(map(int, items)), 3 * len(items))
            derived[d] = (Decimal(exact[d].numerator) / exact[d].denominator).quantize(Decimal("0.1"), ROUND_HALF_UP)
            assert Decimal(str(by_id[f"{prefix}-gmfm-88-{d}"]["valueQuantity"]["value"])) == derived[d], prefix
            percentages += 1
        total = by_id.get(f"{prefix}-gmfm-88-total")
        if len(derived) < 5:
            assert total is None
        else:
            mean = sum(exact.values()) / 5  # of the unrounded dimensions (the manual), rounded once
            mean_rounded = (Decimal(mean.numerator) / mean.denominator).quantize(Decimal("0.1"), ROUND_HALF_UP)
            assert Decimal(str(total["valueQuantity"]["value"])) == mean_rounded, prefix
    assert (procedures, not_derived, percentages) == (47, 2, 12 * 5 * 5 - 2)  # 5 assessed visits a child
    # the arm of each child, read from its screening row (rand_arm) where the first dose's row enrols it
    randomised = {r["record_id"]: r["rand_arm"] for r in rows if r["redcap_event_name"].startswith("screening_")}
    arms = {r["individual"]["reference"].removeprefix("Patient/site-d-"): r["assignedArm"]
            for r in everything if r["resourceType"] == "ResearchSubject"}
    assert arms == {record: f"arm-{code}" for record, code in randomised.items()}
    assert Counter(arms.values()) == {"arm-1": 8, "arm-2": 4}


ENCOUNTERS = {"site-a": 182, "site-b": 152, "site-c": 137, "site-d": 110}  # per dated visit that made something (partly accepted rows too)


def _assert_visits_are_encounters(site: str, everything: list[dict]) -> None:
    """Every visit is an Encounter of its child on the visit's date, named by the visit key, a
    target of its row's Provenance; every Observation and Procedure points to its visit's."""
    encounters = {r["id"]: r for r in everything if r["resourceType"] == "Encounter"}
    assert len(encounters) == ENCOUNTERS[site]
    targets = {t["reference"] for r in everything if r["resourceType"] == "Provenance" for t in r["target"]}
    assert {f"Encounter/{i}" for i in encounters} <= targets
    for encounter in encounters.values():
        visit = encounter["type"][0]["coding"][0]["code"]
        assert encounter["id"] == f"{encounter['subject']['reference'].split('/')[1]}-{visit}"
        assert (encounter["status"], encounter["class"]["code"]) == ("finished", "AMB")
    pointing = [r for r in everything if r["resourceType"] in ("Observation", "Procedure", "AdverseEvent")
                and "encounter" in r]
    # site A's adverse events come from undated repeat rows, site B's are read per document: no visit
    events = [r for r in everything if r["resourceType"] == "AdverseEvent"]
    assert events and all(("encounter" in r) == (site == "site-c") for r in events)
    assert len(pointing) >= sum(1 for r in everything if r["resourceType"] in ("Observation", "Procedure"))
    for resource in pointing:
        encounter = encounters[resource["encounter"]["reference"].split("/")[1]]
        assert encounter["subject"] == resource["subject"]
        if resource["resourceType"] == "Observation":
            assert encounter["period"]["start"] == resource["effectiveDateTime"][:10]
            assert resource["id"].startswith(encounter["id"] + "-")


@pytest.mark.slow
def test_site_b_bad_cells_cost_only_what_they_feed(store):
    """A bad unit loses that lab's Observation, a bad visit date that visit: the rest of each
    document is stored, and the fixed documents re-ingest in place from the quarantine."""
    spec = load_mapping(MAPPINGS / "site-b.yaml")
    report = ingest(spec, exports("site-b"), store, KEY)
    unit, day = report.rejections[:2]
    ids = {f"{r['resourceType']}/{r['id']}" for r in stored(store)}
    assert unit.not_made and not ids & set(unit.not_made)
    bad_lab = unit.not_made[0].split("/")[1]
    lab_siblings = {i for i in ids if i.startswith(f"Observation/{bad_lab.rsplit('-', 1)[0]}-")}
    assert lab_siblings, "the bad IgG's visit keeps its other labs"
    record = bad_lab.split("-")[2]
    month = [i for i in ids if i.startswith(f"Observation/site-b-{record}-") and "-month-" in i]
    assert month and {i.split("-month-")[1].split("-")[0] for i in month}
    assert day.column == "$.visits[2].date" and any(i.startswith("Patient/") for i in ids)


@pytest.mark.slow
def test_reingesting_the_same_export_updates_in_place(store):
    spec = load_mapping(MAPPINGS / "site-c.yaml")
    first = ingest(spec, exports("site-c"), store, KEY)
    before = table_counts(store)
    again = ingest(spec, exports("site-c"), store, KEY)
    after = table_counts(store)
    assert again.resources == first.resources
    assert after["resources"] == before["resources"]  # no duplicates, ever
    assert after["resource_history"] == before["resource_history"]  # nothing changed: no new version
    versions = {r["meta"]["versionId"] for r in stored(store) if r["resourceType"] == "Patient"}
    assert versions == {"1"}


@pytest.mark.slow
def test_the_mrn_is_never_stored_in_clear_and_the_pseudonym_is_keyed(store, tmp_path):
    spec = load_mapping(MAPPINGS / "site-a.yaml")
    ingest(spec, exports("site-a"), store, KEY)
    with (SITES / "site-a" / "export.csv").open(encoding="utf-8") as handle:
        mrns = {row["mrn"] for row in csv.DictReader(handle) if row["mrn"]}
    text = "\n".join(json.dumps(r) for r in stored(store))
    assert len(mrns) == 20 and not any(mrn in text for mrn in mrns)
    patient = next(r for r in stored(store) if r["id"] == "site-a-A0001")
    hashed = {i["system"].rsplit("/", 1)[-1]: i["value"] for i in patient["identifier"]}
    assert len(hashed["site-a-mrn-hmac"]) == 64 and hashed["site-a-subject"] == "A0001"
    other = load_mapping(MAPPINGS / "site-a.yaml")
    from adapter.mapping.engine import map_record
    from adapter.mapping.scopes import read_source
    row = next(r for r in read_source(other, SITES / "site-a" / "export.csv"))
    again = map_record(other, b"another-key-0123456789", row, "2026-01-01T00:00:00Z")
    moved = next(r for r in again.resources if r["resourceType"] == "Patient")
    assert moved["identifier"][0]["value"] != hashed["site-a-mrn-hmac"]  # a different key, another pseudonym


@pytest.mark.slow
def test_ingested_injections_are_checked_against_the_protocol(store, tmp_path):
    """The mapped Procedures carry the protocol's codes: adherence finds arm 1's four injections."""
    from adapter.study.build import build_resources
    from adapter.protocol.spec import load_spec
    store.load([r for spec in SPECS.glob("*.yaml") for r in build_resources(load_spec(spec))])
    ingest(load_mapping(MAPPINGS / "site-a.yaml"), exports("site-a"), store, KEY)
    findings = adherence(store, "ucmsc-cp-site-a-A0001", date(2027, 12, 31))
    injections = [f for f in findings if "injection" in f.activity]
    assert len(injections) == 4
    assert {f.status for f in injections} <= {"done-in-window", "done-out-of-window"}
    assert all(f.resource and f.resource.startswith("Procedure/site-a-A0001-injection-") for f in injections)
    # Visits as data: each planned visit names the child's Encounter of it; an Encounter is searchable
    # by patient, type (the visit key) and date, and its resources by encounter.
    assert [f.encounter for f in injections] == [f"Encounter/site-a-A0001-injection-{n}" for n in range(1, 5)]
    assert {f.encounter for f in findings if f.visit == "baseline"} == {"Encounter/site-a-A0001-baseline"}
    assert [f.resource.split("/")[1] for f in injections] == [f.encounter.split("/")[1] for f in injections]
    from adapter.protocol.apply import search_all
    from adapter.mapping.visits import visit_system
    system = visit_system("http://ucmsc-cp.example.org/fhir", "ucmsc-cp")
    [second] = search_all(store, "Encounter", [("patient", "Patient/site-a-A0001"), ("type", f"{system}|injection-2")])
    assert [e["id"] for e in search_all(store, "Encounter", [("subject", "Patient/site-a-A0001"),
                                                            ("date", second["period"]["start"])])] == [second["id"]]
    at_visit = list(search_all(store, "Observation", [("encounter", f"Encounter/{second['id']}")]))
    assert at_visit and all(o["id"].startswith("site-a-A0001-injection-2-") for o in at_visit)
    assert [p["id"] for p in search_all(store, "Procedure", [("encounter", f"Encounter/{second['id']}")])] == [
        "site-a-A0001-injection-2"]
    # The adverse reaction review: an AdverseEvent recorded for the visit (A0004's fever after its
    # first injection) does it; without one, a site's "no adverse event" box, mapped by a rule.
    reviews = {f.visit: f for f in adherence(store, "ucmsc-cp-site-a-A0004", date(2027, 12, 31))
               if f.activity.endswith("adverse-reaction-review")}
    assert reviews["c1-d0"].status == "done-in-window"
    assert reviews["c1-d0"].resource.startswith("AdverseEvent/site-a-A0004-injection-1-ae-")
    assert reviews["c1-d7"].status == "missing"

    def review(child: str, visit: str) -> Finding:
        return next(f for f in adherence(store, f"ucmsc-cp-site-a-{child}", date(2027, 12, 31))
                    if f.visit == visit and f.activity.endswith("adverse-reaction-review"))

    assert review("A0001", "c1-d7").status == "missing"
    text = (MAPPINGS / "site-a.yaml").read_text(encoding="utf-8").replace(
        "catalogue: catalogue.yaml", f"catalogue: {MAPPINGS / 'catalogue.yaml'}").replace("  dictionary:", "  # dictionary:")
    text += '  - {observation: adverse-reaction-review, value: {const: "no"}, when: {equals: {ae_none___1: "1"}}}\n'
    (tmp_path / "site-a.yaml").write_text(text, encoding="utf-8")
    from adapter.mapping.engine import map_record
    from adapter.mapping.sources import SourceRow
    row = SourceRow("x.csv", 2, {"record_id": "A0001", "redcap_event_name": "injection_2_arm_1",
                                 "redcap_repeat_instrument": "", "visit_date": second["period"]["start"],
                                 "ae_none___1": "1"})
    mapped = map_record(load_mapping(tmp_path / "site-a.yaml"), KEY, row, "2026-01-01T00:00:00Z")
    box = next(r for r in mapped.resources if r["resourceType"] == "Observation")
    assert box["valueCodeableConcept"]["coding"][0]["code"] == "N" and box["encounter"]["reference"] == \
        f"Encounter/{second['id']}"
    store.load([r for r in mapped.resources if r["resourceType"] == "Observation"])
    done = review("A0001", "c1-d7")
    assert (done.status, done.resource, done.encounter) == (
        "done-in-window", f"Observation/{box['id']}", f"Encounter/{second['id']}")


def test_workers_give_the_same_result_as_one_process(monkeypatch):
    import io

    from adapter.mapping import run
    from adapter.mapping.ingest import translate
    monkeypatch.setattr(run, "CHUNK", 16)  # many chunks in flight, results still in file order
    spec = load_mapping(MAPPINGS / "site-a.yaml")
    outputs = []
    for workers in (1, 2):
        out = io.BytesIO()
        report = translate(spec, exports("site-a"), out, KEY, "2026-01-01T00:00:00Z", workers=workers)
        outputs.append((out.getvalue(), [str(r) for r in report.rejections], report.rows_read))
    assert outputs[0] == outputs[1]


@pytest.mark.slow
def test_worker_processes_write_the_same_store_as_one_process(db_url, monkeypatch, tmp_path):
    """Each worker writes through its own connection; the store ends the same, rows in order."""
    from adapter.mapping import run
    from adapter.store.sql_store import SqlStore
    monkeypatch.setattr(run, "CHUNK", 16)
    spec = load_mapping(MAPPINGS / "site-a.yaml")
    results = []
    for workers, url in ((1, f"sqlite:///{tmp_path / 'one.db'}"), (2, db_url)):
        store = SqlStore(url, check_references=True)  # a worker's row may name another's Patient
        try:
            _protocol(store)
            report = ingest(spec, exports("site-a"), store, KEY, "2026-01-01T00:00:00Z", workers=workers)
            contents = sorted((r["resourceType"], r["id"], json.dumps({k: v for k, v in r.items() if k != "meta"},
                                                                       sort_keys=True)) for r in stored(store))
            results.append(([str(r) for r in report.rejections], report.rows_read, report.resources, contents))
        finally:
            store.close()
    assert results[0] == results[1]


def test_a_json_array_export_maps_like_ndjson(tmp_path):
    """format: json (one array of records): rows are the records' positions, 1-based."""
    import io

    from adapter.mapping.ingest import translate
    documents = [json.loads(line) for line in (SITES / "site-b/export.ndjson").read_text(encoding="utf-8").splitlines()]
    (tmp_path / "export.json").write_text(json.dumps(documents), encoding="utf-8")
    text = (MAPPINGS / "site-b.yaml").read_text(encoding="utf-8").replace("format: ndjson", "format: json")
    text = text.replace("catalogue: catalogue.yaml", f"catalogue: {MAPPINGS / 'catalogue.yaml'}")
    (tmp_path / "site-b.yaml").write_text(text, encoding="utf-8")
    outputs = []
    for spec_path, export in ((MAPPINGS / "site-b.yaml", SITES / "site-b/export.ndjson"),
                              (tmp_path / "site-b.yaml", tmp_path / "export.json")):
        out = io.BytesIO()
        report = translate(load_mapping(spec_path), [export], out, KEY, "2026-01-01T00:00:00Z")
        made = [line for line in out.getvalue().splitlines() if b'"Provenance"' not in line]  # names the file
        outputs.append((made, [(r.row, r.column, r.reason) for r in report.rejections]))
    assert outputs[0] == outputs[1]  # the same rows: one document per line in the NDJSON


def test_a_record_in_two_files_of_one_ingest_is_reported_as_a_duplicate(tmp_path):
    import io

    from adapter.mapping.ingest import translate
    lines = (SITES / "site-c/export.csv").read_bytes().splitlines(keepends=True)
    (tmp_path / "first.csv").write_bytes(b"".join(lines[:3]))
    (tmp_path / "second.csv").write_bytes(lines[0] + lines[2])  # line 3 of first.csv again
    report = translate(load_mapping(MAPPINGS / "site-c.yaml"), [tmp_path / "first.csv", tmp_path / "second.csv"],
                       io.BytesIO(), KEY, "2026-01-01T00:00:00Z")
    assert [(r.file.rsplit("/", 1)[-1], r.row, r.reason) for r in report.rejections] == [
        ("second.csv", 2, "duplicate of first.csv line 3")]
    assert report.rows_read == 3 == report.rows_accepted + report.rows_rejected
