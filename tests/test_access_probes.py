# ruff: noqa: F811  (the gateway fixture is imported and then named by the tests)
"""Probes of the access control through routes tests/test_authorisation.py does not cover:
chained and reverse-chained (_has) searches, compartments, history, conditional writes, patch,
batch, exports. Each defect found is a test here (on SQLite and PostgreSQL)."""
from __future__ import annotations

import json
import time


from conftest import table_counts
from test_authorisation import export_manifest, fhir, refused, session
from test_authorisation import gateway  # noqa: F401  (a fixture, used by name)
from test_auth_token import Served

WRITE = {"Content-Type": "application/fhir+json"}


def test_a_chain_does_not_tell_site_a_about_site_bs_resource_it_points_to(gateway: Served) -> None:
    # Site A may write a reference to an id that does not exist yet; once site B creates that
    # id, a chained search on it must not match through B's resource.
    base = fhir(gateway)
    site_a, site_b = session(gateway, "site-a-ehr"), session(gateway, "site-b-ehr")
    made = site_a.put(f"{base}/Observation/site-a-dangle", json={
        "resourceType": "Observation", "id": "site-a-dangle", "status": "final", "code": {"text": "x"},
        "subject": {"reference": "Patient/site-b-2"}}, headers=WRITE, timeout=30)
    assert made.status_code == 201, made.text
    assert site_b.put(f"{base}/Patient/site-b-2", json={"resourceType": "Patient", "id": "site-b-2", "birthDate": "1970-01-01"},
                      headers=WRITE, timeout=30).status_code == 201
    found = site_a.get(f"{base}/Observation?subject:Patient.birthdate=1970-01-01", timeout=30).json()
    assert found["total"] == 0 and "entry" not in found, found
    counted = site_a.get(f"{base}/Observation?subject:Patient.birthdate=1970-01-01&_summary=count", timeout=30)
    assert counted.json()["total"] == 0
    # ... nor through _has (B's resources referring to an id site A fills later)
    assert session(gateway, "centre").get(
        f"{base}/Observation?subject:Patient.birthdate=1970-01-01", timeout=30).json()["total"] == 1
    # Site A's own chains still work
    own = site_a.get(f"{base}/Observation?subject:Patient.gender=female&_summary=count", timeout=30).json()
    assert own["total"] == 12


def test_a_has_search_does_not_count_another_sites_referring_resources(gateway: Served) -> None:
    base = fhir(gateway)
    site_a, site_b = session(gateway, "site-a-ehr"), session(gateway, "site-b-ehr")
    # B writes an Observation on an id (Patient/site-a-9) that site A then creates
    assert site_b.put(f"{base}/Observation/site-b-dangle", json={
        "resourceType": "Observation", "id": "site-b-dangle", "status": "cancelled", "code": {"text": "secret"},
        "subject": {"reference": "Patient/site-a-9"}}, headers=WRITE, timeout=30).status_code == 201
    assert site_a.put(f"{base}/Patient/site-a-9", json={"resourceType": "Patient", "id": "site-a-9"},
                      headers=WRITE, timeout=30).status_code == 201
    found = site_a.get(f"{base}/Patient?_has:Observation:subject:status=cancelled", timeout=30).json()
    assert found["total"] == 0, found
    assert site_a.get(f"{base}/Patient?_has:Observation:subject:status=final", timeout=30).json()["total"] == 1


def test_chained_and_has_searches_need_the_search_scope_of_the_type_they_go_through(gateway: Served) -> None:
    base = fhir(gateway)
    patients = session(gateway, "patients-only", "system/Patient.rs")
    # Without Observation.s, whether a patient has final Observations is not the client's to know
    refused(patients.get(f"{base}/Patient?_has:Observation:subject:status=final", timeout=30),
            403, "system/Observation.s")
    observations = session(gateway, "site-a-ehr", "system/Observation.rs")
    refused(observations.get(f"{base}/Observation?subject:Patient.gender=female", timeout=30),
            403, "system/Patient.s")
    refused(observations.get(f"{base}/Observation?subject:Patient._has:Observation:subject:status=final",
                             timeout=30), 403, "system/Patient.s")
    both = session(gateway, "site-a-ehr", "system/Observation.rs system/Patient.rs")
    assert both.get(f"{base}/Observation?subject:Patient.gender=female&_summary=count",
                    timeout=30).json()["total"] == 12


