"""The fifth site, an Excel workbook (fixtures/sites/site-e/export.xlsx), onboarded by its mapping
alone: every rejection at its workbook cell, the combined IV + intrathecal sessions as two
Procedures that $adherence counts, the site and its extra concepts as data, bad workbooks one
error and nothing stored; and its ADL change by arm, recomputed here from the workbook with
openpyxl (not through the adapter), equal to $evaluate-measure's."""
from __future__ import annotations

import csv
import io
import json
import statistics
import zipfile
from collections import Counter, defaultdict
from datetime import date, datetime

import openpyxl
import pytest

from adapter.fhir.validation import validate
from adapter.mapping.ingest import ingest, translate
from adapter.mapping.sources import SourceFileError
from adapter.mapping.spec import load_mapping
from adapter.protocol.adherence import adherence
from conftest import ROOT, table_counts
from test_mapping_sites import KEY, _protocol, stored

SITE = ROOT / "fixtures" / "sites" / "site-e"
WORKBOOK = SITE / "export.xlsx"
SPEC = ROOT / "mappings" / "sites" / "site-e.yaml"
ARM_2 = {"E0002", "E0005", "E0007", "E0010"}


def expected() -> list[dict[str, str]]:
    with (SITE / "expected-rejections.csv").open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_site_e_loads_with_exactly_the_expected_rejections_each_at_its_cell(checked_store):
    store = checked_store  # every reference resolves: the site's Organization is written by the ingest
    _protocol(store)
    report = ingest(load_mapping(SPEC), [WORKBOOK], store, KEY)
    wanted = expected()
    got = [(r.row, r.column, r.value, r.cell) for r in report.rejections]
    assert got == [(int(e["row"]), e["column"], e["value"], e["cell"]) for e in wanted]
    for rejection, e in zip(report.rejections, wanted, strict=True):
        assert rejection.reason.startswith(e["reason"]), (rejection.reason, e["reason"])
        assert str(rejection).startswith(f"export.xlsx {e['cell']} ")
    outcomes = Counter(e["outcome"] for e in wanted)
    assert (report.rows_partly, report.rows_rejected) == (outcomes["partly"], outcomes["rejected"])
    # a record per child and visit of the wide sheet (5 x 10, one visit rejected), a row per
    # injection (40, two bad, one blank key, one duplicate) and per adverse event (2)
    assert report.rows_read == 50 + 42 + 2 == report.rows_accepted + report.rows_partly + report.rows_rejected
    everything = stored(store)
    for resource in everything:
        assert validate(resource) == [], resource["id"]
    types = Counter(r["resourceType"] for r in everything)
    assert types["Patient"] == 10 and types["Condition"] == 9 and types["ResearchSubject"] == 9  # VI, arm 3
    # arm 1: 4 injections a child, arm 2: 4 sessions of 2 routes; less what the two bad injection rows made
    assert types["Procedure"] == 6 * 4 + 4 * 8 - 1 - 2  # E0001's 2nd injection, E0007's 3rd session (two routes)
    organisation = next(r for r in everything if r["resourceType"] == "Organization" and r["id"] == "site-e")
    assert {"system": "http://ucmsc-cp.example.org/fhir/sid/hospital-licence", "value": "SYN-E-2025-05"} in \
        organisation["identifier"]
    assert any(r["resourceType"] == "Location" and r["id"] == "site-e" for r in everything)
    local = next(r for r in everything if r["resourceType"] == "CodeSystem" and r["id"] == "ucmsc-cp-site-e-local")
    assert {c["code"] for c in local["concept"]} == {"rehabilitation-months", "knee-extensors-right"}
    knee = next(r for r in everything if r["id"] == "site-e-E0001-baseline-mrc-strength-knee-extensors-right")
    assert knee["bodySite"]["coding"][0]["system"] == local["url"]
    provenance = next(r for r in everything if r["resourceType"] == "Provenance")
    assert provenance["agent"][1]["who"]["reference"] == "Organization/site-e"


