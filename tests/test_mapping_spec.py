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
from adapter.yamlspec import SpecError, package_schema
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
    ("  site: site-a", "  site: site-e", "site: site-e",
     "unknown site 'site-e': not one of the protocol's sites (site-a, site-b, site-c, site-d; declare it in a file "
     "of its own, mapping.site_file, or add it under `sites:`"),
])
def test_each_problem_names_its_line(tmp_path, old, new, needle, message):
    path = spec_with(tmp_path, old, new)
    found = problems_of(path)
    assert len(found) == 1, found
    assert found[0].startswith(f"{path}:{line_of(path, needle)}: "), (found, line_of(path, needle))
    assert message in found[0]


def test_an_unknown_form_of_for_each_lists_its_forms(tmp_path):
    path = spec_with(tmp_path, "for_each: {checked: ae_symptoms}", "for_each: {ticked: ae_symptoms}")
    assert [p.split(": ", 1)[1] for p in problems_of(path)] == [
        'rules[4].for_each: {"ticked": "ae_symptoms"} is not a form allowed here (the forms: {items: ...}; '
        "{split: ..., separator: ...}; {checked: ...})"]


@pytest.mark.parametrize("value", ["{total: [gmfm_a, gmfm_b]}", "{foo: x}", "3"])
def test_an_unknown_form_of_value_lists_the_forms_allowed(tmp_path, value):
    """The forms are read from the schema ($defs/value), so a form added there is listed too."""
    path = spec_with(tmp_path, "{observation: barthel, value: barthel}", f"{{observation: barthel, value: {value}}}")
    found = problems_of(path)
    assert len(found) == 1 and found[0].startswith(f"{path}:{line_of(path, 'value: ' + value)}: rules[10].value: ")
    assert "is not a form allowed here" in found[0] and "text (a column name" in found[0]
    schema = package_schema("adapter.mapping", "mapping.schema.json")
    keyed = [alt["required"][0] for alt in schema["$defs"]["value"]["oneOf"] if "required" in alt]
    assert len(keyed) >= 3 and all(f"{{{key}: ...}}" in found[0] for key in keyed)


def test_a_value_whose_keys_name_its_form_gets_that_forms_problem(tmp_path):
    path = spec_with(tmp_path, "{observation: barthel, value: barthel}",
                     "{observation: barthel, value: {field: barthel, mapp: {a: b}}}")
    assert [p.split(": ", 1)[1] for p in problems_of(path)] == [
        "rules[10].value.mapp: unknown key (expected one of: field, from_visit, latest, map, part, pattern, split, table, unit, units)"]


SITE_B = (MAPPINGS / "site-b.yaml").read_text(encoding="utf-8")
PATIENT_A = "  - patient: {mrn: mrn, birth_date: dob"


@pytest.mark.parametrize("old, new, needle, text", [
    ("record_key: record_id", "record_key: mrn", "record_key: mrn", SITE_A),  # would be in every id
    ("{observation: language-dq, value: lang_dq}", "{observation: language-dq, value: mrn}", "value: mrn", SITE_A),
    ("identifiers: [mrn]", "identifiers: [mrn, lang_dq]", "value: lang_dq", SITE_A),  # declared, copied
    ("cells_million: inj_dose_e6", "cells_million: {mean: [inj_dose_e6, mrn]}", "cells_million", SITE_A),
    ("record_key: $.patient.id", "record_key: $.patient.hospitalNo", "record_key:", SITE_B),
    ("cp_type: $.diagnosis.icd10", "cp_type: patient.hospitalNo", "cp_type:", SITE_B),  # the same field
    ("for_each: {items: $.adverseEvents}", "for_each: {items: $.patient}", "items: $.patient", SITE_B),  # holds it
    ('visit: "month-{month}"', 'visit: "month-{$.patient.hospitalNo}"', "month-{$", SITE_B),  # into ids
])
def test_a_direct_identifier_copied_anywhere_is_refused(tmp_path, old, new, needle, text):
    """Only the patient rule's mrn reads a direct identifier (keyed-hashed); the mrn's field is
    one whether source.identifiers lists it or not."""
    path = spec_with(tmp_path, old, new, text)
    found = problems_of(path)
    assert len(found) == 1, found
    assert found[0].startswith(f"{path}:{line_of(path, needle)}: "), found
    assert " a direct identifier (" in found[0] and "only the patient rule's mrn may read it" in found[0]


