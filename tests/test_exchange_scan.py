"""The direct-identifier scan (adapter/exchange/scan.py): structural rules, and the site's known
identifiers read from the real fixture exports through the real mappings."""
from __future__ import annotations

import dataclasses
import json
import time

import pytest

from adapter.exchange.scan import Finding, Needles, scan_ndjson, structural_findings
from conftest import ROOT

SITES = ROOT / "fixtures" / "sites"
MAPPINGS = ROOT / "mappings" / "sites"
PSEUDONYM = "http://ucmsc-cp.example.org/fhir/sid/study-pseudonym"
POLICY = ("http://ucmsc-cp.example.org/fhir/CodeSystem/deid-policy", "centre-v1")


def kinds(resource: dict, **options: object) -> set[tuple[str, str]]:
    return {(f.kind, f.path) for f in structural_findings(resource, **options)}  # type: ignore[arg-type]


def patient(**elements: object) -> dict:
    return {"resourceType": "Patient", "id": "site-a-3f", **elements}


@pytest.mark.parametrize(("resource", "expected"), [
    (patient(name=[{"family": "Li", "given": ["Wei"]}]), {("name", "Patient.name")}),
    (patient(contact=[{"name": {"text": "mother"}}]), {("name", "Patient.contact[0].name")}),
    ({"resourceType": "Practitioner", "id": "x", "name": [{"text": "Dr Who"}]}, {("name", "Practitioner.name")}),
    ({"resourceType": "Observation", "id": "o", "performer": [{"reference": "Practitioner/1", "display": "Dr Who"}]},
     {("name", "Observation.performer[0].display")}),
    ({"resourceType": "Observation", "id": "o", "extension": [{"url": "u", "valueHumanName": {"given": ["A"]}}]},
     {("name", "Observation.extension[0].valueHumanName")}),
    (patient(birthDate="2019-05-22"), {("birth-date", "Patient.birthDate")}),
    ({"resourceType": "RelatedPerson", "id": "r", "birthDate": "1990-01-02T00:00:00Z"},
     {("birth-date", "RelatedPerson.birthDate")}),
    (patient(address=[{"country": "CN"}]), {("address", "Patient.address")}),
    ({"resourceType": "Location", "id": "l", "extension": [{"url": "u", "valueAddress": {"city": "Leeds"}}]},
     {("address", "Location.extension[0].valueAddress")}),
    (patient(telecom=[{"system": "phone", "value": "0113 000"}]), {("telephone", "Patient.telecom")}),
    ({"resourceType": "Observation", "id": "o", "extension": [{"url": "u", "valueContactPoint":
                                                              {"system": "email", "value": "a@b.c"}}]},
     {("telephone", "Observation.extension[0].valueContactPoint")}),
    (patient(text={"status": "generated", "div": "<div>Li Wei</div>"}), {("free-text", "Patient.text.div")}),
    ({"resourceType": "Observation", "id": "o", "note": [{"text": "mum called"}]},
     {("free-text", "Observation.note[0].text")}),
    ({"resourceType": "AdverseEvent", "id": "a", "suspectEntity": [{"causality": [{"comment": "likely"}]}]},
     {("free-text", "AdverseEvent.suspectEntity[0].causality[0].comment")}),
    (patient(identifier=[{"system": "http://hospital/mrn", "value": "MRN1"}]),
     {("identifier", "Patient.identifier[0]")}),
    ({"resourceType": "Provenance", "id": "p", "agent": [{"who": {"identifier": {"value": "MRN1"}}}]},
     {("identifier", "Provenance.agent[0].who.identifier")}),
])
def test_each_kind_is_found(resource: dict, expected: set[tuple[str, str]]) -> None:
    assert kinds(resource, pseudonym_system=PSEUDONYM) == expected


@pytest.mark.parametrize("resource", [
    patient(birthDate="2019-05"),
    patient(birthDate="2019"),
    patient(gender="male", identifier=[{"system": PSEUDONYM, "value": "3f9a"}]),
    {"resourceType": "Organization", "id": "o", "name": "Site A hospital"},  # not a person
    {"resourceType": "Observation", "id": "o", "code": {"text": "Body weight"},  # a concept's text, not free text
     "subject": {"reference": "Patient/site-a-3f"}, "valueQuantity": {"system": "http://unitsofmeasure.org",
                                                                      "code": "kg", "value": 21.8}},
    {"resourceType": "Observation", "id": "o", "performer": [{"reference": "Organization/1", "display": "Site A"}]},
    {"resourceType": "Observation", "id": "o", "note": [], "text": {"status": "empty"}},
    patient(extension=[{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
                        "valueDate": "2019-05-22"}]),  # the brief leaves extensions to the policy
])
def test_clean_resources_pass(resource: dict) -> None:
    assert structural_findings(resource, pseudonym_system=PSEUDONYM) == []


