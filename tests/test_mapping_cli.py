"""`fhir-adapter mapping check|test|coverage`, `translate --dry-run` and `ingest` as an
integration engineer runs them."""
from __future__ import annotations

import csv
import json
import os
import shutil
import stat

import pytest
from click.testing import CliRunner

from adapter.cli import main
from conftest import ROOT, table_counts

MAPPINGS = ROOT / "mappings" / "sites"
SITES = ROOT / "fixtures" / "sites"
KEYS = {"UCMSC_SITE_A_KEY": "site-a-test-key-0123456789", "UCMSC_SITE_B_KEY": "site-b-test-key-0123456789",
        "UCMSC_SITE_C_KEY": "site-c-test-key-0123456789"}


def run(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(main, list(args), env={**KEYS, **(env or {})}, catch_exceptions=False)


@pytest.fixture
def workspace(tmp_path):
    """A copy of mappings/ (and the dictionary it names) to change without touching the repository."""
    shutil.copytree(ROOT / "mappings", tmp_path / "mappings")
    (tmp_path / "fixtures/sites/site-a").mkdir(parents=True)
    shutil.copy(SITES / "site-a/dictionary.csv", tmp_path / "fixtures/sites/site-a/dictionary.csv")
    return tmp_path / "mappings" / "sites"


@pytest.mark.parametrize("site", ["site-a", "site-b", "site-c", "site-d", "site-e"])
def test_check_and_golden_tests_pass_for_each_site(site):
    checked = run("mapping", "check", str(MAPPINGS / f"{site}.yaml"))
    assert checked.exit_code == 0 and "ok (" in checked.output
    tested = run("mapping", "test", str(MAPPINGS / f"{site}.yaml"))
    assert tested.exit_code == 0, tested.output
    assert tested.output.startswith("ok: golden/" if site != "site-e" else "ok: ../../fixtures/sites/site-e/")


def test_check_reports_problems_with_their_line(workspace):
    spec = workspace / "site-a.yaml"
    spec.write_text(spec.read_text(encoding="utf-8").replace("value: hr}", "value: pulse}"), encoding="utf-8")
    result = run("mapping", "check", str(spec))
    line = next(i for i, text in enumerate(spec.read_text().splitlines(), 1) if "value: pulse}" in text)
    assert result.exit_code == 1
    assert f"{spec}:{line}: rules[" in result.output and "unknown column 'pulse'" in result.output


def test_golden_test_shows_a_readable_diff_when_the_mapping_changes(workspace):
    spec = workspace / "site-c.yaml"
    spec.write_text(spec.read_text(encoding="utf-8").replace("{observation: heart-rate, value: 心率(次/分)}",
                                                             "{observation: respiratory-rate, value: 心率(次/分)}"),
                    encoding="utf-8")
    result = run("mapping", "test", str(spec))
    assert result.exit_code == 1
    assert "FAILED: golden/site-c/input.csv" in result.output
    assert '-  "id": "site-c-C0001-baseline-heart-rate",' in result.output
    assert '+  "id": "site-c-C0001-baseline-respiratory-rate",' in result.output


def test_translate_dry_run_prints_fhir_and_the_rejections(tmp_path):
    result = CliRunner().invoke(main, ["translate", "--dry-run", "--mapping", str(MAPPINGS / "site-b.yaml"),
                                       str(SITES / "site-b/export.ndjson")], env=KEYS, catch_exceptions=False)
    assert result.exit_code == 1  # rows were rejected
    resources = [json.loads(line) for line in result.stdout.splitlines()]
    assert {r["resourceType"] for r in resources} >= {"Patient", "Observation", "Procedure", "Provenance"}
    assert "rejected export.ndjson:16 $.visits[0].labs.immunoglobulins.IgG.unit='mmol/L' [site-b.yaml:" \
        in result.stderr
    assert "19 rows read: 15 accepted, 2 partly accepted, 2 rejected (4 rejections)" in result.stderr


def test_translate_dry_run_writes_the_fhir_to_out(tmp_path):
    out = tmp_path / "fhir.ndjson"
    result = run("translate", "--dry-run", "--out", str(out), "--mapping", str(MAPPINGS / "site-c.yaml"),
                 str(MAPPINGS / "golden/site-c/input.csv"))
    assert result.exit_code == 1 and result.stdout == ""  # rows rejected; the FHIR is in the file
    assert {json.loads(line)["resourceType"] for line in out.read_text(encoding="utf-8").splitlines()} >= {
        "Patient", "Observation", "Provenance"}


def test_check_says_when_columns_were_not_checked(workspace):
    spec = workspace / "site-c.yaml"  # a CSV without a dictionary
    result = run("mapping", "check", str(spec))
    assert result.exit_code == 0 and "columns were not checked" in result.stderr
    assert "not checked" not in run("mapping", "check", str(spec), "--sample",
                                    str(MAPPINGS / "golden/site-c/input.csv")).stderr
    assert "not checked" not in run("mapping", "check", str(workspace / "site-a.yaml")).stderr  # its dictionary
    assert "JSON field paths were not checked" in run("mapping", "check", str(workspace / "site-b.yaml")).stderr
    spec.write_text(spec.read_text(encoding="utf-8").replace("value: 语言发育商}", "value: 联系电话}"), encoding="utf-8")
    warned = run("mapping", "check", str(spec))  # a phone column read, not declared: a warning, not a failure
    assert warned.exit_code == 0 and "warning: " in warned.stderr and "'联系电话' looks like a direct identifier" \
        in warned.stderr


def test_golden_test_without_expected_files_says_to_update(workspace):
    (workspace / "golden/site-c/expected.ndjson").unlink()
    result = run("mapping", "test", str(workspace / "site-c.yaml"))
    assert result.exit_code == 1 and "FAILED: golden/site-c/input.csv" in result.output
    assert "no expected output" in result.output and "run with --update" in result.output
    assert len(result.output.splitlines()) == 2  # not a diff of every resource against nothing


def test_missing_definitions_is_quiet_once_the_protocol_is_loaded(store):
    from adapter.mapping.ingest import missing_definitions
    from adapter.mapping.spec import load_mapping
    from adapter.study.build import build_resources
    from adapter.protocol.spec import load_spec
    spec = load_mapping(MAPPINGS / "site-c.yaml")
    assert "protocol load" in (missing_definitions(spec, store) or "")
    store.load(build_resources(load_spec(ROOT / "mappings/protocol/ucmsc-cp-v1.yaml")))
    assert missing_definitions(spec, store) is None


def test_missing_definitions_names_the_site_organisation_of_an_older_protocol_load(store):
    """A store loaded before the sites were Organizations has the study but not the site's
    Organization, which every row's Provenance names: the warning says to load again."""
    from adapter.mapping.ingest import missing_definitions
    from adapter.mapping.spec import load_mapping
    from adapter.study.build import build_resources
    from adapter.protocol.spec import load_spec
    spec = load_mapping(MAPPINGS / "site-c.yaml")
    older = [r for r in build_resources(load_spec(ROOT / "mappings/protocol/ucmsc-cp-v1.yaml"))
             if r["resourceType"] not in ("Organization", "Location")]
    store.load([{k: v for k, v in r.items() if k not in ("site", "sponsor")} for r in older])
    warning = missing_definitions(spec, store) or ""
    assert "no Organization/site-c" in warning and "ResearchStudy" not in warning.split(",")[0]
    assert "protocol load" in warning and "again" in warning


def test_translate_needs_a_pseudonym_key():
    result = CliRunner().invoke(main, ["translate", "--dry-run", "--mapping", str(MAPPINGS / "site-a.yaml"),
                                       str(SITES / "site-a/export.csv")], env={"UCMSC_SITE_A_KEY": ""})
    assert result.exit_code == 2 and "set UCMSC_SITE_A_KEY or pass --key-file" in result.output


def test_ingest_refuses_a_mapping_of_another_site(tmp_path):
    result = run("ingest", "--site", "site-b", "--mapping", str(MAPPINGS / "site-c.yaml"), "--db",
                 f"sqlite:///{tmp_path}/x.db", str(SITES / "site-c/export.csv"))
    assert result.exit_code == 2 and "maps site site-c" in result.output


def test_quarantined_rows_can_be_fixed_and_ingested_again(store, tmp_path):
    db = str(store.engine.url.render_as_string(hide_password=False))
    jail = tmp_path / "quarantine"
    first = run("ingest", "--site", "site-c", "--mapping", str(MAPPINGS / "site-c.yaml"), "--db", db,
                "--no-check-references", "--workers", "1", "--quarantine", str(jail), str(SITES / "site-c/export.csv"))
    assert first.exit_code == 1
    assert "140 rows read: 135 accepted, 2 partly accepted, 3 rejected (5 rejections)" in first.stderr
    # no protocol in this store: said, not refused (--no-check-references lets the rows in)
    assert "warning: the store has no ResearchStudy/ucmsc-cp" in first.stderr
    assert f"fhir-adapter protocol load {ROOT / 'mappings/protocol/ucmsc-cp-v1.yaml'} --db" in first.stderr
    with (jail / "rejections.csv").open(encoding="utf-8") as handle:
        listed = list(csv.DictReader(handle))
    assert [r["row"] for r in listed] == ["137", "138", "139", "140", "141"]
    assert listed[0]["not_made"] == "Observation/site-c-C0001-month-18-gmfm-88-total"  # only what 130 % fed
    assert all(r["rule"].startswith("site-c.yaml:") for r in listed)
    rejected = jail / "export.rejected.csv"
    text = rejected.read_text(encoding="gb18030")  # the source's own encoding and delimiter
    assert text.count("\n") == 5  # header + 4 rows; the duplicate is not quarantined
    fixed = text.replace(";130;", ";45,0;").replace(";103;", ";45;").replace("2025/13/01", "2025/12/01")
    fixed = "\n".join(line if not line.startswith(";") else "C0099" + line for line in fixed.split("\n"))
    rejected.write_text(fixed, encoding="gb18030")
    before = table_counts(store)["resources"]
    again = run("ingest", "--site", "site-c", "--mapping", str(MAPPINGS / "site-c.yaml"), "--db", db,
                "--no-check-references", "--workers", "1", str(rejected))
    assert again.exit_code == 0, again.stderr
    assert "4 rows read: 4 accepted, 0 rejected" in again.stderr
    # the partly accepted rows' resources were already there: the same ids, unchanged, not copies
    assert " 0 unchanged" not in again.stderr
    assert table_counts(store)["resources"] > before


def test_coverage_lists_unmapped_columns_and_rules_that_never_fired(workspace):
    spec = workspace / "site-a.yaml"
    text = spec.read_text(encoding="utf-8").replace("  - {observation: heart-rate, value: hr}\n", "")
    text = text.replace("when: {visit: baseline}\n  - condition", "when: {visit: month-99}\n  - condition")
    spec.write_text(text, encoding="utf-8")
    result = run("mapping", "coverage", str(spec), str(SITES / "site-a/export.csv"))
    assert result.exit_code == 0, result.output
    assert "columns not mapped (1):\n  hr\n" in result.output
    assert "rules never fired (1):\n  site-a.yaml:40 patient\n" in result.output


def test_quarantine_files_are_the_owners_alone(tmp_path):
    """Rejected rows keep their MRNs and birth dates: folders 0700 and files 0600, whatever the umask."""
    jail = tmp_path / "out" / "site-b"
    previous = os.umask(0o022)
    try:
        result = run("ingest", "--site", "site-b", "--mapping", str(MAPPINGS / "site-b.yaml"), "--db",
                     f"sqlite:///{tmp_path}/store/x.db", "--workers", "1", "--quarantine", str(jail),
                     str(SITES / "site-b/export.ndjson"))
    finally:
        os.umask(previous)
    assert result.exit_code == 1
    files = sorted(jail.iterdir())
    assert [f.name for f in files] == ["export.rejected.ndjson", "rejections.csv"]
    assert "MRN" in files[0].read_text()
    modes = {str(p.relative_to(tmp_path)): stat.S_IMODE(p.stat().st_mode)
             for p in (tmp_path / "out", jail, *files, tmp_path / "store", tmp_path / "store/x.db")}
    assert modes == {"out": 0o700, "out/site-b": 0o700, "out/site-b/export.rejected.ndjson": 0o600,
                     "out/site-b/rejections.csv": 0o600, "store": 0o700, "store/x.db": 0o600}


def test_translate_says_what_a_file_of_nul_bytes_is_and_fails(tmp_path):
    """It read "0 rows read", exit 0: a file of NUL bytes parses as one empty header."""
    export = tmp_path / "export.csv"
    export.write_bytes(b"\x00" * 4096)
    result = run("translate", "--dry-run", "--mapping", str(MAPPINGS / "site-a.yaml"), str(export))
    assert result.exit_code == 1
    assert "export.csv:1: the file holds NUL bytes" in result.stderr
    assert "1 rows read: 0 accepted, 1 rejected" in result.stderr


def test_a_truncated_export_rejects_its_cut_off_row(tmp_path):
    export = tmp_path / "export.csv"
    export.write_bytes((SITES / "site-a" / "export.csv").read_bytes()[:20_000])  # cut in row 128
    result = run("translate", "--dry-run", "--mapping", str(MAPPINGS / "site-a.yaml"), str(export))
    assert result.exit_code == 1 and "partly accepted" not in result.stderr
    assert "export.csv:128: the last row is cut off: 53 of 59 fields and no line end" in result.stderr