def test_notes_do_not_count_another_sites_resources_pointing_at_a_sites_patient(gateway: Served) -> None:
    base = fhir(gateway)
    site_a, site_b = session(gateway, "site-a-ehr"), session(gateway, "site-b-ehr")
    # B writes two Observations on an id (Patient/site-a-9) that site A then creates
    for n in (1, 2):
        assert site_b.put(f"{base}/Observation/site-b-dangle-{n}", json={
            "resourceType": "Observation", "id": f"site-b-dangle-{n}", "status": "final", "code": {"text": "x"},
            "subject": {"reference": "Patient/site-a-9"}}, headers=WRITE, timeout=30).status_code == 201
    assert site_a.put(f"{base}/Patient/site-a-9", json={"resourceType": "Patient", "id": "site-a-9"},
                      headers=WRITE, timeout=30).status_code == 201
    revincluded = site_a.get(f"{base}/Patient?_id=site-a-9&_revinclude=Observation:subject", timeout=30).json()
    everything = site_a.get(f"{base}/Patient/site-a-9/$everything", timeout=30).json()
    for bundle in (revincluded, everything):
        assert [e["resource"]["resourceType"] for e in bundle["entry"]] == ["Patient"], bundle  # no note


def test_probes_that_hold(gateway: Served) -> None:
    """Routes probed that already hold: compartments, history, conditional writes, patch, batch,
    If-None-Exist, another site's Group export, the audit trail."""
    base = fhir(gateway)
    site_a = session(gateway, "site-a-ehr")
    before = table_counts(gateway.store)
    for url in ("AuditEvent", "?_type=AuditEvent", "AuditEvent/_history"):
        refused(site_a.get(f"{base}/{url}", timeout=30), 403)
    for url in ("Patient/b1/Observation", "Patient/b1/*", "Patient/b1/_history", "Observation/b-obs-0/$validate"):
        refused(site_a.get(f"{base}/{url}", timeout=30), 404, "is not known")  # as an unknown id
    for url in ("Observation/_history", "_history"):
        entries = site_a.get(f"{base}/{url}", timeout=30).json().get("entry", [])
        assert not any(e["resource"]["id"].startswith("b") for e in entries if "resource" in e)
    assert site_a.get(f"{base}/Patient?_has:Observation:subject:_id=b-obs-0", timeout=30).json()["total"] == 0
    assert site_a.get(f"{base}/?_type=Observation&_summary=count", timeout=30).json()["total"] == 12
    assert site_a.get(f"{base}/Observation?_total=accurate", timeout=30).json()["total"] == 12
    assert site_a.delete(f"{base}/Observation?_id=b-obs-1", timeout=30).status_code == 204  # matches nothing
    patch = [{"op": "replace", "path": "/status", "value": "amended"}]
    refused(site_a.patch(f"{base}/Observation/b-obs-2", data=json.dumps(patch),
                         headers={"Content-Type": "application/json-patch+json"}, timeout=30), 404)
    relabel = [{"op": "replace", "path": "/meta/security/0/code", "value": "site-b"}]
    refused(site_a.patch(f"{base}/Observation/a-obs-2", data=json.dumps(relabel),
                         headers={"Content-Type": "application/json-patch+json"}, timeout=30), 403, "meta.security")
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": "Patient/b1"}},
        {"request": {"method": "GET", "url": "Observation?subject=Patient/b1"}}]}
    answered = site_a.post(base, json=batch, headers=WRITE, timeout=30).json()["entry"]
    assert answered[0]["response"]["status"] == "404"
    assert answered[1]["resource"]["total"] == 0
    assert table_counts(gateway.store) == before
    g = {"resourceType": "Group", "id": "site-b-gb", "type": "person", "actual": True,
         "member": [{"entity": {"reference": "Patient/b1"}}]}
    assert session(gateway, "site-b-ehr").put(f"{base}/Group/site-b-gb", json=g, headers=WRITE, timeout=30).status_code == 201
    refused(site_a.get(f"{base}/Group/site-b-gb/$export", headers={"Prefer": "respond-async"}, timeout=30), 404)


def test_an_export_file_is_not_served_to_a_token_of_the_same_client_without_its_types_scope(
        gateway: Served) -> None:
    base = fhir(gateway)
    wide = session(gateway, "site-a-ehr", "system/Patient.rs system/Observation.rs")
    started = wide.get(f"{base}/$export", headers={"Prefer": "respond-async"}, timeout=30)
    assert started.status_code == 202, started.text
    files = {o["type"]: o["url"] for o in export_manifest(wide, started.headers["Content-Location"])["output"]}
    narrow = session(gateway, "site-a-ehr", "system/Patient.rs")  # a later token, Observation not granted
    assert narrow.get(files["Patient"], timeout=30).status_code == 200
    refused(narrow.get(files["Observation"], timeout=30), 403, "Observation")
    assert wide.get(files["Observation"], timeout=30).status_code == 200