def test_without_a_pseudonym_system_every_identifier_is_refused() -> None:
    assert kinds(patient(identifier=[{"system": PSEUDONYM, "value": "3f"}])) == \
        {("identifier", "Patient.identifier[0]")}


def test_the_policy_tag_is_required_when_a_policy_is_given() -> None:
    tagged = patient(meta={"security": [{"system": POLICY[0], "code": POLICY[1]}]})
    assert structural_findings(tagged, policy=POLICY) == []
    other = patient(meta={"security": [{"system": POLICY[0], "code": "other"}]})
    assert kinds(other, policy=POLICY) == {("policy-tag", "Patient.meta.security")}
    assert kinds(patient(), policy=POLICY) == {("policy-tag", "Patient.meta.security")}
    assert structural_findings(patient()) == []  # no policy asked for, none checked


@pytest.fixture(scope="module")
def needles() -> Needles:
    return Needles.from_sources([
        (MAPPINGS / "site-a.yaml", [SITES / "site-a" / "export.csv"]),
        (MAPPINGS / "site-b.yaml", [SITES / "site-b" / "export.ndjson"]),
        (MAPPINGS / "site-c.yaml", [SITES / "site-c" / "export.csv"]),
    ])


def line(**elements: object) -> bytes:
    return json.dumps({"resourceType": "Observation", "id": "o1", **elements}, ensure_ascii=False).encode()


@pytest.mark.parametrize(("value", "kind"), [
    ("MRN96207802", "mrn"), ("2019-05-22", "birth-date"),  # site A's first child
    ("MRN37760185", "mrn"), ("10/05/2020", "birth-date"), ("2020-05-10", "birth-date"),  # site B's
    ("MRN94525539", "mrn"), ("2017/08/06", "birth-date"), ("2017-08-06", "birth-date"),  # site C's
])
def test_the_fixture_identifiers_are_found(needles: Needles, value: str, kind: str) -> None:
    found = needles.findings(line(note=[{"text": f"seen {value}, ok"}]), "Observation/o1")
    assert [(f.resource, f.path, f.kind) for f in found] == [("Observation/o1", "Observation.note[0].text", kind)]
    assert needles.findings(line(valueString="MRN00000000 1999-01-01"), "Observation/o1") == []


def test_a_birth_date_inside_a_datetime_is_found(needles: Needles) -> None:
    found = needles.findings(line(effectiveDateTime="2019-05-22T08:00:00Z"), "Observation/o1")
    assert [(f.path, f.kind) for f in found] == [("Observation.effectiveDateTime", "birth-date")]


@pytest.mark.parametrize("text", ["XMRN96207802", "MRN962078021", "MRN96207802a", "12019-05-22", "2019-05-223"])
def test_a_value_inside_a_longer_token_is_not_reported(needles: Needles, text: str) -> None:
    assert needles.findings(line(valueString=text), "Observation/o1") == []


def test_every_row_of_every_site_counts(needles: Needles) -> None:
    mrns = {row.split(",")[4] for row in (SITES / "site-a" / "export.csv").read_text().splitlines()[1:]}
    mrns = {m for m in mrns if m}
    assert len(mrns) >= 15
    for mrn in mrns:
        assert needles.findings(line(valueString=mrn), "Observation/o1"), "an MRN of site A is missing"


def test_short_values_are_ignored_and_kinds_are_generic() -> None:
    needles = Needles()
    needles.add("mrn", "A01")
    needles.add("name", "张小明")
    needles.add("telephone", "0113 496 0000")
    assert needles.findings(line(valueString="A01"), "Observation/o1") == []
    assert {f.kind for f in needles.findings(line(valueString="病人张小明发热"), "Observation/o1")} == {"name"}
    escaped = json.dumps({"resourceType": "Observation", "valueString": "张小明"}).encode()  # \\u-escaped
    assert [f.kind for f in needles.findings(escaped, "Observation/o1")] == ["name"]
    assert [f.kind for f in needles.findings(line(valueString="call 0113 496 0000"), "Observation/o1")] == \
        ["telephone"]


