"""What an ingest reports: distinct resources (created, updated, unchanged), not writes; a row
that makes nothing is a rejection and a value that makes nothing a warning, each with its cell."""
from __future__ import annotations

import csv
import io
from collections import Counter

import pytest
from sqlalchemy import func, select

from adapter.mapping.ingest import ingest, translate
from adapter.mapping.spec import load_mapping
from adapter.store.schema import resources
from conftest import ROOT

SPEC = ROOT / "mappings" / "sites" / "site-a.yaml"
EXPORT = ROOT / "fixtures" / "sites" / "site-a" / "export.csv"
KEY = b"test-pseudonym-key-0123456789"


def stored_types(store) -> Counter[str]:
    with store.engine.connect() as conn:
        return Counter(dict(conn.execute(select(resources.c.res_type, func.count()).group_by(resources.c.res_type)).all()))


@pytest.mark.slow
def test_the_summary_counts_distinct_resources_created_then_updated_or_unchanged(store):
    spec = load_mapping(SPEC)
    first = ingest(spec, [EXPORT], store, KEY)
    in_store = stored_types(store)
    assert {t: c["created"] for t, c in first.by_type.items()} == in_store
    assert all(set(c) == {"created"} for c in first.by_type.values())
    lots = {row["inj_lot"] for row in csv.DictReader(EXPORT.open(encoding="utf-8")) if row["inj_lot"]}
    assert in_store["BiologicallyDerivedProduct"] == len(lots) < in_store["Procedure"]  # a lot serves several
    assert first.resources == sum(in_store.values()) < first.writes
    # the catalogue's own codes (item codes, body sites the protocol lacks) are served with the data
    assert in_store["CodeSystem"] == in_store["ValueSet"] == 1
    import json
    codes = {c["code"]: c["display"] for c in json.loads(store.read("CodeSystem", "ucmsc-cp-catalogue").data)["concept"]}
    assert codes["gmfm-88-item-88"] == "GMFM-88 item 88" and codes["elbow-flexors-left"] == "Left elbow flexors"
    assert f"; {first.resources} resources: {first.resources} created, 0 updated, 0 unchanged" in first.summary()

    again = ingest(spec, [EXPORT], store, KEY)
    assert stored_types(store) == in_store
    assert {t: c["updated"] + c["unchanged"] for t, c in again.by_type.items()} == in_store
    assert sum(c["created"] for c in again.by_type.values()) == 0


