"""Probes of the mapping engine's derived values, lookups and per-cell rejection: each test is a
defect a review found (its docstring says what it was), kept as the reproducer once fixed."""
from __future__ import annotations


from adapter.mapping.arithmetic import Unit
from adapter.mapping.spec import load_mapping
from test_mapping_derived import run, spec

LOOKUP_FROM_BASELINE = ("{product: [{field: dose_per_kg, unit: 10*6/kg}, "
                        "{field: weight, from_visit: baseline, unit: kg}]}")


def test_round_of_a_large_value_is_a_rejection_not_a_traceback(tmp_path):
    """`round:` on a derived value of more than 28 digits raises decimal.InvalidOperation out of translate."""
    report, made = run(tmp_path, "C1,screening,2025-03-01,,,,1e30,,,,",
                       concept="body-weight", value="{sum: [{field: a1, unit: kg}], round: 2}")
    [bad] = report.rejections
    assert bad.column in ("a1", "sum(a1)") and report.rows_rejected == 1


def test_sum_of_kg_and_a_product_in_kg_loads(tmp_path):
    """Units of sum/mean are compared as text: kg + (g x 0.001 kg/g), the docs' own advice, is refused."""
    load_mapping(spec(tmp_path, concept="body-weight",
                      value="{sum: [{field: a1, unit: kg}, {product: [{field: a2, unit: g}, {const: 0.001, unit: kg/g}]}]}"))


def test_sum_of_kg_and_kg_times_a_plain_constant_loads(tmp_path):
    """kg x 2 (a plain constant) and kg / 4 are both kg, but `(kg).(1)` != `(kg)/(1)` refuses the spec."""
    load_mapping(spec(tmp_path, concept="body-weight",
                      value="{sum: [{product: [{field: a1, unit: kg}, {const: 2}]}, {ratio: [{field: a2, unit: kg}, {const: 4}]}]}"))


def test_a_unit_whose_annotations_are_all_it_has_converts():
    """Unit('{score}/{item}').ucum is '/', no UCUM unit: a ratio of two {score}/{item} values cannot reach %."""
    per_item = Unit.parse("{score}/{item}")
    assert per_item.times(per_item, -1).factor_to("%") == 100
    assert per_item.factor_to("{score}/{item}") == 1


def test_ucum_reads_a_slash_left_to_right():
    """Unit.parse puts every annotation after the first '/' in the denominator: UCUM's kg/{x}.{x} is kg."""
    assert Unit.parse("kg/{x}.{x}").annotations == ()


def test_a_negative_per_kg_dose_gives_no_negative_cell_count(tmp_path):
    """cells_million is never checked: -1.5 x 20 kg stores a Procedure of -30 million cells, row accepted."""
    report, made = run(tmp_path, "C1,screening,2025-03-01,20.0,,,,,,,", "C1,dose1,2025-03-08,,-1.5,IT,,,,,")
    assert "site-d-C1-injection-1" not in made and report.rejections


def test_a_duplicate_row_is_not_looked_up(tmp_path):
    """The lookup pass keeps rows the mapping pass rejects as duplicates: from_visit reads the duplicate's weight."""
    report, made = run(tmp_path, "C1,screening,2025-03-01,20.0,,,,,,,", "C1,screening,2025-03-02,30.0,,,,,,,",
                       "C1,dose1,2025-03-08,,1,IT,,,,,", cells=LOOKUP_FROM_BASELINE)
    assert [r.reason for r in report.rejections] == ["duplicate of line 2"]
    cells = made["site-d-C1-injection-1"]["extension"][1]["valueQuantity"]["value"]
    assert cells == 20  # the first occurrence's weight (the one stored), not 30


def test_a_rejected_weight_does_not_feed_the_dose(tmp_path):
    """A weight rejected by its concept's check (500 kg) is still looked up: 1.5 x 500 = 750 million cells stored."""
    report, made = run(tmp_path, "C1,screening,2025-03-01,500,,,,,,,", "C1,dose1,2025-03-08,,1.5,IT,,,,,")
    assert "site-d-C1-injection-1" not in made


