"""Mapping specs: every problem an engineer can make is reported with its file, line and key."""
from __future__ import annotations

import decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapter.mapping.engine import map_record
from adapter.mapping.sources import SourceRow
from adapter.mapping.spec import load_mapping
from adapter.fhir.units import UnitError, factor
from adapter.yamlspec import SpecError
from conftest import ROOT

MAPPINGS = ROOT / "mappings" / "sites"
SITE_A = (MAPPINGS / "site-a.yaml").read_text(encoding="utf-8")


def spec_with(tmp_path, old: str, new: str, text: str = SITE_A):
    assert old in text, old
    text = text.replace(old, new).replace("catalogue: catalogue.yaml", f"catalogue: {MAPPINGS / 'catalogue.yaml'}")
    text = text.replace("dictionary: ../../fixtures", f"dictionary: {ROOT / 'fixtures'}")
    path = tmp_path / "spec.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(path) -> list[str]:
    with pytest.raises(SpecError) as caught:
        load_mapping(path)
    return caught.value.problems


def line_of(path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if needle in line)


@pytest.mark.parametrize("old, new, needle, message", [
    ("{observation: barthel, value: barthel}", "{observation: barthell, value: barthel}", "barthell",
     "unknown observation 'barthell'"),
    ('map: {"1": male, "2": female}', 'map: {"1": male, "2": femal}', "femal}", "unknown gender code 'femal'"),
    ("{observation: igg, value: igg_gl, unit: g/L}", "{observation: igg, value: igg_gl, unit: kg}", "unit: kg",
     "UCUM cannot convert 'kg' to 'g/L'"),
    ("{observation: igg, value: igg_gl, unit: g/L}", "{observation: igg, value: igg_gl, unit: cells/uL}",
     "cells/uL", "'cells/uL' is not a UCUM unit"),
    ("{observation: heart-rate, value: hr}", "{observation: heart-rate, value: pulse_rate}", "pulse_rate",
     "unknown column 'pulse_rate'"),
    ('map: {"1": male, "2": female}', 'map: {"1": male, "3": female}', "\"3\": female",
     "'3' is not a choice of sex in the data dictionary"),
    ('visit: "month-{1}"', 'visit: "follow-{1}"', "follow-{1}", "a visit is baseline, injection-N or month-N"),
    ('visit: "month-{1}"', 'visit: "month-{2}"', "month-{2}", "{2}: the match has 1 group(s)"),
    ("{observation: gmfm-66, value: gmfm66}", "{observation: gmfm-66, value: gmfm66, colour: red}", "colour",
     "unknown key"),
    ("body_site: quadriceps-left", "body_site: quadriceps-lft", "quadriceps-lft", "unknown body site"),
    ("    when: {visit: baseline}\n  - condition", "    when: {visit: screening}\n  - condition", "{visit: screening}",
     "'screening' is not a visit"),
    ("{observation: language-dq, value: lang_dq}", "{observation: blood-pressure, value: lang_dq}",
     "blood-pressure, value: lang_dq", "blood-pressure needs 'systolic' and 'diastolic', not 'value'"),
    ("  arm: arm-1", "  arm: arm-9", "arm: arm-9", "unknown arm 'arm-9' (the protocol has: arm-1, arm-2)"),
    ("research_subject: {start: inj_date}", "research_subject: {start: inj_date, arm: {const: arm-3}}", "arm-3",
     "unknown arm 'arm-3'"),
    ("  arm: arm-1\n", "", "research_subject", "no arm: give mapping.arm, or `arm` here"),
])
def test_each_problem_names_its_line(tmp_path, old, new, needle, message):
    path = spec_with(tmp_path, old, new)
    found = problems_of(path)
    assert len(found) == 1, found
    assert found[0].startswith(f"{path}:{line_of(path, needle)}: "), (found, line_of(path, needle))
    assert message in found[0]


