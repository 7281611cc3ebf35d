"""Derived values: arithmetic with units checked when the spec loads, values looked up in another
row of the same record, and converted values that keep what the site sent."""
from __future__ import annotations

import io
import json
from fractions import Fraction

import pytest

from adapter.mapping.arithmetic import Unit
from adapter.mapping.ingest import translate
from adapter.mapping.spec import load_mapping
from adapter.yamlspec import SpecError
from conftest import ROOT

CATALOGUE = ROOT / "mappings" / "sites" / "catalogue.yaml"
KEY = b"test-pseudonym-key-0123456789"
HEADER = "id,visit,date,weight,dose_per_kg,route,a1,a2,a3,hb,hb_unit"

SPEC = """
mapping: {name: derived, version: 1.0.0, site: site-d, catalogue: %(catalogue)s, arm: arm-1,
          pseudonym_key_env: UNUSED}
source:
  format: csv
  encoding: utf-8
  date_formats: ["%%Y-%%m-%%d"]
  record_key: id
  visit:
    field: visit
    values:
      - {match: screening, visit: baseline}
      - {match: 'dose(\\d+)', visit: "injection-{1}"}
      - {match: 'm(\\d+)', visit: "month-{1}"}
  visit_date: date
rules:
  - injection:
      date: date
      route: {field: route, map: {IT: intrathecal, IV: intravenous}}
      cells_million: %(cells)s
    when: {present: [route]}
  - observation: body-weight
    value: weight
  - observation: %(concept)s
    value: %(value)s
"""
CELLS = "{product: [{field: dose_per_kg, unit: 10*6/kg}, {field: weight, latest: true, unit: kg}]}"
ITEMS = "[{field: a1, unit: '{score}'}, {field: a2, unit: '{score}'}, {field: a3, unit: '{score}'}]"
PERCENT = "{ratio: [{sum: %s}, {const: 9, unit: '{score}'}], round: 1}" % ITEMS


def spec(tmp_path, cells: str = CELLS, concept: str = "gmfm-88-a", value: str = PERCENT):
    path = tmp_path / "derived.yaml"
    path.write_text(SPEC % {"catalogue": CATALOGUE, "cells": cells, "concept": concept, "value": value},
                    encoding="utf-8")
    return path


def run(tmp_path, *rows: str, **kw: str):
    source = tmp_path / "export.csv"
    source.write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    out = io.BytesIO()
    report = translate(load_mapping(spec(tmp_path, **kw)), [source], out, KEY)
    # by id; the visits' Encounters (their ids are the injections') are tested with the sites
    made = {r["id"]: r for r in map(json.loads, out.getvalue().splitlines()) if r["resourceType"] != "Encounter"}
    return report, made


def problems(path) -> list[str]:
    with pytest.raises(SpecError) as caught:
        load_mapping(path)
    return caught.value.problems


def test_units_are_worked_out_when_the_spec_loads(tmp_path):
    load_mapping(spec(tmp_path))  # score / score = a plain number, x 100 into %; 10*6/kg x kg = 10*6
    [mean] = problems(spec(tmp_path, value="{mean: %s}" % ITEMS))
    assert ": rules[2].value: " in mean
    assert "not in %" in mean and "{score}" in mean  # a mean of 0-3 scores is no percentage
    [weights] = problems(spec(tmp_path, concept="body-weight",
                              value="{sum: [{field: weight, unit: kg}, {field: a1, unit: g}]}"))
    assert "different units (kg and g)" in weights
    [cells] = problems(spec(tmp_path, cells="{product: [{field: dose_per_kg, unit: 10*6/kg}, weight]}"))
    assert "is in 10*6" in cells  # a per-kg dose times a plain number is no number of cells
    [ratio] = problems(spec(tmp_path, value="{ratio: [a1, a2, a3]}"))
    assert "rules[2].value" in ratio  # a ratio of three


