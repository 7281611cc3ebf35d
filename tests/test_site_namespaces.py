# ruff: noqa: F811  (the gateway fixture is imported and then named by the tests)
"""Sites and their ids (issue 25, item 4), over real HTTP with real tokens on SQLite and
PostgreSQL: a site's client creates by PUT only ids in its own namespace, so it cannot take
another site's; another site's resource is answered exactly as an id never stored (ids carry
record numbers: a site must not count another's enrolment); a site's own ResearchStudy is its
data, not a definition every site reads."""
from __future__ import annotations

import json
import pathlib
import re
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from adapter.fhir.sites import with_site
from adapter.pages import COOKIE
from adapter.study.build import build_resources
from adapter.protocol.spec import SPECS
from adapter.protocol.spec import load_spec
from conftest import table_counts
from adapter.store.clients import ClientRecord
from auth_helpers import RSA_KEY, public_jwks
from test_auth_token import Served, make_auth_app
from test_authorisation import CLIENTS, _data, export_manifest, fhir, refused, session, token
from test_authorisation import gateway  # noqa: F401  (a fixture, used by name)

WRITE = {"Content-Type": "application/fhir+json"}
PERIOD = "periodStart=2000-01-01&periodEnd=2100-12-31"


def _patient(rid: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": rid}


def test_a_site_cannot_squat_another_sites_ids(gateway: Served) -> None:
    base = fhir(gateway)
    site_a, site_b = session(gateway, "site-a-ehr"), session(gateway, "site-b-ehr")
    before = table_counts(gateway.store)
    group = {"resourceType": "Group", "id": "site-b-cohort-2", "type": "person", "actual": True}
    observation = {"resourceType": "Observation", "id": "site-b-B0018-baseline-weight", "status": "final",
                   "code": {"text": "weight"}, "subject": {"reference": "Patient/a1"}}
    for body in (_patient("site-b-B0018"), group, observation):
        url = f"{base}/{body['resourceType']}/{body['id']}"
        refused(site_a.put(url, json=body, headers=WRITE, timeout=30), 403, "namespace")  # was 201
    conditional = site_a.put(f"{base}/Patient?identifier=urn:x|1", json=_patient("site-b-B0019"), headers=WRITE,
                             timeout=30)
    refused(conditional, 403, "namespace")
    transaction = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "PUT", "url": "Patient/site-b-B0020"}, "resource": _patient("site-b-B0020")}]}
    refused(site_a.post(base, json=transaction, headers=WRITE, timeout=30), 403, "namespace")
    assert table_counts(gateway.store) == before
    for rid in ("site-b-B0018", "site-b-B0019", "site-b-B0020"):  # site B's ids stay site B's to make
        assert site_b.put(f"{base}/Patient/{rid}", json=_patient(rid), headers=WRITE, timeout=30).status_code == 201
    assert site_b.put(f"{base}/Group/site-b-cohort-2", json=group, headers=WRITE, timeout=30).status_code == 201


def test_what_a_site_may_create_by_put(gateway: Served) -> None:
    base = fhir(gateway)
    site_a = session(gateway, "site-a-ehr")
    for rid in ("site-a-A0042", "ucmsc-cp-arm-1-site-a-A0042"):  # its namespace, at the start or as $apply makes
        assert site_a.put(f"{base}/Patient/{rid}", json=_patient(rid), headers=WRITE, timeout=30).status_code == 201
    made = site_a.post(f"{base}/Patient", json={"resourceType": "Patient"}, headers=WRITE, timeout=30).json()
    assert site_a.put(f"{base}/Patient/{made['id']}", json={**made, "gender": "other"}, headers=WRITE,
                      timeout=30).status_code == 200  # its own, whatever the id: updated
    assert site_a.put(f"{base}/Patient/a1", json={**_patient("a1"), "gender": "male"}, headers=WRITE,
                      timeout=30).status_code == 200
    conditional = site_a.put(f"{base}/Patient?identifier=urn:x|7", json={"resourceType": "Patient"}, headers=WRITE,
                             timeout=30)
    assert conditional.status_code == 201  # no id of its choosing: the server's
    transaction = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "PUT", "url": "Patient?identifier=urn:x|8"}, "resource": {"resourceType": "Patient"}}]}
    assert site_a.post(base, json=transaction, headers=WRITE, timeout=30).status_code == 200


def _same(site_a: requests.Session, known: requests.Response, unknown: requests.Response, *ids: str) -> None:
    """Two answers alike but for the ids asked about (and a generated Bundle's id and time)."""
    def plain(answer: requests.Response) -> tuple[int, str]:
        text = answer.text
        for rid in ids:
            text = text.replace(rid, "ID")
        return answer.status_code, re.sub(r'"(id|lastUpdated)":"[^"]*"', "", text)
    assert plain(known) == plain(unknown), (known.text[:300], unknown.text[:300])


