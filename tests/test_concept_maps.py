"""Each site mapping's code maps as a ConceptMap: built from the spec, valid R4, the codings
the adapter writes as targets, written with every ingest, served and searchable over HTTP."""
from __future__ import annotations

import json
import urllib.parse

import pytest
from click.testing import CliRunner

from adapter.cli import main
from adapter.fhir.validation import validate
from adapter.mapping.concept_maps import code_maps, concept_map, source_system, target_coding
from adapter.mapping.ingest import ingest
from adapter.mapping.spec import load_mapping
from conftest import ROOT
from r4schema import assert_r4
from test_mapping_spec import spec_with

MAPPINGS = ROOT / "mappings" / "sites"
SITES = ("site-a", "site-b", "site-c", "site-d")
KEY = b"test-pseudonym-key-0123456789"
GENDER = "http://hl7.org/fhir/administrative-gender"
SITE_C_URL = "http://ucmsc-cp.example.org/fhir/ConceptMap/site-c-gb18030-csv"


def targets(cm: dict, source: str) -> dict[str, tuple[str, str, str]]:
    """{site code: (target system, code, equivalence)} of a source column's groups."""
    return {e["code"]: (g["target"], e["target"][0]["code"], e["target"][0]["equivalence"])
            for g in cm["group"] if g["source"] == source for e in g["element"]}


@pytest.mark.parametrize("site", SITES)
def test_each_mapping_s_concept_map_is_valid_r4(site):
    spec = load_mapping(MAPPINGS / f"{site}.yaml")
    cm = concept_map(spec)
    assert validate(cm) == []
    assert_r4(cm)
    assert (cm["id"], cm["version"]) == (spec.name, spec.version)
    assert cm["url"] == f"http://ucmsc-cp.example.org/fhir/ConceptMap/{spec.name}"
    assert all("unmapped" not in g for g in cm["group"])  # a value outside the map is rejected
    assert "rejects its cell" in cm["description"]


def _codings(node) -> list[tuple[str, str]]:
    """Every (system, code) of the Codings in a resource, at any depth."""
    if isinstance(node, list):
        return [c for item in node for c in _codings(item)]
    if not isinstance(node, dict):
        return []
    own = [(node["system"], node["code"])] if isinstance(node.get("system"), str) and "code" in node else []
    return own + [c for value in node.values() for c in _codings(value)]


@pytest.mark.parametrize("site", SITES)
def test_the_targets_are_the_codings_the_mapping_writes(site):
    """Every coding of a mapped table (cp type, GMFCS, route, AE term, grade, seriousness,
    causality, outcome, gender) that the golden output holds is a target of the map."""
    spec = load_mapping(MAPPINGS / f"{site}.yaml")
    cm = concept_map(spec)
    targeted = {(g["target"], t["code"]) for g in cm["group"] for e in g["element"] for t in e["target"]}
    tables = {table for _, table, _ in code_maps(spec)}
    of_tables = {(c["system"], c["code"]) for table in tables for key in spec.catalogue.codes(table)
                 if (c := target_coding(spec.catalogue, table, key))}
    expected = [json.loads(line) for line in spec.relative(spec.data["golden"][0]["expected"]).open(encoding="utf-8")]
    written = {c for r in expected for c in _codings(r)} & of_tables
    written |= {(GENDER, r["gender"]) for r in expected if r["resourceType"] == "Patient" and "gender" in r
                and "gender" in tables}
    assert written and written <= targeted, written - targeted
    assert len({system for system, _ in written}) >= 3  # several tables, not just one


def test_site_c_s_男_is_male_in_the_stored_concept_map(live, http, store):
    """Read from the served resource's groups, as an engineer would check a mapping (not via
    $translate)."""
    spec = load_mapping(MAPPINGS / "site-c.yaml")
    ingest(spec, [spec.relative(spec.data["golden"][0]["input"])], store, KEY)
    bundle = http.get(f"{live}/ConceptMap", params={"url": SITE_C_URL}, timeout=30).json()
    [entry] = bundle["entry"]
    cm = entry["resource"]
    sex = targets(cm, source_system(spec, "性别"))
    assert sex["男"] == (GENDER, "male", "equivalent") and sex["女"] == (GENDER, "female", "equivalent")
    assert "未知" not in sex  # not in the spec's map: the mapping rejects it
    assert targets(cm, source_system(spec, "不良反应"))["发热"] == ("http://snomed.info/sct", "386661006", "equivalent")