def test_annotations_count_as_powers():
    score = Unit.parse("{score}")
    assert score.times(score, -1).factor_to("%") == 100
    assert Unit.parse("10*6/kg").times(Unit.parse("kg")).factor_to("10*6") == 1
    assert Unit.parse("{score}/{item}").annotations == (("{item}", -1), ("{score}", 1))


def test_derived_values_and_lookups_across_rows(tmp_path):
    report, made = run(
        tmp_path,
        "C1,screening,2025-03-01,20.0,,,3,2,1,,",
        "C1,dose1,2025-03-08,,1.5,IT,,,,,",  # weighed at screening: 1.5 x 20.0
        "C1,dose2,2025-03-15,22.5,2,IT,,,,,",  # weighed the same day: this row's weight
        "C1,m1,2025-04-15,,,,3,3,NT,,")  # not a number: that dimension only
    dose1 = made["site-d-C1-injection-1"]["extension"][1]["valueQuantity"]
    dose2 = made["site-d-C1-injection-2"]["extension"][1]["valueQuantity"]
    assert (dose1["value"], dose2["value"], dose1["code"]) == (30, 45, "10*6")
    assert made["site-d-C1-baseline-gmfm-88-a"]["valueQuantity"]["value"] == 66.7
    assert "site-d-C1-month-1-gmfm-88-a" not in made
    [bad] = report.rejections
    assert (bad.row, bad.column, bad.value, bad.not_made) == (5, "a3", "NT", ("Observation/site-d-C1-month-1-gmfm-88-a",))
    assert report.rows_partly == 0 and report.rows_rejected == 1  # the m1 row made nothing else


def test_a_lookup_that_finds_nothing_names_what_it_looked_for(tmp_path):
    report, made = run(tmp_path, "C2,dose1,2025-03-08,,1.5,IT,,,,,", "C2,screening,2025-03-20,20.0,,,,,,,")
    [missing] = report.rejections
    assert (missing.row, missing.column) == (2, "weight")
    assert "but empty (latest at or before 2025-03-08: none in the record)" in missing.reason
    assert missing.not_made == ("Procedure/site-d-C2-injection-1",)
    assert report.rows_rejected == 1  # the screening row, after the dose, does not count for it


def test_from_visit_reads_that_visit_and_zero_is_refused_as_a_divisor(tmp_path):
    cells = "{product: [{field: dose_per_kg, unit: 10*6/kg}, {field: weight, from_visit: baseline, unit: kg}]}"
    report, made = run(tmp_path, "C3,screening,2025-03-01,20.0,,,0,0,0,,",
                       "C3,dose1,2025-03-08,30.0,2,IV,,,,,", cells=cells,
                       value="{ratio: [{sum: %s}, {sum: %s}]}" % (ITEMS, ITEMS))
    assert made["site-d-C3-injection-1"]["extension"][1]["valueQuantity"]["value"] == 40  # 2 x 20.0, not 30.0
    [zero] = report.rejections
    assert "a ratio over zero" in zero.reason and zero.row == 2


def test_a_converted_value_keeps_what_the_site_sent(tmp_path):
    report, made = run(tmp_path, "C4,screening,2025-03-01,20.0,,,,,,1250,mg/dL",
                       concept="igg", value="{field: hb, unit: mg/dL}")
    quantity = made["site-d-C4-baseline-igg"]["valueQuantity"]
    assert (quantity["value"], quantity["code"]) == (12.5, "g/L")
    [sent] = quantity["extension"]
    assert sent["url"] == "http://hl7.org/fhir/StructureDefinition/iso21090-PQ-translation"
    assert (sent["valueQuantity"]["value"], sent["valueQuantity"]["code"]) == (1250, "mg/dL")