def test_a_finding_never_holds_the_value(needles: Needles) -> None:
    mrn = "MRN96207802"
    resource = {"resourceType": "Patient", "id": "site-a-3f", "birthDate": "2019-05-22",
                "identifier": [{"system": "http://hospital/mrn", "value": mrn}],
                "name": [{"text": mrn}], "telecom": [{"system": "phone", "value": mrn}],
                "note": [{"text": mrn}], "text": {"status": "generated", "div": f"<div>{mrn}</div>"}}
    raw = json.dumps(resource).encode()
    found = structural_findings(resource, pseudonym_system=PSEUDONYM) + needles.findings(raw, "Patient/site-a-3f")
    assert {f.kind for f in found} >= {"mrn", "birth-date", "identifier", "name", "telephone", "free-text"}
    for finding in found:
        for value in dataclasses.astuple(finding):
            assert mrn not in value and "2019-05-22" not in value


def test_scan_ndjson_reports_lines_and_refuses_what_it_cannot_read(needles: Needles) -> None:
    clean = json.dumps(patient(birthDate="2019-05", meta={"security": [{"system": POLICY[0], "code": POLICY[1]}]}))
    leaky = json.dumps(patient(birthDate="2019-05", note=[{"text": "MRN96207802"}],
                               meta={"security": [{"system": POLICY[0], "code": POLICY[1]}]}))
    found = list(scan_ndjson([clean.encode(), b"", leaky.encode()], needles=needles, policy=POLICY))
    assert [(n, f.kind) for n, f in found] == [(3, "free-text"), (3, "mrn")]
    assert isinstance(found[0][1], Finding)
    with pytest.raises(ValueError, match="line 2"):
        list(scan_ndjson([clean.encode(), b"[1]"]))
    with pytest.raises(ValueError, match="line 1"):
        list(scan_ndjson([b'{"resourceType": "Basic", "extension": ' + b'[{"extension": ' * 5000]))
    with pytest.raises(ValueError, match="line 1"):
        list(scan_ndjson([b'{"a": ' * 700 + b'1' + b'}' * 700]))  # parses, too deep to walk


def test_speed_with_20000_needles() -> None:
    """The module docstring's figure, at a tenth of the lines (the full run is ~2 s)."""
    needles = Needles()
    for i in range(10_000):
        needles.add("mrn", f"MRN{(i * 7919) % 10**8:08d}")
        needles.add("birth-date", f"{2012 + i % 12}-{1 + i % 12:02d}-{1 + i % 28:02d}")
    assert len(needles) >= 10_000
    needles.findings(b"{}", "Observation/o1")  # compiles the pattern (~2 s), outside the timing
    lines = [line(effectiveDateTime=f"2025-06-{1 + i % 28:02d}", valueQuantity={"value": i / 10, "unit": "kg"},
                  subject={"reference": "Patient/site-a-3f9a0c1e2b7d4a55"}, code={"text": "Body weight " * 40})
             for i in range(10_000)]
    started = time.perf_counter()
    assert not any(needles.findings(raw, "Observation/o1") for raw in lines)
    assert time.perf_counter() - started < 5  # ~0.2 s here; generous for a loaded CI machine


def test_declared_identifiers_are_found_without_an_mrn_rule(tmp_path) -> None:
    """A site without an MRN in its patient rule: the fields source.identifiers declares are
    looked for all the same."""
    text = (MAPPINGS / "site-c.yaml").read_text(encoding="utf-8").replace("{mrn: 住院号, ", "{")
    spec = tmp_path / "site-c.yaml"
    spec.write_text(text.replace("catalogue: catalogue.yaml", f"catalogue: {MAPPINGS / 'catalogue.yaml'}"),
                    encoding="utf-8")
    found = Needles.from_sources([(spec, [SITES / "site-c" / "export.csv"])]).findings(
        line(valueString="MRN94525539"), "Observation/o1")
    assert [(f.path, f.kind) for f in found] == [("Observation.valueString", "identifier")]


def test_an_identifier_of_a_thousand_bytes_is_looked_for_without_recursion(tmp_path) -> None:
    """`exchange check` died of RecursionError: the needles' trie was emitted a level a byte."""
    rows = (SITES / "site-a" / "export.csv").read_text(encoding="utf-8").splitlines()
    header = rows[0].split(",")
    cells = rows[1].split(",")
    long_mrn = "MRN" + "7" * 1000
    cells[header.index("mrn")] = long_mrn
    export = tmp_path / "export.csv"
    export.write_text("\n".join([rows[0], ",".join(cells), *rows[2:]]) + "\n", encoding="utf-8")
    needles = Needles.from_sources([(MAPPINGS / "site-a.yaml", [export])])
    found = needles.findings(line(valueString=f"see {long_mrn}"), "Observation/o1")
    assert [(f.path, f.kind) for f in found] == [("Observation.valueString", "mrn")]
    assert needles.findings(line(valueString=long_mrn + "7"), "Observation/o1") == []  # a longer token
