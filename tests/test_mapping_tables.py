"""Tables of one site as CSV files (a file pattern each, joined by child), numbers as hospitals
type them (either decimal mark where the number says which; a unit in the cell), zero-padded
item columns, and the protocol's alternative codes in $adherence (absolute lymphocyte counts)."""
from __future__ import annotations

import io
import json
from datetime import date

import pytest

from adapter.mapping.ingest import ingest, translate
from adapter.mapping.sources import SourceFileError
from adapter.mapping.spec import load_mapping
from adapter.mapping.values import parse_decimal
from adapter.protocol.adherence import adherence
from adapter.yamlspec import SpecError
from conftest import ROOT
from test_mapping_derived import CATALOGUE, KEY
from test_mapping_sites import MAPPINGS, _protocol, exports

SPEC = """
mapping: {name: tables, version: 1.0.0, site: site-d, catalogue: %(catalogue)s, pseudonym_key_env: UNUSED}
source:
  format: csv
  encoding: utf-8
  decimal_mark: either
  date_formats: ["%%Y-%%m-%%d"]
  record_key: id
  tables:
    - name: visits
      file: "visits*.csv"
      visit: {field: visit, values: [{match: screening, visit: baseline}, {match: 'm(\\d+)', visit: "month-{1}"}]}
      visit_date: date
    - name: doses
      file: "doses*.csv"
      visit: {field: n, values: [{match: '(\\d+)', visit: "injection-{1}"}]}
      visit_date: date
rules:
  - {observation: body-weight, value: weight}
  - {instrument: gmfm-88, items: "gmfm_{n:02}"}
  - research_subject: {start: date, arm: {field: arm, table: visits, from_visit: baseline, map: {"1": arm-1}}}
    when: {table: doses, visit: injection-1}
  - injection:
      date: date
      route: {const: intrathecal}
      cells_million: {field: cells, pattern: '(?P<value>[\\d.,]+)\\s*[×xX]\\s*10\\^(?P<unit>\\d)',
                      units: {"6": 10*6, "7": 10*7}, unit: 10*6}
    when: {table: doses}
"""


def tables(tmp_path, visits: list[str], doses: list[str], spec: str = SPEC):
    path = tmp_path / "tables.yaml"
    path.write_text(spec % {"catalogue": CATALOGUE}, encoding="utf-8")
    items = ",".join(f"gmfm_{n:02}" for n in range(1, 89))
    (tmp_path / "visits.csv").write_text(f"id,visit,date,weight,arm,{items}\n" + "".join(v + "\n" for v in visits),
                                         encoding="utf-8")
    (tmp_path / "doses.csv").write_text("id,n,date,cells\n" + "".join(d + "\n" for d in doses), encoding="utf-8")
    out = io.BytesIO()
    report = translate(load_mapping(path), [tmp_path / "visits.csv", tmp_path / "doses.csv"], out, KEY)
    made = {(r["resourceType"], r["id"]): r for r in map(json.loads, out.getvalue().splitlines())}
    return report, made


def test_tables_of_csv_files_join_by_child_and_read_numbers_as_typed(tmp_path):
    items = ",".join(["2"] * 88)
    report, made = tables(tmp_path, [f"C1,screening,2025-03-01,\"23,5\",1,{items}", f"C1,m1,2025-04-20,24.1,,{items}",
                                     f"C2,screening,2025-03-01,\"1,250\",1,{items}"],
                          ["C1,1,2025-03-08,35×10^6", "C1,2,2025-03-15,3.5 x10^7", "C1,3,2025-03-22,35 × 10^5"])
    weights = {rid: r["valueQuantity"]["value"] for (t, rid), r in made.items() if rid.endswith("body-weight")}
    assert weights == {"site-d-C1-baseline-body-weight": 23.5, "site-d-C1-month-1-body-weight": 24.1}
    cells = [next(e for e in made[("Procedure", f"site-d-C1-injection-{n}")]["extension"] if "valueQuantity" in e)
             ["valueQuantity"]["value"] for n in (1, 2)]
    assert cells == [35, 35]  # 3.5 x 10^7 is 35 x 10^6
    assert made[("ResearchSubject", "ucmsc-cp-site-d-C1")]["assignedArm"] == "arm-1"  # joined from visits.csv
    assert made[("Observation", "site-d-C1-baseline-gmfm-88-a")]["valueQuantity"]["value"] == 66.7  # gmfm_01..
    bad = {(r.file.rsplit("/", 1)[-1], r.row, r.column): r.reason for r in report.rejections}
    assert bad[("visits.csv", 4, "weight")].startswith("ambiguous: ',' before three digits")
    assert bad[("doses.csv", 4, "cells")] == "unknown unit '5' (expected 6 or 7)"


@pytest.mark.parametrize("text,reason", [("1.234,5", "both decimal marks"), ("1,234,5", "',' twice"),
                                         ("1.250", "ambiguous"), ("12,5x", "not a number")])
