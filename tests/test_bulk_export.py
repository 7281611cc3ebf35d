"""Bulk Data export (IG v2) over real HTTP: kick-off, polling, manifest, NDJSON files, _type,
_since, _typeFilter, Patient and Group level, cancel, and jobs that survive a restart."""
from __future__ import annotations

import json
import pathlib
import time

import pytest
import requests

from r4schema import assert_r4

from adapter.exchange.export import ExportRequest, _write_json
from adapter.gateway.app import create_app

ASYNC = {"Prefer": "respond-async", "Accept": "application/fhir+json"}


def obs(oid, pid, code="29463-7"):
    return {"resourceType": "Observation", "id": oid, "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]}, "subject": {"reference": f"Patient/{pid}"}}


@pytest.fixture
def data(store):
    store.load([{"resourceType": "Patient", "id": f"p{i}"} for i in range(3)]
               + [obs(f"o{i}", f"p{i % 3}", "8310-5" if i % 4 == 0 else "29463-7") for i in range(25)]
               + [{"resourceType": "Group", "id": "g1", "type": "person", "actual": True,
                   "member": [{"entity": {"reference": "Patient/p1"}}]},
                  {"resourceType": "CodeSystem", "id": "cs1", "status": "active", "content": "not-present"}])
    return store


def run_export(url: str, **params) -> dict:
    kick = requests.get(url, params=params, headers=ASYNC, timeout=30)
    assert kick.status_code == 202, kick.text
    status_url = kick.headers["Content-Location"]
    for _ in range(300):
        status = requests.get(status_url, timeout=30)
        if status.status_code == 200:
            manifest = status.json()
            manifest["_status_url"] = status_url
            return manifest
        assert status.status_code == 202 and "X-Progress" in status.headers
        time.sleep(0.05)
    raise AssertionError("export did not finish")


def files(manifest: dict) -> dict[str, list[dict]]:
    out = {}
    for item in manifest["output"]:
        r = requests.get(item["url"], timeout=30)
        assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/fhir+ndjson")
        out[item["type"]] = [json.loads(line) for line in r.text.splitlines()]
        assert len(out[item["type"]]) == item["count"]
    return out


def test_system_export(live, data):
    manifest = run_export(f"{live}/$export")
    assert manifest["requiresAccessToken"] is False and manifest["transactionTime"] and manifest["error"] == []
    got = files(manifest)
    assert {t: len(rs) for t, rs in got.items()} == {"Patient": 3, "Observation": 25, "Group": 1, "CodeSystem": 1}
    assert sorted(r["id"] for r in got["Observation"]) == sorted(f"o{i}" for i in range(25))


def test_type_since_and_type_filter(live, data):
    got = files(run_export(f"{live}/$export", _type="Observation,Patient"))
    assert set(got) == {"Observation", "Patient"}
    assert files(run_export(f"{live}/$export", _since="2999-01-01T00:00:00Z")) == {}
    got = files(run_export(f"{live}/$export", _type="Observation",
                           _typeFilter="Observation?code=http://loinc.org|8310-5"))
    assert sorted(r["id"] for r in got["Observation"]) == ["o0", "o12", "o16", "o20", "o24", "o4", "o8"]


def test_since_lists_what_was_deleted_since_as_delete_bundles(live, data):
    """Bulk Data v2: with _since, the manifest's `deleted` files hold transaction Bundles of
    DELETE entries for what was deleted since, and nothing deleted before or made again."""
    data.delete("Observation", "o1")
    since = requests.get(f"{live}/Observation/o1/_history", timeout=30).json()["entry"][0]["response"]["lastModified"]
    time.sleep(0.01)
    data.delete("Observation", "o2")
    data.delete("Observation", "o3")
    data.update(obs("o3", "p0", "29463-7"))  # made again: no deletion
    manifest = run_export(f"{live}/$export", _type="Observation", _since=since)
    assert [(d["type"], d["count"]) for d in manifest["deleted"]] == [("Bundle", 2)]
    lines = requests.get(manifest["deleted"][0]["url"], timeout=30).text.splitlines()
    bundles = [json.loads(line) for line in lines]
    for bundle in bundles:
        assert_r4(bundle)
        assert bundle["type"] == "transaction"
    urls = sorted(e["request"]["url"] for b in bundles for e in b["entry"])
    assert urls == ["Observation/o1", "Observation/o2"]  # o3 was made again
    assert {e["request"]["method"] for b in bundles for e in b["entry"]} == {"DELETE"}
    assert run_export(f"{live}/$export", _type="Observation")["deleted"] == []  # without _since, none


def test_patient_and_group_level(live, data):
    got = files(run_export(f"{live}/Patient/$export"))
    assert "CodeSystem" not in got and len(got["Observation"]) == 25 and len(got["Patient"]) == 3
    got = files(run_export(f"{live}/Group/g1/$export"))
    assert [r["id"] for r in got["Patient"]] == ["p1"]
    assert sorted(r["id"] for r in got["Observation"]) == sorted(f"o{i}" for i in range(25) if i % 3 == 1)
    assert requests.get(f"{live}/Group/nobody/$export", headers=ASYNC, timeout=30).status_code == 404


def test_kick_off_errors(live, data):
    assert requests.get(f"{live}/$export", timeout=30).status_code == 400  # no Prefer: respond-async
    for params in ({"_type": "Colour"}, {"_outputFormat": "text/csv"}, {"_since": "yesterday"},
                   {"patient": "p1"}, {"_typeFilter": "Observation?colour=red"}):
        r = requests.get(f"{live}/$export", params=params, headers=ASYNC, timeout=30)
        assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome", params
    assert requests.get(f"{live}/$export-status/unknown", timeout=30).status_code == 404


def test_delete_cancels_and_removes_the_files(live, data, app):
    manifest = run_export(f"{live}/$export")
    job = manifest["_status_url"].rsplit("/", 1)[1]
    directory = app.config["EXPORT_DIR"]
    assert any(p.suffix == ".ndjson" for p in pathlib.Path(directory, job).iterdir())
    assert requests.delete(manifest["_status_url"], timeout=30).status_code == 202
    assert requests.get(manifest["_status_url"], timeout=30).status_code == 404
    assert requests.get(manifest["output"][0]["url"], timeout=30).status_code == 404
    assert not any(p.suffix == ".ndjson" for p in pathlib.Path(directory, job).glob("*"))
    assert requests.delete(manifest["_status_url"], timeout=30).status_code == 404


def test_an_unfinished_job_is_resumed_when_the_gateway_starts(db_url, data, tmp_path):
    """A job left 'running' by a process that died (no lock held) is run again by the next app."""
    root = tmp_path / "exports"
    (root / "job-1").mkdir(parents=True)
    (root / "job-1" / "Observation.ndjson.part").write_text("half a file")
    request = ExportRequest("system", ("Observation",), None, (), "http://x/fhir/$export")
    _write_json(root / "job-1" / "job.json", {"id": "job-1", "status": "running", "request": request.__dict__,
                                              "transactionTime": "2026-01-01T00:00:00Z", "progress": "",
                                              "output": [], "error": None})
    app = create_app({"DATABASE_URL": db_url, "EXPORT_DIR": str(root)})
    try:
        client = app.test_client()
        for _ in range(200):
            status = client.get("/fhir/$export-status/job-1")
            if status.status_code == 200:
                break
            time.sleep(0.05)
        assert status.status_code == 200
        lines = client.get(status.get_json()["output"][0]["url"].replace("http://localhost", "")).get_data(as_text=True)
        assert len(lines.splitlines()) == 25 and "half a file" not in lines
    finally:
        app.extensions["fhir_store"].close()


def test_capability_statement_lists_export(client):
    rest = client.get("/fhir/metadata").get_json()["rest"][0]
    assert {"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"} \
        in rest["operation"]
    group = next(r for r in rest["resource"] if r["type"] == "Group")
    assert any(o["name"] == "export" for o in group["operation"])


def test_site_cohort_groups_export_their_children(live, store):
    from adapter.exchange.cohorts import build_cohorts
    from adapter.mapping.ingest import ingest
    from adapter.mapping.spec import load_mapping
    from conftest import ROOT
    from adapter.fhir.sites import SITE_SYSTEM
    spec = load_mapping(ROOT / "mappings/sites/site-c.yaml")
    ingest(spec, [ROOT / "fixtures/sites/site-c/export.csv"], store, b"cohort-test-key-0123456789")
    made = build_cohorts(store, spec.catalogue.base, [("site-c", "Site C"), ("site-a", "A")])
    groups = {g["id"]: g for g in made if g["resourceType"] == "Group"}
    assert set(groups) == {"ucmsc-cp-arm-1-cohort", "site-c-cohort"}  # no site A children here
    # the site's own study, part of the protocol's, enrolling its cohort, labelled as the site's
    study = store.read("ResearchStudy", "site-c-study")
    assert json.loads(study.data)["partOf"] == [{"reference": "ResearchStudy/ucmsc-cp"}]
    assert json.loads(study.data)["enrollment"] == [{"reference": "Group/site-c-cohort"}]
    assert {"system": SITE_SYSTEM, "code": "site-c"} in json.loads(study.data)["meta"]["security"]
    assert groups["site-c-cohort"]["quantity"] == 15
    got = files(run_export(f"{live}/Group/site-c-cohort/$export", _type="Patient,Procedure"))
    assert len(got["Patient"]) == 15 and len(got["Procedure"]) == 60


def test_post_kick_off_with_parameters(live, data):
    body = {"resourceType": "Parameters", "parameter": [{"name": "_type", "valueString": "Patient"}]}
    kick = requests.post(f"{live}/$export", json=body, headers={**ASYNC, "Content-Type": "application/fhir+json"},
                         timeout=30)
    assert kick.status_code == 202
    bad = requests.post(f"{live}/$export", json={"resourceType": "Parameters", "parameter": ["x"]},
                        headers={**ASYNC, "Content-Type": "application/fhir+json"}, timeout=30)
    assert bad.status_code == 400 and bad.json()["resourceType"] == "OperationOutcome"


def test_a_type_asked_for_many_times_is_exported_once(live, data, app):
    manifest = run_export(f"{live}/$export", _type=",".join(["Patient"] * 300))
    assert [o["type"] for o in manifest["output"]] == ["Patient"]
    job = json.loads(pathlib.Path(app.config["EXPORT_DIR"], manifest["_status_url"].rsplit("/", 1)[1],
                                  "job.json").read_text())
    assert job["request"]["types"] == ["Patient"]


def test_a_client_has_at_most_its_share_of_unfinished_jobs(live, data, app):
    import fcntl
    app.config["EXPORT_MAX_JOBS"] = 1
    root = pathlib.Path(app.config["EXPORT_DIR"])
    (root / "job-busy").mkdir(parents=True)
    request = ExportRequest("system", ("Observation",), None, (), f"{live}/$export")
    _write_json(root / "job-busy" / "job.json", {
        "id": "job-busy", "status": "running", "request": request.__dict__, "client": "127.0.0.1",
        "transactionTime": "2026-01-01T00:00:00Z", "progress": "", "output": [], "error": None})
    with open(root / "job-busy" / "lock", "a") as lock:  # its runner holds the lock: it is running
        fcntl.flock(lock, fcntl.LOCK_EX)
        refused = requests.get(f"{live}/$export", headers=ASYNC, timeout=30)
        assert refused.status_code == 429 and refused.headers["Retry-After"]
        assert refused.json()["issue"][0]["code"] == "throttled"
        assert requests.delete(f"{live}/$export-status/job-busy", timeout=30).status_code == 202
    assert run_export(f"{live}/$export")["output"]  # the cancelled job no longer counts


def test_finished_jobs_and_their_files_expire(live, data, app):
    from email.utils import parsedate_to_datetime
    from datetime import datetime, timedelta, timezone
    manifest = run_export(f"{live}/$export", _type="Patient")
    status = requests.get(manifest["_status_url"], timeout=30)
    expires = parsedate_to_datetime(status.headers["Expires"])
    assert timedelta(hours=23) < expires - datetime.now(timezone.utc) <= timedelta(hours=24)
    job_dir = pathlib.Path(app.config["EXPORT_DIR"], manifest["_status_url"].rsplit("/", 1)[1])
    assert job_dir.exists()
    app.config["EXPORT_RETENTION"] = 0
    assert requests.get(manifest["output"][0]["url"], timeout=30).status_code == 404
    assert requests.get(manifest["_status_url"], timeout=30).status_code == 404
    assert not job_dir.exists()


def test_a_job_file_without_status_does_not_break_bulk_requests(live, data, app):
    root = pathlib.Path(app.config["EXPORT_DIR"])
    (root / "odd").mkdir(parents=True)
    (root / "odd" / "job.json").write_text('{"id": "elsewhere"}')
    assert run_export(f"{live}/$export", _type="Patient")["output"]
    assert (root / "odd").exists()