def _cells() -> dict[str, dict[str, object]]:
    """The 随访 sheet by hand: per child, its header -> cell value (openpyxl, not the adapter)."""
    sheet = openpyxl.load_workbook(WORKBOOK, read_only=True)["随访"]
    rows = list(sheet.iter_rows(values_only=True))
    header = list(rows[1])
    return {row[0]: dict(zip(header, row, strict=True)) for row in rows[3:] if row[0]}


def test_workbook_values_arrive_as_the_site_typed_them():
    """Date cells, text dates of two styles and bare serials; numbers and decimal-comma text."""
    out = io.BytesIO()
    translate(load_mapping(SPEC), [WORKBOOK], out, KEY, "2026-01-01T00:00:00Z")
    made = {r["id"]: r for r in map(json.loads, out.getvalue().splitlines()) if r["resourceType"] != "Encounter"}
    child = _cells()["E0001"]
    serial = child["第3月_日期"]
    assert isinstance(serial, int)  # a General cell: Excel's serial day
    assert made["site-e-E0001-month-3-barthel"]["effectiveDateTime"] == date.fromordinal(
        date(1899, 12, 30).toordinal() + serial).isoformat()
    assert made["site-e-E0001-month-1-barthel"]["effectiveDateTime"] == \
        datetime.strptime(child["第1月_日期"], "%Y.%m.%d").date().isoformat()
    assert made["site-e-E0001-month-6-barthel"]["effectiveDateTime"] == \
        datetime.strptime(child["第6月_日期"], "%Y年%m月%d日").date().isoformat()
    assert child["基线_体重"] == "29,3" and made["site-e-E0001-baseline-body-weight"]["valueQuantity"]["value"] == \
        pytest.approx(29.3)
    assert made["site-e-E0001-month-1-body-weight"]["valueQuantity"]["value"] == pytest.approx(child["第1月_体重"])
    dose = next(e for e in made["site-e-E0002-injection-1"]["extension"] if "valueQuantity" in e)["valueQuantity"]
    assert dose["code"] == "10*6" and dose["value"] == 25
    assert made["site-e-E0001-baseline-rehabilitation-months"]["valueQuantity"]["value"] == child["康复月数"]


def test_a_combined_session_is_two_procedures_and_adherence_counts_both(store):
    _protocol(store)
    ingest(load_mapping(SPEC), [WORKBOOK], store, KEY)
    findings = adherence(store, "ucmsc-cp-site-e-E0002", date(2027, 12, 31))
    injections = [f for f in findings if "injection" in f.activity]
    assert len(injections) == 8 and {f.status for f in injections} == {"done-in-window"}
    assert {f.resource for f in injections if f.activity.endswith("intrathecal-injection")} == {
        f"Procedure/site-e-E0002-injection-{n}-intrathecal" for n in range(1, 5)}