def _site_a_rows(tmp_path, *rows: dict[str, str]):
    with EXPORT.open(encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames
        baseline = next(reader)
    path = tmp_path / "export.csv"
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.DictWriter(out, header, lineterminator="\n")
        writer.writeheader()
        writer.writerow(baseline)
        for row in rows:
            writer.writerow({**dict.fromkeys(header, ""), "record_id": baseline["record_id"], **row})
    return path


def test_a_row_that_makes_nothing_is_rejected_with_its_cell(tmp_path):
    source = _site_a_rows(tmp_path, {"redcap_event_name": "month_3_arm_1", "visit_date": "2025-10-01"})
    report = translate(load_mapping(SPEC), [source], io.BytesIO(), KEY, quarantine=tmp_path / "q")
    assert (report.rows_accepted, report.rows_rejected) == (1, 1)
    [rejection] = report.rejections
    assert (rejection.row, rejection.column, rejection.value) == (3, "redcap_event_name", "month_3_arm_1")
    assert rejection.reason.startswith("the row makes no resource")
    assert "month_3_arm_1" in (tmp_path / "q" / "export.rejected.csv").read_text(encoding="utf-8")


def test_a_value_that_makes_nothing_is_a_warning_with_its_cell(tmp_path):
    """An injection's route and lot without its date: the vitals are kept, the lot is not lost silently."""
    source = _site_a_rows(tmp_path, {"redcap_event_name": "injection_2_arm_1", "visit_date": "2025-06-26",
                                     "weight_kg": "21.8", "inj_route": "1", "inj_lot": "UCMSC-1-1"})
    report = translate(load_mapping(SPEC), [source], io.BytesIO(), KEY, quarantine=tmp_path / "q")
    assert (report.rows_accepted, report.rows_rejected, report.rows_warned) == (2, 0, 1)
    [warning] = report.warnings
    assert (warning.row, warning.column, warning.value) == (3, "inj_date", "")
    assert warning.rule.startswith("site-a.yaml:") and "inj_route, inj_lot" in warning.reason
    assert "1 with warnings" in report.summary()
    with (tmp_path / "q" / "warnings.csv").open(encoding="utf-8") as handle:
        assert [(r["row"], r["column"]) for r in csv.DictReader(handle)] == [("3", "inj_date")]


def _made(out: io.BytesIO) -> set[str]:
    import json
    return {f"{r['resourceType']}/{r['id']}" for r in map(json.loads, out.getvalue().splitlines())}


def test_a_bad_cell_costs_only_the_resources_it_feeds(tmp_path):
    """A Modified Ashworth 5 loses that Observation; the visit's Barthel and vitals are kept,
    the row is partly accepted, quarantined whole, and the rejection names what was not made."""
    source = _site_a_rows(tmp_path, {"redcap_event_name": "month_3_arm_1", "visit_date": "2025-10-01",
                                     "mas_hams_l": "5", "mas_hams_r": "1+", "barthel": "45", "weight_kg": "18.2"})
    out = io.BytesIO()
    report = translate(load_mapping(SPEC), [source], out, KEY, quarantine=tmp_path / "q")
    assert (report.rows_read, report.rows_accepted, report.rows_partly, report.rows_rejected) == (2, 1, 1, 0)
    [rejection] = report.rejections
    lost = "Observation/site-a-A0001-month-3-modified-ashworth-hamstrings-left"
    assert (rejection.column, rejection.value, rejection.not_made) == ("mas_hams_l", "5", (lost,))
    made = _made(out)
    assert lost not in made
    assert {"Observation/site-a-A0001-month-3-barthel", "Observation/site-a-A0001-month-3-body-weight",
            "Observation/site-a-A0001-month-3-modified-ashworth-hamstrings-right"} <= made
    with (tmp_path / "q" / "rejections.csv").open(encoding="utf-8") as handle:
        [listed] = list(csv.DictReader(handle))
    assert listed["not_made"] == lost
    quarantined = (tmp_path / "q" / "export.rejected.csv").read_text(encoding="utf-8").splitlines()
    assert len(quarantined) == 2 and ",5," in quarantined[1]  # the header and the whole row


def test_a_value_derived_from_a_rejected_cell_is_not_made(tmp_path):
    """Site A derives the GMFM-88 total as the mean of the five dimensions: with dimension B at
    130 %, the total (which would have been 'valid') goes with it, named as its cost."""
    dims = {"gmfm_a": "40", "gmfm_b": "130", "gmfm_c": "20", "gmfm_d": "10", "gmfm_e": "0"}
    source = _site_a_rows(tmp_path, {"redcap_event_name": "month_3_arm_1", "visit_date": "2025-10-01", **dims})
    out = io.BytesIO()
    report = translate(load_mapping(SPEC), [source], out, KEY)
    [bad] = report.rejections
    assert bad.column == "gmfm_b" and set(bad.not_made) == {"Observation/site-a-A0001-month-3-gmfm-88-b",
                                                            "Observation/site-a-A0001-month-3-gmfm-88-total"}
    assert {"Observation/site-a-A0001-month-3-gmfm-88-a", "Observation/site-a-A0001-month-3-gmfm-88-e"} <= _made(out)


def test_what_refers_to_a_resource_not_made_is_not_made_either(tmp_path):
    """A bad route loses the injection alone; a bad sex code loses the Patient, and with it
    everything of the row (all refer to it)."""
    source = _site_a_rows(
        tmp_path,
        {"redcap_event_name": "injection_1_arm_1", "visit_date": "2025-10-01", "inj_date": "2025-10-01",
         "inj_route": "7", "weight_kg": "18.2"},
        {"redcap_event_name": "injection_2_arm_1", "visit_date": "2025-10-08", "inj_date": "2025-10-08",
         "inj_route": "1"})
    out = io.BytesIO()
    spec = load_mapping(SPEC)
    report = translate(spec, [source], out, KEY)
    [route] = report.rejections
    assert (route.column, route.not_made) == ("inj_route", ("Procedure/site-a-A0001-injection-1",))
    made = _made(out)
    assert "ResearchSubject/ucmsc-cp-site-a-A0001" in made  # its start is the date, not the route
    assert "Observation/site-a-A0001-injection-1-body-weight" in made
    assert "Procedure/site-a-A0001-injection-2" in made and report.rows_partly == 1

    with EXPORT.open(encoding="utf-8") as handle:
        baseline = next(csv.DictReader(handle))
    bad_sex = tmp_path / "sex.csv"
    bad_sex.write_text(source.read_text(encoding="utf-8").splitlines()[0] + "\n" + ",".join(
        '"9"' if name == "sex" else f'"{value}"' for name, value in baseline.items()) + "\n", encoding="utf-8")
    out = io.BytesIO()
    report = translate(spec, [bad_sex], out, KEY)
    assert (report.rows_rejected, report.rows_partly, out.getvalue()) == (1, 0, b"")
    [sex] = report.rejections
    assert sex.column == "sex" and sex.not_made[0] == "Patient/site-a-A0001" and len(sex.not_made) > 5