def test_concept_maps_are_written_with_every_ingest_and_searchable(live, http, store):
    for site in ("site-a", "site-c"):
        spec = load_mapping(MAPPINGS / f"{site}.yaml")
        first = ingest(spec, [spec.relative(spec.data["golden"][0]["input"])], store, KEY)
        assert first.by_type["ConceptMap"]["created"] == 1
    again = ingest(spec, [spec.relative(spec.data["golden"][0]["input"])], store, KEY)
    assert dict(again.by_type["ConceptMap"]) == {"unchanged": 1}

    def found(**params: str) -> list[str]:
        response = http.get(f"{live}/ConceptMap", params=params, timeout=30)
        assert response.status_code == 200, response.text
        return sorted(e["resource"]["id"] for e in response.json().get("entry", []))

    both = ["site-a-redcap", "site-c-gb18030-csv"]
    assert found(**{"target-system": "http://snomed.info/sct"}) == both
    assert found(**{"target-system": GENDER, "source-code": "男"}) == ["site-c-gb18030-csv"]
    assert found(**{"source-system": source_system(spec, "性别")}) == ["site-c-gb18030-csv"]
    assert found(url=SITE_C_URL, version="1.0.0") == ["site-c-gb18030-csv"]
    assert found(**{"target-code": "G80.1"}) == ["site-a-redcap"]


def test_the_spec_stays_the_source(tmp_path):
    """A code added to a map is in the ConceptMap; a target the catalogue lacks fails the spec
    where it is written."""
    text = (MAPPINGS / "site-c.yaml").read_text(encoding="utf-8")
    path = spec_with(tmp_path, "map: {男: male, 女: female}", "map: {男: male, 女: female, 未知: unknown}", text)
    cm = concept_map(load_mapping(path))
    assert targets(cm, source_system(load_mapping(path), "性别"))["未知"] == (GENDER, "unknown", "equivalent")
    bad = spec_with(tmp_path, "map: {男: male, 女: female}", "map: {男: male, 女: femme}", text)
    result = CliRunner().invoke(main, ["mapping", "check", str(bad)])
    assert result.exit_code != 0
    line = next(i for i, t in enumerate(bad.read_text(encoding="utf-8").splitlines(), 1) if "femme" in t)
    assert f"{bad}:{line}: " in result.output and "unknown gender code 'femme'" in result.output


def test_the_cli_prints_them_and_check_builds_them():
    runner = CliRunner()
    one = runner.invoke(main, ["mapping", "concept-maps", str(MAPPINGS / "site-c.yaml")])
    assert one.exit_code == 0, one.output
    assert json.loads(one.output)["url"] == SITE_C_URL
    several = runner.invoke(main, ["mapping", "concept-maps", *(str(MAPPINGS / f"{s}.yaml") for s in SITES)])
    assert [e["resource"]["id"] for e in json.loads(several.output)["entry"]] == [
        load_mapping(MAPPINGS / f"{s}.yaml").name for s in SITES]
    check = runner.invoke(main, ["mapping", "check", str(MAPPINGS / "site-c.yaml")])
    assert check.exit_code == 0 and "ConceptMap/site-c-gb18030-csv: 4 groups, 14 codes" in check.output
    assert "Example:" in runner.invoke(main, ["mapping", "concept-maps", "--help"]).output


def test_a_column_s_source_system_is_stable_and_ascii():
    spec = load_mapping(MAPPINGS / "site-c.yaml")
    system = source_system(spec, "性别")
    assert system == "http://ucmsc-cp.example.org/fhir/site-code/site-c/%E6%80%A7%E5%88%AB"
    assert urllib.parse.unquote(system.rsplit("/", 1)[1]) == "性别" and system.isascii()