def test_adl_change_by_arm_recomputed_from_the_workbook_equals_evaluate_measure(tmp_path):
    from adapter.gateway.app import create_app
    from adapter.store import open_store
    url = f"sqlite:///{tmp_path / 'e.db'}"
    store = open_store(url)
    _protocol(store)
    ingest(load_mapping(SPEC), [WORKBOOK], store, KEY)
    store.close()
    bad = {e["cell"] for e in expected()}
    sheet = openpyxl.load_workbook(WORKBOOK, read_only=True)["随访"]
    header = [c.value for c in next(sheet.iter_rows(min_row=2, max_row=2))]
    by_hand: dict[tuple[str, str], list[float]] = defaultdict(list)
    for cells in sheet.iter_rows(min_row=4):
        values = {h: c.value for h, c in zip(header, cells, strict=True)}
        places = {h: f"随访!{c.coordinate}" for h, c in zip(header, cells, strict=True)}
        if values["分组"] not in (1, 2) or places["分组"] in bad:
            continue  # no arm: not on study
        arm = f"arm-{values['分组']}"

        def adl(visit: str, values=values, places=places) -> int | None:
            if places[f"{visit}_ADL"] in bad or places[f"{visit}_日期"] in bad:
                return None
            return values[f"{visit}_ADL"]

        base = adl("基线")
        for label, visit in (("第1月", "month-1"), ("第3月", "month-3"), ("第6月", "month-6"), ("第12月", "month-12")):
            if base is not None and (value := adl(label)) is not None:
                by_hand[(visit, arm)].append(value - base)
    app = create_app({"DATABASE_URL": url, "EXPORT_DIR": str(tmp_path / "exports")})
    try:
        report = app.test_client().get("/fhir/Measure/ucmsc-cp-adl/$evaluate-measure",
                                       query_string={"periodStart": "2000", "periodEnd": "2030"}).get_json()
    finally:
        app.extensions["fhir_store"].close()
    found = {}
    for group in report["group"]:
        stratifier = next(s for s in group["stratifier"] if s["code"][0]["coding"][0]["code"] == "arm")
        for stratum in stratifier["stratum"]:
            found[(group["code"]["coding"][0]["code"], stratum["value"]["text"])] = stratum["measureScore"]["value"]
    assert set(found) == set(by_hand) and len(found) == 8
    for key, changes in by_hand.items():
        assert found[key] == pytest.approx(statistics.fmean(changes)), key
    assert len(by_hand[("month-6", "arm-1")]) == 4  # E0001, E0004, E0006, E0008: E0003's 103 is no Barthel score, E0009 no arm
    assert len(by_hand[("month-1", "arm-2")]) == 4


def _zip(entries: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return out.getvalue()


def _renamed_sheet(name: str) -> bytes:
    book = openpyxl.load_workbook(WORKBOOK)
    book["注射"].title = name
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _no_header(column: str) -> bytes:
    book = openpyxl.load_workbook(WORKBOOK)
    sheet = book["注射"]
    for cell in sheet[1]:
        if cell.value == column:
            cell.value = "备注"
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


BAD = {
    "a CSV renamed": (lambda: "研究编号,次数\nE0001,1\n".encode(), "not an Excel workbook (.xlsx): it holds text"),
    "an .xls renamed": (lambda: b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(4000), "Excel 97-2003 (.xls) workbook"),
    "password-protected": (lambda: b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600) + "EncryptionInfo".encode("utf-16-le")
                           + bytes(600), "password-protected"),
    "corrupted": (lambda: WORKBOOK.read_bytes()[:4000], "corrupted workbook"),
    "a zip bomb": (lambda: _zip({"[Content_Types].xml": b"<x/>", "xl/worksheets/sheet1.xml": bytes(8 << 20)}),
                   "a zip bomb"),
    "a sheet missing": (lambda: _renamed_sheet("Injections"), "no sheet '注射' (its sheets: 随访, Injections, 不良事件)"),
    "a header missing": (lambda: _no_header("途径"), "sheet '注射' (header row 1) has no column '途径'"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_workbook_is_one_clear_error_and_nothing_is_stored(store, tmp_path, case):
    make, message = BAD[case]
    path = tmp_path / "export.xlsx"
    path.write_bytes(make())
    before = table_counts(store)
    with pytest.raises(SourceFileError) as caught:
        ingest(load_mapping(SPEC), [path], store, KEY)
    assert message in str(caught.value) and str(caught.value).startswith("export.xlsx: ")
    assert table_counts(store) == before


def test_a_workbook_past_the_cell_bound_is_refused(tmp_path, monkeypatch):
    from adapter.mapping import workbooks
    monkeypatch.setattr(workbooks, "MAX_CELLS", 100)
    with pytest.raises(SourceFileError, match="sheet '随访' spans 13 x 28 cells, over the 100"):
        translate(load_mapping(SPEC), [WORKBOOK], io.BytesIO(), KEY)