def test_a_quarantined_dose_row_re_ingests_once_fixed(tmp_path):
    """The quarantine held only the bad row: fixed, a dose row re-ingested alone could not find its screening
    weight (now the rows it looks values up in are quarantined with it)."""
    import io

    from adapter.mapping.ingest import translate
    from test_mapping_derived import HEADER, KEY
    source = tmp_path / "export.csv"
    source.write_text("\n".join([HEADER, "C1,screening,2025-03-01,20.0,,,,,,,",
                                 "C1,dose1,2025-03-08,,1.5,XX,,,,,"]) + "\n", encoding="utf-8")
    mapping = load_mapping(spec(tmp_path))
    first = translate(mapping, [source], io.BytesIO(), KEY, quarantine=tmp_path / "q")
    assert [r.column for r in first.rejections] == ["route"]
    quarantined = tmp_path / "q" / "export.rejected.csv"
    quarantined.write_text(quarantined.read_text(encoding="utf-8").replace(",XX,", ",IT,"), encoding="utf-8")
    assert quarantined.read_text(encoding="utf-8").count("\n") == 3  # header, the dose row, its screening row
    again = translate(mapping, [quarantined], io.BytesIO(), KEY)
    assert not again.rejections and again.rows_accepted == 2  # was: weight 'latest ...: none in the record'


def test_rows_whose_references_never_resolve_say_what_they_cost(checked_store):
    """A row rejected at ingest end for references that never resolve has an empty not_made, though nothing of it was stored."""
    from adapter.mapping.ingest import ingest
    from conftest import ROOT
    mapping = load_mapping(ROOT / "mappings" / "sites" / "site-c.yaml")
    report = ingest(mapping, [ROOT / "fixtures" / "sites" / "site-c" / "export.csv"], checked_store, b"k" * 32)
    dangling = [r for r in report.rejections if "does not resolve" in r.reason]
    assert dangling and all(r.not_made for r in dangling)


def test_a_unit_relabelled_at_factor_one_keeps_what_the_site_sent(tmp_path):
    """The PQ-translation is only written when the factor is not 1: 1.5 10*3/uL stored as 1.5 10*9/L loses the site's unit."""
    report, made = run(tmp_path, "C4,screening,2025-03-01,20.0,,,,,,1.5,",
                       concept="cd3-count", value="{field: hb, unit: '10*3/uL'}")
    quantity = made["site-d-C4-baseline-cd3-count"]["valueQuantity"]
    assert quantity["code"] == "10*9/L"
    [sent] = quantity.get("extension", [None])
    assert sent is not None and sent["valueQuantity"]["code"] == "10*3/uL"


AE_SPEC = """
mapping: {name: ae, version: 1.0.0, site: site-a, catalogue: %(catalogue)s, arm: arm-1, pseudonym_key_env: UNUSED}
source:
  format: csv
  encoding: utf-8
  date_formats: ["%%Y-%%m-%%d"]
  record_key: id
  visit: {field: visit, values: [{match: screening, visit: baseline}, {match: 'dose(\\d+)', visit: "injection-{1}"}]}
  visit_date: date
rules:
  - patient: {birth_date: dob, gender: {field: sex, map: {F: female, M: male}}}
    when: {visit: baseline}
  - injection: {date: date, route: {field: route, map: {IT: intrathecal}}, cells_million: cells}
    when: {present: [route]}
  - adverse_event: {term: {field: terms, map: {fever: fever, rash: rash}}, grade: grades, onset: date}
    for_each: {split: [terms, grades], separator: ";"}
"""


def adverse_events(tmp_path, *rows: str):
    import io
    import json

    from adapter.mapping.ingest import translate
    from test_mapping_derived import CATALOGUE, KEY
    path = tmp_path / "ae.yaml"
    path.write_text(AE_SPEC % {"catalogue": CATALOGUE}, encoding="utf-8")
    source = tmp_path / "ae.csv"
    source.write_text("\n".join(["id,visit,date,dob,sex,route,cells,terms,grades",
                                 "P1,screening,2025-03-01,2020-01-01,F,,,,", *rows]) + "\n", encoding="utf-8")
    out = io.BytesIO()
    report = translate(load_mapping(path), [source], out, KEY)
    return report, [json.loads(line) for line in out.getvalue().splitlines()]


def test_two_adverse_events_of_one_row_do_not_share_an_id(tmp_path):
    """for_each split: a fever of grade 1 and one of grade 3 on one day got the same id, one overwriting the
    other, the row accepted (now the second gets -2)."""
    report, made = adverse_events(tmp_path, "P1,dose1,2025-03-22,,,IT,20,fever;fever,1;3")
    events = [r["id"] for r in made if r["resourceType"] == "AdverseEvent"]
    assert events == ["site-a-P1-injection-1-ae-fever-2025-03-22", "site-a-P1-injection-1-ae-fever-2025-03-22-2"]
    assert not report.rejections


def test_not_made_names_the_adverse_events_a_bad_split_cost(tmp_path):
    """not_made is 'AdverseEvent' (no id) when a for_each item fails, not `Type/id` as documented."""
    report, made = adverse_events(tmp_path, "P1,dose1,2025-03-22,,,IT,20,fever;cough,1;2")
    [bad] = report.rejections
    assert bad.column == "terms" and bad.not_made == ("AdverseEvent/site-a-P1-injection-1-ae-*",)