def test_an_entry_that_is_not_equivalent_says_so(tmp_path):
    """Site D's combined IV + IT route is recorded as intravenous: narrower, with why."""
    spec = load_mapping(MAPPINGS / "site-d.yaml")
    route = targets(concept_map(spec), source_system(spec, "adm_route"))
    assert route["2"] == route["3"][:2] + ("equivalent",) and route["3"][2] == "narrower"
    [comment] = [e["target"][0].get("comment") for g in concept_map(spec)["group"] for e in g["element"]
                 if g["source"] == source_system(spec, "adm_route") and e["code"] == "3"]
    assert "combined" in comment
    # R4's cmd-1: a narrower map needs its comment, so the spec does too
    text = (MAPPINGS / "site-d.yaml").read_text(encoding="utf-8")
    path = spec_with(tmp_path, ', comment: "combined IV + IT, recorded as the IV injection"}', "}", text)
    result = CliRunner().invoke(main, ["mapping", "check", str(path)])
    line = next(i for i, t in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if "equivalence: narrower" in t)
    problem = f"{path}:{line}: rules[3].injection.route.map.3: 'comment' is a required property"
    assert result.exit_code != 0 and problem in result.output, result.output


def test_translate_answers_what_a_site_s_code_maps_to(live, http, store):
    """The issue's question over HTTP: "what does site D's route 3 map to?" — answered by
    $translate from the ConceptMap an ingest wrote, with the spec's equivalence and comment."""
    spec = load_mapping(MAPPINGS / "site-d.yaml")
    ingest(spec, [spec.relative(spec.data["golden"][0]["input"])], store, KEY)
    route = source_system(spec, "adm_route")

    def translate(code: str) -> dict:
        response = http.get(f"{live}/ConceptMap/$translate", params={"system": route, "code": code}, timeout=30)
        assert response.status_code == 200, response.text
        return {p["name"]: p for p in response.json()["parameter"] if p["name"] != "match"} | {
            "matches": [{q["name"]: q for q in p["part"]} for p in response.json()["parameter"] if p["name"] == "match"]}

    combined = translate("3")
    assert combined["result"]["valueBoolean"] is True
    [match] = combined["matches"]
    assert match["equivalence"]["valueCode"] == "narrower"
    assert match["concept"]["valueCoding"]["code"] == "ucmsc-iv"
    assert match["source"]["valueUri"] == f"http://ucmsc-cp.example.org/fhir/ConceptMap/{spec.name}"
    [intrathecal] = translate("1")["matches"]
    assert (intrathecal["concept"]["valueCoding"]["code"], intrathecal["equivalence"]["valueCode"]) == (
        "ucmsc-it", "equivalent")
    outside = translate("9")  # not in the spec's map: the mapping rejects such a cell
    assert outside["result"]["valueBoolean"] is False and not outside["matches"]


def test_a_code_two_rules_map_apart_keeps_both_targets(tmp_path):
    """Found by a review: with a second rule mapping site D's route 3 otherwise (at another
    visit), the ConceptMap kept the first rule's target only, though rows of that visit are
    written with the second's."""
    text = (MAPPINGS / "site-d.yaml").read_text(encoding="utf-8")
    old = "    when: {present: [adm_route]}\n"
    second = old.replace("{present: [adm_route]}", "{visit: injection-1, present: [adm_route]}") + (
        "  - injection:\n      date: visit_date\n"
        "      route: {field: adm_route, map: {\"3\": intrathecal}}\n"
        "    when: {visit: injection-2, present: [adm_route]}\n")
    spec = load_mapping(spec_with(tmp_path, old, second, text))
    [element] = [e for g in concept_map(spec)["group"] if g["source"] == source_system(spec, "adm_route")
                 for e in g["element"] if e["code"] == "3"]
    assert [(t["code"], t["equivalence"]) for t in element["target"]] == [("ucmsc-iv", "narrower"),
                                                                         ("ucmsc-it", "equivalent")]
    assert validate(concept_map(spec)) == []
