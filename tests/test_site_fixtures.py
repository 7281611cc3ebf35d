"""The four synthetic sites' exports (fixtures for the site mappings): reproducible, plausible,
and bad exactly where expected-rejections.csv says."""
from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from collections import Counter

import pytest

from conftest import ROOT

SITES = ROOT / "fixtures" / "sites"
MAS = {"0", "1", "1+", "2", "3", "4"}


def expected(site: str) -> dict[int, dict[str, str]]:
    with (SITES / site / "expected-rejections.csv").open(encoding="utf-8") as handle:
        return {int(r["row"]): r for r in csv.DictReader(handle)}


def test_regenerating_gives_the_committed_bytes(tmp_path):
    subprocess.run([sys.executable, str(SITES / "generate.py"), str(tmp_path)], check=True)
    for path in sorted(SITES.glob("site-*/*")):
        assert (tmp_path / path.relative_to(SITES)).read_bytes() == path.read_bytes(), path


def test_site_a_redcap_rows_are_plausible_except_the_bad_ones():
    bad = expected("site-a")
    with (SITES / "site-a" / "export.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    children, events = set(), Counter()
    for line, row in enumerate(rows, 2):
        if line in bad:
            column = bad[line]["column"]
            assert row[column] == bad[line]["value"]
            continue
        children.add(row["record_id"])
        events[row["redcap_event_name"]] += row["redcap_repeat_instrument"] == ""
        if row["barthel"]:
            assert int(row["barthel"]) % 5 == 0 and 0 <= int(row["barthel"]) <= 100
            assert all(0 <= float(row[f"gmfm_{d}"]) <= 100 for d in "abcde")
            assert {row[k] for k in ("mas_hams_l", "mas_hams_r", "mas_gast_l", "mas_gast_r")} <= MAS
            assert all(0 <= int(row[k]) <= 5 for k in ("mrc_quad_l", "mrc_quad_r"))
        if row["inj_route"]:
            assert row["inj_route"] == ("2" if row["redcap_event_name"] == "injection_4_arm_1" else "1")
    assert len(children) == 20
    assert events["screening_arm_1"] == 20 and events["injection_4_arm_1"] == 20 and events["month_12_arm_1"] == 20
    assert len(bad) == 5


def test_site_b_documents_use_their_own_units_and_dates():
    bad = expected("site-b")
    lines = (SITES / "site-b" / "export.ndjson").read_text(encoding="utf-8").splitlines()
    good = [json.loads(x) for n, x in enumerate(lines, 1) if n not in bad]
    assert len(good) == 15 and len(bad) == 4
    for doc in good:
        assert [v["kind"] for v in doc["visits"]].count("infusion") == 4
        for visit in doc["visits"]:
            day, month, _ = visit["date"].split("/")
            assert 1 <= int(day) <= 31 and 1 <= int(month) <= 12
            for lab in (visit.get("labs") or {}).get("immunoglobulins", {}).values():
                assert lab["unit"] == "mg/dL" and 40 <= lab["value"] <= 1500  # IgA, IgM ~50-250; IgG ~700-1400
            for lab in (visit.get("labs") or {}).get("lymphocytes", {}).values():
                assert lab["unit"] == "10^9/L"


def test_site_c_is_gb18030_semicolons_and_decimal_commas():
    raw = (SITES / "site-c" / "export.csv").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    rows = list(csv.DictReader(io.StringIO(raw.decode("gb18030")), delimiter=";"))
    bad = expected("site-c")
    assert len({r["患者编号"] for n, r in enumerate(rows, 2) if n not in bad}) == 15
    weights = [r["体重(kg)"] for r in rows]
    assert all("," in w and "." not in w for w in weights)
    assert bad[min(bad)]["column"] == "GMFM-88总分(%)"


def test_site_d_is_longitudinal_per_arm_with_items_doses_per_kg_and_no_mrn():
    bad = expected("site-d")
    with (SITES / "site-d" / "export.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert "mrn" not in rows[0] and "redcap_data_access_group" in rows[0]
    dictionary = (SITES / "site-d" / "dictionary.csv").read_text(encoding="utf-8")
    assert "rand_arm,enrolment" in dictionary and "gmfm_88,gmfm88" in dictionary
    arms, children, not_tested = {}, set(), 0
    for line, row in enumerate(rows, 2):
        if line in bad:
            column = bad[line]["column"]
            if column.startswith("weight_kg ("):  # the lookup found no weight: the dose row has none
                assert row["weight_kg"] == "" and row["adm_dose_per_kg"] and row["visit_date"] in column
            else:
                assert row[column] == bad[line]["value"]
            continue
        event, record = row["redcap_event_name"], row["record_id"]
        children.add(record)
        if event.startswith("screening_"):
            arms[record] = row["rand_arm"]
            assert row["weight_kg"] and row["child_name"]
        assert event.endswith(f"_arm_{arms[record]}")  # REDCap names a longitudinal project's events per arm
        if event.startswith("dose_") and not row["redcap_repeat_instrument"]:
            assert not row["weight_kg"] and 0.9 <= float(row["adm_dose_per_kg"]) <= 1.1
            assert row["adm_route"] == ("3" if arms[record] == "2" else "2" if event.startswith("dose_4") else "1")
        if row["gmfm_1"]:
            items = [row[f"gmfm_{n}"] for n in range(1, 89)]
            assert set(items) <= {"0", "1", "2", "3", "NT"}
            not_tested += "NT" in items
            assert row["mas_elbow_l"] in MAS and row["mas_elbow_r"] in MAS
    assert len(children) == 12 and Counter(arms.values()) == {"1": 8, "2": 4}
    assert not_tested == 2 and len(bad) == 6
    assert Counter(e["outcome"] for e in bad.values()) == {"partly": 3, "rejected": 3}


def test_the_generator_takes_help_as_help_not_as_a_folder(tmp_path):
    """`generate.py --help` wrote the four sites into a folder named "--help" (one was committed)."""
    shown = subprocess.run([sys.executable, str(SITES / "generate.py"), "--help"], cwd=tmp_path,
                           capture_output=True, text=True, check=True)
    assert "usage:" in shown.stdout and list(tmp_path.iterdir()) == []
    assert not (ROOT / "--help").exists()