GMFM_SPEC = """
mapping: {name: items, version: 1.0.0, site: site-d, catalogue: %(catalogue)s, arm: arm-1,
          pseudonym_key_env: UNUSED}
source:
  format: csv
  encoding: utf-8
  date_formats: ["%%Y-%%m-%%d"]
  record_key: id
  visit: {field: visit, values: [{match: screening, visit: baseline}]}
  visit_date: date
rules:
  - {instrument: gmfm-88, items: "item_{n}", not_tested: [NT, "9"]}
"""
SPANS = {"a": (1, 17), "b": (18, 37), "c": (38, 51), "d": (52, 64), "e": (65, 88)}


def gmfm(tmp_path, items: dict[int, str], catalogue=CATALOGUE):
    path = tmp_path / "items.yaml"
    path.write_text(GMFM_SPEC % {"catalogue": catalogue}, encoding="utf-8")
    source = tmp_path / "items.csv"
    source.write_text("id,visit,date," + ",".join(f"item_{n}" for n in range(1, 89)) + "\n"
                      + "C9,screening,2025-03-01," + ",".join(items.get(n, str(n % 4)) for n in range(1, 89)) + "\n",
                      encoding="utf-8")
    out = io.BytesIO()
    report = translate(load_mapping(path), [source], out, KEY)
    return report, {r["id"]: r for r in map(json.loads, out.getvalue().splitlines())}


def test_gmfm_88_items_give_the_dimensions_and_the_total_by_the_reference(tmp_path):
    report, made = gmfm(tmp_path, {})
    assert report.rows_accepted == 1 and not report.rejections
    percent = {}
    for letter, (first, last) in SPANS.items():  # REFERENCE.md section 4, computed here by hand
        raw = sum(n % 4 for n in range(first, last + 1))
        percent[letter] = round(100 * raw / (3 * (last - first + 1)), 1)
        dimension = made[f"site-d-C9-baseline-gmfm-88-{letter}"]
        assert dimension["valueQuantity"]["value"] == percent[letter]
        panel = made[f"site-d-C9-baseline-gmfm-88-{letter}-items"]
        assert [c["valueInteger"] for c in panel["component"]] == [n % 4 for n in range(first, last + 1)]
        assert panel["component"][0]["code"]["coding"][0]["code"] == f"gmfm-88-item-{first}"
        assert dimension["derivedFrom"] == [{"reference": f"Observation/{panel['id']}"}]
    total = made["site-d-C9-baseline-gmfm-88-total"]["valueQuantity"]["value"]
    exact = sum(Fraction(sum(n % 4 for n in range(f, t + 1)) * 100, 3 * (t - f + 1)) for f, t in SPANS.values()) / 5
    assert total == round(float(exact), 1)


def _items_summing(raws: dict[str, int]) -> dict[int, str]:
    """Item scores whose dimension raw sums are `raws`: 3s first, then the rest, then zeros."""
    items = {}
    for letter, (first, last) in SPANS.items():
        left = raws[letter]
        for n in range(first, last + 1):
            items[n] = str(min(3, left))
            left -= min(3, left)
    return items


def test_the_total_is_the_mean_of_the_unrounded_dimensions_rounded_once(tmp_path):
    # dimension % 47.0588, 45, 90.4762, 0, 79.1667: their mean is 52.3403 (the manual's total,
    # REFERENCE.md section 4), whereas the mean of the dimensions rounded first is 52.36 -> 52.4
    raws = {"a": 24, "b": 27, "c": 38, "d": 0, "e": 57}
    report, made = gmfm(tmp_path, _items_summing(raws))
    assert report.rows_accepted == 1 and not report.rejections
    stored = {letter: made[f"site-d-C9-baseline-gmfm-88-{letter}"]["valueQuantity"]["value"] for letter in SPANS}
    assert stored == {"a": 47.1, "b": 45.0, "c": 90.5, "d": 0.0, "e": 79.2}  # each rounded once, where stored
    assert made["site-d-C9-baseline-gmfm-88-total"]["valueQuantity"]["value"] == 52.3