def test_either_decimal_mark_refuses_what_the_number_does_not_say(text, reason):
    with pytest.raises(ValueError, match=reason):
        parse_decimal(text, "either")
    assert parse_decimal("0,125", "either") == parse_decimal("0.125") and parse_decimal("1250", "either") == 1250


def test_a_file_no_table_takes_is_one_error(tmp_path):
    path = tmp_path / "tables.yaml"
    path.write_text(SPEC % {"catalogue": CATALOGUE}, encoding="utf-8")
    (tmp_path / "labs.csv").write_text("id\n", encoding="utf-8")
    with pytest.raises(SourceFileError, match="labs.csv: no table of the mapping takes this file"):
        translate(load_mapping(path), [tmp_path / "labs.csv"], io.BytesIO(), KEY)


def test_a_spec_naming_an_unknown_table_or_a_bad_pattern_is_refused_at_its_line(tmp_path):
    text = (SPEC % {"catalogue": CATALOGUE}).replace("when: {table: doses}", "when: {table: dose}").replace(
        "(?P<value>[\\d.,]+)", "(?P<number>[\\d.,]+)")
    path = tmp_path / "tables.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SpecError) as caught:
        load_mapping(path)
    messages = [p.split(": ", 2)[2] for p in caught.value.problems]
    assert "unknown table 'dose' (the source's: visits, doses)" in messages
    assert "no group (?P<value>...) for the number" in messages


def test_an_absolute_count_panel_is_counted_by_adherence(store):
    """Site B sends lymphocyte subsets as absolute counts: the protocol lists them as the
    percentages' alternatives, so its baseline immune panel is done, not missing."""
    _protocol(store)
    ingest(load_mapping(MAPPINGS / "site-b.yaml"), exports("site-b"), store, KEY)
    findings = adherence(store, "ucmsc-cp-site-b-B0001", date(2027, 12, 31))
    panel = [f for f in findings if f.visit == "baseline" and f.activity.endswith("immune-panel")]
    cd3 = next(f for f in panel if f.code == ("http://loinc.org", "8124-0"))
    assert cd3.status == "done-in-window" and cd3.resource.endswith("-baseline-cd3-count")
    assert {f.status for f in panel if f.code[1] in ("8124-0", "8123-2", "8101-8", "8117-4", "18267-5")} == {
        "done-in-window"}


def test_cohorts_come_from_the_sites_the_store_knows(store):
    from adapter.exchange.cohorts import build_site_cohorts
    _protocol(store)
    ingest(load_mapping(MAPPINGS / "site-e.yaml"), [ROOT / "fixtures/sites/site-e/export.xlsx"], store, KEY)
    groups = {g["id"]: g for g in build_site_cohorts(store) if g["resourceType"] == "Group"}
    assert groups["site-e-cohort"]["quantity"] == 10  # a site no shipped protocol lists: its own file
    assert groups["site-e-cohort"]["name"].startswith("Site E children's rehabilitation hospital")
    assert "site-a-cohort" not in groups  # a site of the protocol with no children here has none


def test_a_site_file_and_a_catalogue_extension_are_checked_at_their_lines(tmp_path):
    import shutil
    for name in ("site-e.yaml", "site-e.site.yaml", "site-e.catalogue.yaml"):
        shutil.copy(MAPPINGS / name, tmp_path / name)
    spec = tmp_path / "site-e.yaml"
    spec.write_text(spec.read_text(encoding="utf-8").replace("catalogue: catalogue.yaml", f"catalogue: {CATALOGUE}")
                    .replace("../../fixtures", str(ROOT / "fixtures")), encoding="utf-8")
    assert load_mapping(spec).site_entry["code"] == "site-e"
    extension = tmp_path / "site-e.catalogue.yaml"
    original = extension.read_text(encoding="utf-8")

    def problems(text: str) -> str:
        extension.write_text(text, encoding="utf-8")
        with pytest.raises(SpecError) as caught:
            load_mapping(spec)
        return "\n".join(caught.value.problems)

    found = problems(original.replace("knee-extensors-right:", "hamstrings-left:"))
    assert "mapping.catalogue_extension: " in found and "'hamstrings-left' is in the catalogue already" in found
    found = problems(original.replace("display: Months of rehabilitation before enrolment}", "}"))
    assert "local code 'rehabilitation-months' is defined neither here" in found
    found = problems(original.replace("unit: mo", "unit: months"))
    assert "'months' is not a UCUM unit" in found
    extension.write_text(original, encoding="utf-8")
    site = tmp_path / "site-e.site.yaml"
    site.write_text(site.read_text(encoding="utf-8").replace("code: site-e", "code: site-a"), encoding="utf-8")
    with pytest.raises(SpecError) as caught:
        load_mapping(spec)
    assert "'site-a', but the mapping's site is 'site-e'" in caught.value.problems[0]
    assert "'site-a' is a site of the protocol already" in caught.value.problems[1]