def test_columns_are_checked_against_a_sample_header(tmp_path):
    path = spec_with(tmp_path, "{observation: heart-rate, value: hr}", "{observation: heart-rate, value: HR}")
    header = (ROOT / "fixtures/sites/site-a/export.csv").read_text(encoding="utf-8").splitlines()[0].split(",")
    text = path.read_text(encoding="utf-8").replace("  dictionary:", "  # dictionary:")
    path.write_text(text, encoding="utf-8")
    load_mapping(path)  # without a dictionary or sample, columns cannot be checked
    with pytest.raises(SpecError, match="unknown column 'HR'"):
        load_mapping(path, header)


def test_the_committed_site_mappings_are_clean():
    for name in ("site-a", "site-b", "site-c"):
        assert load_mapping(MAPPINGS / f"{name}.yaml").rules


def test_ucum_factors():
    assert factor("mg/dL", "g/L") == decimal.Decimal("0.01")
    assert factor("10*9/L", "/uL") == 1000
    with pytest.raises(UnitError, match="offset"):
        factor("Cel", "[degF]")


BARTHEL = load_mapping(MAPPINGS / "site-a.yaml")


@settings(max_examples=60, deadline=None)
@given(st.one_of(st.integers(-20, 130).map(str), st.text(max_size=6)))
def test_barthel_is_accepted_exactly_when_the_reference_allows_it(text):
    """Section 4 of the reference: 0-100 in steps of 5; anything else rejects the row, naming it."""
    row = SourceRow("x.csv", 2, {"record_id": "A1", "redcap_event_name": "month_1_arm_1",
                                  "redcap_repeat_instrument": "", "visit_date": "2025-03-01", "barthel": text})
    result = map_record(BARTHEL, b"k" * 16, row, "2026-01-01T00:00:00Z", check=False)
    try:
        number = decimal.Decimal(text.strip()) if text.strip() else None
    except decimal.InvalidOperation:
        number = decimal.Decimal("NaN")
    valid = number is not None and number.is_finite() and 0 <= number <= 100 and number % 5 == 0
    if not text.strip():  # the row's only value is empty: it makes nothing, said with its cell
        assert [(r.column, r.value) for r in result.rejections] == [("redcap_event_name", "month_1_arm_1")]
    elif valid:
        barthel = [r for r in result.resources if r["resourceType"] == "Observation"]
        assert result.accepted and barthel[0]["valueQuantity"]["value"] == number
    else:
        assert [(r.column, r.value) for r in result.rejections] == [("barthel", text)]


def test_the_arm_is_read_per_child_through_a_code_map(tmp_path):
    """research_subject.arm: a randomisation column with a code map; an unlisted code rejects the
    row with its file, row, column, value and rule, like every code map."""
    path = spec_with(tmp_path, "research_subject: {start: inj_date}",
                     'research_subject: {start: inj_date, arm: {field: rand_arm, map: {"1": arm-1, "2": arm-2}}}')
    text = path.read_text(encoding="utf-8").replace("  dictionary:", "  # dictionary:").replace("  arm: arm-1\n", "")
    path.write_text(text, encoding="utf-8")
    spec = load_mapping(path)

    def mapped(code: str):
        row = SourceRow("x.csv", 7, {"record_id": "A1", "redcap_event_name": "injection_1_arm_1",
                                     "redcap_repeat_instrument": "", "visit_date": "2025-03-01",
                                     "inj_date": "2025-03-01", "inj_route": "1", "rand_arm": code})
        return map_record(spec, b"k" * 16, row, "2026-01-01T00:00:00Z", check=False)

    arms = [r["assignedArm"] for code in ("1", "2") for r in mapped(code).resources
            if r["resourceType"] == "ResearchSubject"]
    assert arms == ["arm-1", "arm-2"]
    bad = mapped("3")
    assert [(r.file, r.row, r.column, r.value, r.reason) for r in bad.rejections] == [
        ("x.csv", 7, "rand_arm", "3", "unknown code '3' (expected '1', '2')")]
    assert bad.rejections[0].rule == f"spec.yaml:{line_of(path, 'research_subject')}" and not bad.resources
    assert "missing arm" in mapped("").rejections[0].reason  # the rule fires: the arm must be readable here