def test_a_field_under_a_declared_json_object_is_part_of_it(tmp_path):
    path = spec_with(tmp_path, "identifiers: [$.patient.hospitalNo]", "identifiers: [$.patient.hospitalNo, $.diagnosis]",
                     SITE_B)
    assert [p.split(": ", 2)[1:] for p in problems_of(path)] == [
        [f"rules[1].condition.{key}", f"'$.diagnosis.{name}' overlaps '$.diagnosis', a direct identifier (declared in "
         "source.identifiers): it would be copied into a resource; only the patient rule's mrn may read it (as a "
         "keyed hash)"] for key, name in (("cp_type", "icd10"), ("gmfcs", "gmfcs"))]


def test_identifiers_may_be_tested_and_used_for_duplicates(tmp_path):
    path = spec_with(tmp_path, "    when: {visit: baseline}\n  - condition",
                     "    when: {visit: baseline, present: [mrn]}\n  - condition",
                     SITE_A.replace("unique: [record_id,", "unique: [mrn, record_id,"))
    assert load_mapping(path).warnings == ()


def test_a_field_that_looks_identifying_but_is_not_declared_is_a_warning(tmp_path):
    path = spec_with(tmp_path, "{observation: language-dq, value: lang_dq}",
                     "{observation: language-dq, value: mother_phone}")
    path.write_text(path.read_text(encoding="utf-8").replace("  dictionary:", "  # dictionary:"), encoding="utf-8")
    warnings = load_mapping(path).warnings
    assert len(warnings) == 1 and warnings[0].startswith(f"{path}:{line_of(path, 'mother_phone')}: rules[")
    assert "'mother_phone' looks like a direct identifier" in warnings[0]
    path.write_text(path.read_text(encoding="utf-8").replace("identifiers: [mrn]", "identifiers: [mrn, mother_phone]"),
                    encoding="utf-8")
    assert "is a direct identifier" in problems_of(path)[0]


def test_a_declared_identifier_must_be_a_column(tmp_path):
    path = spec_with(tmp_path, "identifiers: [mrn]", "identifiers: [mrn, child_name]")
    assert [p.split(": ", 1)[1] for p in problems_of(path)] == ["source.identifiers[1]: unknown column 'child_name'"]


def test_a_site_without_mrns_gets_patients_with_their_subject_identifier_only(tmp_path):
    path = spec_with(tmp_path, PATIENT_A, "  - patient: {birth_date: dob",
                     SITE_A.replace("identifiers: [mrn]", "identifiers: [child_name]"))
    path.write_text(path.read_text(encoding="utf-8").replace("  dictionary:", "  # dictionary:"), encoding="utf-8")
    spec = load_mapping(path)
    row = SourceRow("x.csv", 2, {"record_id": "A1", "redcap_event_name": "screening_arm_1", "child_name": "Ann Lee",
                                  "redcap_repeat_instrument": "", "visit_date": "2025-03-01", "dob": "2019-05-22",
                                  "sex": "2", "cp_type": "1"})
    result = map_record(spec, b"k" * 16, row, "2026-01-01T00:00:00Z")
    assert result.accepted, result.rejections
    patient = next(r for r in result.resources if r["resourceType"] == "Patient")
    assert patient["identifier"] == [{"system": "http://ucmsc-cp.example.org/fhir/sid/site-a-subject", "value": "A1"}]
    assert patient["birthDate"] == "2019-05-22" and "Ann Lee" not in str(result.resources)


AE_WHEN = "    for_each: {checked: ae_symptoms}\n    when: {equals: {redcap_repeat_instrument: adverse_event}}\n"