def test_a_has_search_on_a_shared_definition_does_not_tell_about_another_sites_subjects(gateway: Served) -> None:
    # The protocol (ResearchStudy) is everyone's and every site's ResearchSubjects point at it:
    # a _has through them must see the asking site's ResearchSubjects only.
    base = fhir(gateway)
    centre, site_a, site_b = (session(gateway, c) for c in ("centre", "site-a-ehr", "site-b-ehr"))
    assert centre.put(f"{base}/ResearchStudy/study", json={"resourceType": "ResearchStudy", "id": "study",
                                                            "status": "active"}, headers=WRITE, timeout=30).ok
    assert site_b.put(f"{base}/ResearchSubject/site-b-rs1", json={
        "resourceType": "ResearchSubject", "id": "site-b-rs1", "status": "withdrawn",
        "study": {"reference": "ResearchStudy/study"}, "individual": {"reference": "Patient/b1"}},
        headers=WRITE, timeout=30).status_code == 201
    for query in ("_has:ResearchSubject:study:status=withdrawn",
                  "_has:ResearchSubject:study:individual=Patient/b1",
                  "_has:ResearchSubject:study:individual:Patient.gender=female"):
        found = site_a.get(f"{base}/ResearchStudy?{query}", timeout=30).json()
        assert found["total"] == 0, (query, found)
        assert centre.get(f"{base}/ResearchStudy?{query}", timeout=30).json()["total"] == 1


def test_site_a_does_not_learn_that_site_bs_resource_was_deleted_or_how_many_versions_it_has(
        gateway: Served) -> None:
    base = fhir(gateway)
    site_a = session(gateway, "site-a-ehr")
    assert session(gateway, "site-b-ehr").delete(f"{base}/Observation/b-obs-0", timeout=30).status_code == 204

    def same(known: str, unknown: str) -> None:  # another site's answers as an id never stored, word for word
        theirs, never = site_a.get(f"{base}/{known}", timeout=30), site_a.get(f"{base}/{unknown}", timeout=30)
        assert (theirs.status_code, theirs.text.replace("b-obs-0", "X").replace("b-obs-1", "X")) == \
            (never.status_code, never.text.replace("never", "X")) and never.status_code == 404, (theirs.text, never.text)

    same("Observation/b-obs-0", "Observation/never")  # was 410 "deleted", then 403
    same("Observation/b-obs-0/_history/2", "Observation/never/_history/2")  # was 410
    same("Observation/b-obs-1/_history/9", "Observation/never/_history/9")
    same("Observation/b-obs-1/_history", "Observation/never/_history")
    transaction = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "GET", "url": "Observation/b-obs-0"}}]}
    refused(site_a.post(base, json=transaction, headers=WRITE, timeout=30), 404, "is not known")
    # Site A's own: 410 and 404 as before; an id never stored: 404
    assert site_a.delete(f"{base}/Observation/a-obs-0", timeout=30).status_code == 204
    assert site_a.get(f"{base}/Observation/a-obs-0", timeout=30).status_code == 410
    assert site_a.get(f"{base}/Observation/a-obs-1/_history/9", timeout=30).status_code == 404
    assert site_a.get(f"{base}/Observation/never", timeout=30).status_code == 404


def test_an_export_type_filter_chain_is_held_to_the_scopes_and_site(gateway: Served) -> None:
    base = fhir(gateway)
    kick = {"Prefer": "respond-async"}
    patients = session(gateway, "patients-only", "system/Patient.rs")
    answer = patients.get(f"{base}/$export?_type=Patient&_typeFilter=Patient%3F_has:Observation:subject:status=final",
                          headers=kick, timeout=30)
    if answer.status_code == 202:  # refused when the job runs: the job ends in an error, with no file
        for _ in range(200):
            polled = patients.get(answer.headers["Content-Location"], timeout=30)
            if polled.status_code != 202:
                break
            time.sleep(0.05)
        assert polled.status_code != 200 or polled.json()["output"] == [], polled.text
    else:
        refused(answer, 403, "system/Observation.s")