def test_the_stored_precision_is_the_one_the_catalogue_declares(tmp_path):
    text = CATALOGUE.read_text(encoding="utf-8")
    assert "    round: 1\n" in text  # the GMFM-88 instrument's declaration
    for relative in ("../protocol/", "../reference/"):  # the copy's references stay the original's
        text = text.replace(relative, f"{CATALOGUE.parent / relative}/")
    copy = tmp_path / "catalogue.yaml"
    copy.write_text(text.replace("    round: 1\n", "    round: 2\n"), encoding="utf-8")
    _, made = gmfm(tmp_path, _items_summing({"a": 24, "b": 27, "c": 38, "d": 0, "e": 57}), copy)
    assert made["site-d-C9-baseline-gmfm-88-a"]["valueQuantity"]["value"] == 47.06
    assert made["site-d-C9-baseline-gmfm-88-total"]["valueQuantity"]["value"] == 52.34


def test_a_bad_item_costs_its_dimension_and_the_total_and_not_tested_is_no_zero(tmp_path):
    report, made = gmfm(tmp_path, {20: "4"})
    [bad] = report.rejections
    assert (bad.column, bad.value, report.rows_partly) == ("item_20", "4", 1)
    assert "not a GMFM-88 item score" in bad.reason
    assert set(bad.not_made) == {"Observation/site-d-C9-baseline-gmfm-88-b-items",
                                 "Observation/site-d-C9-baseline-gmfm-88-b",
                                 "Observation/site-d-C9-baseline-gmfm-88-total"}
    assert {"site-d-C9-baseline-gmfm-88-a", "site-d-C9-baseline-gmfm-88-c", "site-d-C9-baseline-gmfm-88-d",
            "site-d-C9-baseline-gmfm-88-e"} <= set(made)
    report, made = gmfm(tmp_path, {40: "NT"})
    assert report.rows_accepted == 1 and "site-d-C9-baseline-gmfm-88-total" not in made
    panel_c = made["site-d-C9-baseline-gmfm-88-c-items"]  # kept: the items as sent
    not_tested = panel_c["component"][40 - 38]
    assert "valueInteger" not in not_tested and not_tested["dataAbsentReason"]["coding"][0]["code"] == "not-performed"
    assert "site-d-C9-baseline-gmfm-88-c" not in made  # not derived from a partial dimension
    [warning] = report.warnings
    assert warning.column == "item_40" and "not tested" in warning.reason


@pytest.mark.parametrize("concept, value, message", [
    ("body-weight", "{field: weight, latest: true}", "would be stored as this visit's measurement"),
    ("body-weight", "{sum: [{field: weight, unit: kg}, {const: abc, unit: kg}]}", "'abc' is no finite number"),
    ("body-weight", "{ratio: [{field: weight, unit: kg}, {const: 0}]}", "a ratio over zero, whatever the row"),
    ("modified-ashworth", "{sum: [a1, a2]}", "a coded concept takes a code, not arithmetic"),
])
def test_values_no_row_could_make_right_are_refused_when_the_spec_loads(tmp_path, concept, value, message):
    """A review found each accepted by `mapping check`, then rejecting (or, for a bare lookup,
    silently copying an old weight forward as this visit's) on every row."""
    [problem] = problems(spec(tmp_path, concept=concept, value=value))
    assert message in problem and ": rules[2].value: " in problem


def test_a_ratio_over_zero_is_named_by_its_expression_not_by_the_cell(tmp_path):
    """A divisor of 0 is a fine value for other rules (GMFM A of 0 %): the rejection names the ratio,
    so that it does not take the other rules reading that cell with it."""
    report, made = run(tmp_path, "C5,screening,2025-03-01,20.0,,,0,0,0,,",
                       value="{ratio: [{sum: %s}, {sum: %s}]}" % (ITEMS, ITEMS))
    [zero] = report.rejections
    assert zero.column.startswith("ratio(") and "site-d-C5-baseline-body-weight" in made