@pytest.fixture
def checked(db_url: str, tmp_path: pathlib.Path) -> Iterator[Served]:
    """test_authorisation's gateway with referential integrity on, as deployed."""
    served = Served(make_auth_app(db_url, tmp_path, REFERENTIAL_INTEGRITY=True))
    for name, (site, scope) in CLIENTS.items():
        served.store.add_client(ClientRecord(name, scope, json.dumps(public_jwks(RSA_KEY)), site=site))
    served.store.load(_data())
    yield served
    served.close()


def test_another_sites_resource_is_answered_as_an_unknown_one(checked: Served) -> None:
    """b1 and b-obs-0 exist at site B; b7 and b-obs-7 were never stored: site A cannot tell them
    apart on any route (each answered 403 for B's and 404 for the unknown one)."""
    base = fhir(checked)
    checked.store.load(build_resources(load_spec(SPECS / "ucmsc-cp-v1.yaml")))  # the Measures and what they name
    site_a = session(checked, "site-a-ehr")
    before = table_counts(checked.store)
    for known, unknown in (("b1", "b7"), ("b-obs-0", "b-obs-7")):
        kind = "Patient" if known == "b1" else "Observation"
        for path in ("{k}/{id}", "{k}/{id}/_history/1", "{k}/{id}/_history", "{k}/{id}/$validate"):
            url = path.format(k=kind, id="{}")
            _same(site_a, site_a.get(f"{base}/{url.format(known)}", timeout=30),
                  site_a.get(f"{base}/{url.format(unknown)}", timeout=30), known, unknown)
        body = {"resourceType": kind, "id": "{}", "status": "final", "code": {"text": "x"}} if kind == "Observation" \
            else _patient("{}")
        puts = [site_a.put(f"{base}/{kind}/{rid}", json={**body, "id": rid}, headers=WRITE, timeout=30)
                for rid in (known, unknown)]
        _same(site_a, *puts, known, unknown)
        deletes = [site_a.delete(f"{base}/{kind}/{rid}", timeout=30) for rid in (known, unknown)]
        _same(site_a, *deletes, known, unknown)
        assert deletes[0].status_code == 204
    for path in ("Patient/{}/Observation", "Patient/{}/*", "Patient/{}/$everything",
                 "Measure/ucmsc-cp-adl/$evaluate-measure?subject=Patient/{}&" + PERIOD):
        _same(site_a, site_a.get(f"{base}/{path.format('b1')}", timeout=30),
              site_a.get(f"{base}/{path.format('b7')}", timeout=30), "b1", "b7")
    cookie = {COOKIE: token(checked, "site-a-ehr")}
    pages = [requests.get(f"{checked.root}/ui/child/{rid}", cookies=cookie, timeout=30) for rid in ("b1", "b7")]
    _same(site_a, *pages, "b1", "b7")
    assert pages[0].status_code == 404
    reference = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}}
    refs = [site_a.post(f"{base}/Observation", json={**reference, "subject": {"reference": f"Patient/{rid}"}},
                        headers=WRITE, timeout=30) for rid in ("b1", "b7")]
    assert table_counts(checked.store) == before
    assert refs[0].status_code == 422  # the integrity check's answer for both
    _same(site_a, *refs, "b1", "b7")


def test_a_sites_own_study_is_its_data(gateway: Served) -> None:
    base = fhir(gateway)
    gateway.store.load([{"resourceType": "ResearchStudy", "id": "ucmsc-cp", "status": "active"},
                        *[with_site({"resourceType": "ResearchStudy", "id": f"{site}-study", "status": "active",
                                     "partOf": [{"reference": "ResearchStudy/ucmsc-cp"}]}, site)
                          for site in ("site-a", "site-b")]])
    site_a = session(gateway, "site-a-ehr")
    assert site_a.get(f"{base}/ResearchStudy/site-a-study", timeout=30).status_code == 200
    assert site_a.get(f"{base}/ResearchStudy/ucmsc-cp", timeout=30).status_code == 200  # the protocol's
    refused(site_a.get(f"{base}/ResearchStudy/site-b-study", timeout=30), 404, "is not known")  # was 200
    found = site_a.get(f"{base}/ResearchStudy?_count=50", timeout=30).json()
    assert sorted(e["resource"]["id"] for e in found["entry"]) == ["site-a-study", "ucmsc-cp"]
    assert found["total"] == 2
    history = site_a.get(f"{base}/_history?_count=1000", timeout=30).json()
    assert "site-b-study" not in {e["resource"]["id"] for e in history["entry"] if "resource" in e}
    kick = site_a.get(f"{base}/$export?_type=ResearchStudy", headers={"Prefer": "respond-async"}, timeout=30)
    (output,) = export_manifest(site_a, kick.headers["Content-Location"])["output"]
    exported = site_a.get(output["url"], timeout=30).text
    assert "site-a-study" in exported and "site-b-study" not in exported
    assert session(gateway, "centre").get(f"{base}/ResearchStudy?_summary=count", timeout=30).json()["total"] == 3