JSON_SPEC = """
mapping: {name: j, version: 1.0.0, site: site-b, catalogue: %(catalogue)s, arm: arm-1, pseudonym_key_env: UNUSED}
source:
  format: ndjson
  encoding: utf-8
  date_formats: ["%%Y-%%m-%%d"]
  record_key: $.patient.id
  items: visits
  visit: {field: kind, values: [{match: baseline, visit: baseline}, {match: infusion, visit: "injection-{n}"}]}
  visit_date: date
rules:
  - patient: {birth_date: $.patient.birth, gender: {field: $.patient.gender, map: {F: female, M: male}}}
    per: document
  - injection:
      date: date
      route: {field: route, map: {IT: intrathecal}}
      cells_million: {product: [{field: dose, unit: 10*6/kg}, {field: weight, latest: true, unit: kg}]}
    when: {present: [route]}
"""


def test_latest_in_a_json_document_includes_the_current_visit_whatever_the_order(tmp_path):
    """Visits of one JSON document share its line: on a same-day tie `latest` takes the first listed, not this visit's own weight."""
    import io
    import json

    from adapter.mapping.ingest import translate
    from test_mapping_derived import CATALOGUE, KEY
    path = tmp_path / "j.yaml"
    path.write_text(JSON_SPEC % {"catalogue": CATALOGUE}, encoding="utf-8")
    source = tmp_path / "j.ndjson"
    source.write_text(json.dumps({"patient": {"id": "J7", "birth": "2020-01-01", "gender": "F"}, "visits": [
        {"kind": "baseline", "date": "2025-03-08", "weight": 20},
        {"kind": "infusion", "n": 1, "date": "2025-03-08", "route": "IT", "dose": 1, "weight": 25}]}) + "\n",
        encoding="utf-8")
    out = io.BytesIO()
    translate(load_mapping(path), [source], out, KEY)
    [procedure] = [r for r in map(json.loads, out.getvalue().splitlines()) if r["resourceType"] == "Procedure"]
    assert procedure["extension"][1]["valueQuantity"]["value"] == 25  # this visit's own weight (got 20)


def _blood_pressure(tmp_path, fields: str, row: str):
    import test_mapping_derived as derived
    template = derived.SPEC.replace("    value: %(value)s\n", "    %(value)s\n")
    path = tmp_path / "bp.yaml"
    path.write_text(template % {"catalogue": derived.CATALOGUE, "cells": derived.CELLS, "concept": "blood-pressure",
                                "value": fields}, encoding="utf-8")
    import io
    import json

    from adapter.mapping.ingest import translate
    source = tmp_path / "export.csv"
    source.write_text(derived.HEADER + "\n" + row + "\n", encoding="utf-8")
    out = io.BytesIO()
    report = translate(load_mapping(path), [source], out, derived.KEY)
    made = {r["id"]: r for r in map(json.loads, out.getvalue().splitlines())}
    return report, [c["valueQuantity"]["value"] for c in made["site-d-C1-baseline-blood-pressure"]["component"]]


def test_a_blood_pressure_component_in_its_own_unit_is_converted(tmp_path):
    """Components ignored the factor worked out at load: 13.3 kPa was checked as 13.3 mm[Hg] (fixed: resources.py components)."""
    report, values = _blood_pressure(tmp_path, "systolic: {field: a1, unit: kPa}\n    diastolic: {field: a2, unit: kPa}",
                                     "C1,screening,2025-03-01,,,,13.3,8.0,,,")
    assert [round(v) for v in values] == [100, 60]


def test_a_blood_pressure_component_is_rounded_as_asked(tmp_path):
    """Components dropped `round:` silently (spec.py strips it, the component never applied it): 100.5 stayed (fixed)."""
    report, values = _blood_pressure(tmp_path, "systolic: {mean: [a1, a2], round: 0}\n    diastolic: a3",
                                     "C1,screening,2025-03-01,,,,100,101,60,,")
    assert values == [101, 60]


def test_from_visit_does_not_read_a_visit_with_a_bad_date(tmp_path):
    """Docs: 'a visit with a bad date never counts'; from_visit still reads the rejected screening row's weight (20 x 1)."""
    report, made = run(tmp_path, "C1,screening,2025-13-01,20.0,,,,,,,", "C1,dose1,2025-03-08,,1,IT,,,,,",
                       cells=LOOKUP_FROM_BASELINE)
    assert report.rows_rejected == 2  # the screening row, for its date; the dose, for want of its weight
    assert "site-d-C1-injection-1" not in made
    assert "at baseline: none in the record" in report.rejections[1].reason