# Reproducers of a second read of the mapping engine (2026-11-30).

@pytest.mark.parametrize("weight_first", [True, False])
def test_a_value_derived_from_a_rejected_cell_is_never_kept_whatever_the_rules_order(tmp_path, weight_first):
    """The rule run that rejected a cell was named by id() of its read set, which a later rule's
    new set could reuse: with the weight rule first, 500 million cells from a 500 kg weight
    were kept."""
    text = spec(tmp_path, cells="{product: [{field: dose_per_kg, unit: 10*6/kg}, {field: weight, unit: kg}]}",
                concept="body-weight", value="weight").read_text()
    injection = text[text.index("  - injection:"):text.index("  - observation: body-weight")]
    weight = "  - observation: body-weight\n    value: weight\n"
    rules = text[:text.index("  - injection:")] + (weight + injection if weight_first else injection + weight)
    (tmp_path / "derived.yaml").write_text(rules, encoding="utf-8")
    source = tmp_path / "export.csv"
    source.write_text(HEADER + "\nC1,dose1,2025-03-01,500,1,IT,,,,,\n", encoding="utf-8")
    out = io.BytesIO()
    report = translate(load_mapping(tmp_path / "derived.yaml"), [source], out, KEY)
    made = [json.loads(line) for line in out.getvalue().splitlines()]
    assert not [r for r in made if r["resourceType"] == "Procedure"]
    assert [(r.column, r.value) for r in report.rejections] == [("weight", "500")]


def test_a_looked_up_value_is_checked_as_its_rule_stores_it_with_a_unit_of_the_rule(tmp_path):
    """A rule-level `unit:` skipped the check a looked-up weight must pass: a rejected 500 kg
    fed the next visit's dose."""
    path = spec(tmp_path)
    path.write_text(path.read_text().replace("  - observation: body-weight\n    value: weight\n",
                                             "  - observation: body-weight\n    value: weight\n    unit: kg\n"))
    source = tmp_path / "export.csv"
    source.write_text("\n".join([HEADER, "C1,screening,2025-03-01,500,,,,,,,", "C1,dose1,2025-03-08,,1.5,IT,,,,,"])
                      + "\n", encoding="utf-8")
    out = io.BytesIO()
    translate(load_mapping(path), [source], out, KEY)
    made = {r["id"]: r for r in map(json.loads, out.getvalue().splitlines())}
    assert "site-d-C1-injection-1" not in made


def test_two_values_for_one_resource_in_a_row_are_a_rejection_not_an_overwrite(tmp_path):
    path = spec(tmp_path, concept="body-weight", value="a1")
    path.write_text(path.read_text().replace("    value: a1\n", "    value: a1\n    for_each: {split: [a1], separator: ';'}\n"))
    source = tmp_path / "export.csv"
    source.write_text(HEADER + "\nC1,screening,2025-03-01,,,,20;21,,,,\n", encoding="utf-8")
    out = io.BytesIO()
    report = translate(load_mapping(path), [source], out, KEY)
    weights = [r for r in map(json.loads, out.getvalue().splitlines()) if r["resourceType"] == "Observation"]
    assert [w["valueQuantity"]["value"] for w in weights] == [20]
    [twice] = report.rejections
    assert (twice.column, twice.value) == ("a1", "21") and "a second value" in twice.reason
    assert report.rows_partly == 1


@pytest.mark.parametrize("value, says", [
    ("{sum: [{field: a1, unit: '{kg'}]}", "not closed"),
    ("{product: [{field: a1, unit: kg}, {const: abc}]}", "'abc' is no finite number"),
])
def test_a_unit_or_constant_that_cannot_be_is_refused_when_the_spec_loads(tmp_path, value, says):
    assert any(says in p for p in problems(spec(tmp_path, concept="body-weight", value=value)))