def test_a_rule_without_when_on_a_row_with_nothing_for_it_says_to_add_one(tmp_path):
    """A flat export: without `when:` an adverse-event rule runs on every row, and rejects the
    rows that have no adverse event; the reason says how to keep it to its own rows."""
    spec = load_mapping(spec_with(tmp_path, AE_WHEN, ""))
    values = {"record_id": "A1", "redcap_event_name": "month_1_arm_1", "redcap_repeat_instrument": "",
              "visit_date": "2025-03-01", "barthel": "50"}
    reasons = [r.reason for r in map_record(spec, b"k" * 16, SourceRow("x.csv", 2, values), "2026-01-01T00:00:00Z",
                                            check=False).rejections]
    assert reasons == ["missing adverse event term (the rule has no `when:`, so it runs on every row, and this "
                       "row has nothing for it: add `when: {present: [ae_symptoms]}` or `when: {visit: ...}`)"]
    graded = map_record(spec, b"k" * 16, SourceRow("x.csv", 3, {**values, "ae_grade": "2"}), "2026-01-01T00:00:00Z",
                        check=False)
    assert [r.reason for r in graded.rejections] == ["missing adverse event term"]  # its row: no hint


def test_a_patient_rule_without_when_makes_no_patient_from_a_row_without_demographics(tmp_path):
    spec = load_mapping(spec_with(tmp_path, "    when: {visit: baseline}\n  - condition", "  - condition"))
    values = {"record_id": "A1", "redcap_event_name": "month_1_arm_1", "redcap_repeat_instrument": "",
              "visit_date": "2025-03-01", "barthel": "50"}
    result = map_record(spec, b"k" * 16, SourceRow("x.csv", 2, values), "2026-01-01T00:00:00Z", check=False)
    assert result.accepted and "Patient" not in {r["resourceType"] for r in result.resources}
    baseline = {**values, "redcap_event_name": "screening_arm_1", "cp_type": "1"}  # its own row (when: holds)
    result = map_record(BARTHEL, b"k" * 16, SourceRow("x.csv", 3, baseline), "2026-01-01T00:00:00Z", check=False)
    assert [(r.column, r.reason) for r in result.rejections] == [("mrn", "missing MRN")]


def test_columns_are_checked_against_a_sample_header(tmp_path):
    path = spec_with(tmp_path, "{observation: heart-rate, value: hr}", "{observation: heart-rate, value: HR}")
    header = (ROOT / "fixtures/sites/site-a/export.csv").read_text(encoding="utf-8").splitlines()[0].split(",")
    text = path.read_text(encoding="utf-8").replace("  dictionary:", "  # dictionary:")
    path.write_text(text, encoding="utf-8")
    load_mapping(path)  # without a dictionary or sample, columns cannot be checked
    with pytest.raises(SpecError, match="unknown column 'HR'"):
        load_mapping(path, header)


def test_the_committed_site_mappings_are_clean():
    for name in ("site-a", "site-b", "site-c", "site-d"):
        assert load_mapping(MAPPINGS / f"{name}.yaml").rules


def test_ucum_factors():
    assert factor("mg/dL", "g/L") == decimal.Decimal("0.01")
    assert factor("10*9/L", "/uL") == 1000
    with pytest.raises(UnitError, match="offset"):
        factor("Cel", "[degF]")


@pytest.mark.parametrize("source, target, expected", [
    ("/100", "%", "1"),  # one per hundred is 1 %
    ("/3", "%", "33.3333333333"),
    ("%", "1", "0.01"),
    ("[ppth]", "%", "0.1"),
    ("10*3/uL", "10*9/L", "1"),  # 10^3 per uL = 10^9 per L
    ("10*6/L", "10*9/L", "0.001"),
    ("mg/(24.h)", "mg/h", "0.0416666666667"),
    ("10.L", "L", "10"),
])
def test_ucum_factors_keep_the_numbers_in_a_unit(source, target, expected):
    """A UCUM code's plain numbers are part of the unit (`/100` is a hundredth), not dropped."""
    assert factor(source, target) == decimal.Decimal(expected)


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
    ResearchSubject with its file, row, column, value and rule, like every code map."""
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
    assert bad.rejections[0].rule == f"spec.yaml:{line_of(path, 'research_subject')}"
    assert bad.partly and "ResearchSubject" not in {r["resourceType"] for r in bad.resources}  # the injection stays
    assert "missing arm" in mapped("").rejections[0].reason  # the rule fires: the arm must be readable here
