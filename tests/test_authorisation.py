"""Authorisation over real HTTP with real tokens (Authlib's private_key_jwt client), on SQLite
and PostgreSQL: FHIR clients read, search and page with a token; every refusal is a 401/403
OperationOutcome that changes nothing; a site's client never reaches another site's data."""
from __future__ import annotations

import base64
import json
import pathlib
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from fhirclient import client as smart_client
from fhirclient.models.observation import Observation
from fhirpy import SyncFHIRClient

from adapter.fhir.sites import with_site
from adapter.store.clients import ClientRecord
from auth_helpers import RSA_KEY, Clock, assertion, public_jwks, token_form
from conftest import table_counts
from test_auth_token import Served, make_auth_app
from test_node_client import check_what_fhir_kit_client_saw

CLIENTS = {  # name: (site, registered scopes)
    "site-a-ehr": ("site-a", "system/*.cruds"),
    "site-b-ehr": ("site-b", "system/*.cruds"),
    "centre": (None, "system/*.cruds"),
    "patients-only": ("site-a", "system/Patient.rs"),
    "creator": ("site-a", "system/Observation.c"),
}


def _labelled(resource: dict[str, Any], site: str | None) -> dict[str, Any]:
    return with_site(resource, site) if site else resource


def _data() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"resourceType": "PlanDefinition", "id": "plan", "status": "active"}]
    for site, prefix, count in (("site-a", "a", 12), ("site-b", "b", 5)):
        out.append(_labelled({"resourceType": "Patient", "id": f"{prefix}1", "gender": "female"}, site))
        out += [_labelled({"resourceType": "Observation", "id": f"{prefix}-obs-{i}", "status": "final",
                           "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
                           "subject": {"reference": f"Patient/{prefix}1"}}, site) for i in range(count)]
    return out


@pytest.fixture
def gateway(db_url: str, tmp_path: pathlib.Path) -> Iterator[Served]:
    served = Served(make_auth_app(db_url, tmp_path))
    jwks = json.dumps(public_jwks(RSA_KEY))
    for name, (site, scope) in CLIENTS.items():
        served.store.add_client(ClientRecord(name, scope, jwks, site=site))
    served.store.load(_data())
    yield served
    served.close()


def token(gateway: Served, client: str, scope: str = "system/*.cruds") -> str:
    """A token as a backend client gets one: Authlib's OAuth2Session with private_key_jwt."""
    auth = PrivateKeyJWT(gateway.token_url, alg="RS384", headers={"kid": RSA_KEY.kid},
                         claims={"exp": int(time.time()) + 240})
    with OAuth2Session(client, RSA_KEY, token_endpoint_auth_method=auth, scope=scope) as session:
        return str(session.fetch_token(gateway.token_url)["access_token"])


def session(gateway: Served, client: str, scope: str = "system/*.cruds") -> requests.Session:
    http = requests.Session()
    http.headers.update({"Authorization": f"Bearer {token(gateway, client, scope)}",
                         "Accept": "application/fhir+json"})
    return http


def fhir(gateway: Served) -> str:
    return f"{gateway.root}/fhir"


def export_manifest(http: requests.Session, status_url: str) -> dict[str, Any]:
    """Poll an export's status URL until its manifest comes (10 s at most)."""
    for _ in range(200):
        answer = http.get(status_url, timeout=30)
        if answer.status_code == 200:
            return answer.json()  # type: ignore[no-any-return]
        assert answer.status_code == 202, answer.text
        time.sleep(0.05)
    raise AssertionError(f"the export at {status_url} did not finish")


def refused(answer: requests.Response, status: int, says: str = "") -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["resourceType"] == "OperationOutcome", body
    assert says in json.dumps(body), body
    if status == 401:
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    return body  # type: ignore[no-any-return]


# -- authentication ------------------------------------------------------------------------------

def test_no_token_malformed_or_foreign_token_is_401_and_metadata_stays_public(
        gateway: Served, db_url: str, tmp_path: pathlib.Path) -> None:
    base = fhir(gateway)
    refused(requests.get(f"{base}/Patient/a1", timeout=30), 401)
    assert "error=" not in requests.get(f"{base}/Patient/a1", timeout=30).headers["WWW-Authenticate"]
    bad = requests.get(f"{base}/Patient/a1", headers={"Authorization": "Bearer not.a.token"}, timeout=30)
    refused(bad, 401)
    assert 'error="invalid_token"' in bad.headers["WWW-Authenticate"]
    refused(requests.get(f"{base}/Patient/a1", headers={"Authorization": "Basic eDp5"}, timeout=30), 401)
    # A token signed by another server (its own key file) for a client of the same name.
    other = Served(make_auth_app(db_url, tmp_path / "other"))
    try:
        foreign = token(other, "centre")
    finally:
        other.server.shutdown()
    refused(requests.get(f"{base}/Patient/a1", headers={"Authorization": f"Bearer {foreign}"}, timeout=30), 401)
    assert requests.get(f"{base}/metadata", timeout=30).status_code == 200
    assert requests.get(f"{base}/.well-known/smart-configuration", timeout=30).status_code == 200
    before = table_counts(gateway.store)
    refused(requests.post(f"{base}/Patient", json={"resourceType": "Patient"}, timeout=30), 401)
    assert table_counts(gateway.store) == before


def test_an_expired_token_is_401(db_url: str, tmp_path: pathlib.Path) -> None:
    # The gateway's clock is moved to the token's own `exp`, not slept to: a token is good for
    # its whole lifetime and refused from its `exp` on.
    clock = Clock()
    served = Served(make_auth_app(db_url, tmp_path, CLOCK=clock))
    try:
        served.store.add_client(ClientRecord("centre", "system/*.rs", json.dumps(public_jwks(RSA_KEY))))
        http = session(served, "centre", "system/*.rs")
        assert http.get(f"{fhir(served)}/Patient?_count=1", timeout=30).status_code == 200
        payload = str(http.headers["Authorization"]).split(".")[1]
        expires = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["exp"]
        assert expires == int(clock.now) + 300  # the default lifetime, issued by the clock
        clock.now = expires - 1
        assert http.get(f"{fhir(served)}/Patient?_count=1", timeout=30).status_code == 200
        clock.now = expires
        refused(http.get(f"{fhir(served)}/Patient?_count=1", timeout=30), 401, "expired")
    finally:
        served.close()


def test_the_pages_cookie_lasts_as_long_as_the_token_by_the_same_clock(db_url: str, tmp_path: pathlib.Path) -> None:
    clock = Clock()
    app = make_auth_app(db_url, tmp_path, CLOCK=clock)
    try:
        app.extensions["fhir_store"].add_client(
            ClientRecord("centre", "system/*.rs", json.dumps(public_jwks(RSA_KEY))))
        client = app.test_client()
        issued = client.post("/auth/token", data=token_form(
            assertion(RSA_KEY, "centre", "http://localhost/auth/token"), "system/*.rs"))
        assert issued.status_code == 200, issued.text
        access = issued.json["access_token"]
        clock.now += 100
        signed_in = client.post("/ui/sign-in", data={"token": access})
        assert signed_in.status_code == 303
        assert "Max-Age=200;" in signed_in.headers["Set-Cookie"]  # 300 s issued, 100 s gone
        clock.now += 200
        refused_in = client.post("/ui/sign-in", data={"token": access})
        assert refused_in.status_code == 401 and "expired" in refused_in.text
        assert "Set-Cookie" not in refused_in.headers
    finally:
        if "audit_writer" in app.extensions:
            app.extensions["audit_writer"].close()
        app.extensions["fhir_store"].close()


def test_a_revoked_clients_token_stops_working(gateway: Served) -> None:
    http = session(gateway, "site-a-ehr")
    assert http.get(f"{fhir(gateway)}/Patient/a1", timeout=30).status_code == 200
    gateway.store.revoke_client("site-a-ehr")
    refused(http.get(f"{fhir(gateway)}/Patient/a1", timeout=30), 401)


# -- real FHIR clients with a token ----------------------------------------------------------------

def test_fhirpy_and_fhirclient_read_search_and_page_a_sites_data(gateway: Served) -> None:
    access = token(gateway, "site-a-ehr", "system/Patient.rs system/Observation.rs")
    client = SyncFHIRClient(fhir(gateway), authorization=f"Bearer {access}")
    search = client.resources("Observation").limit(5)
    assert search.count() == 12  # site A's only: B's 5 are neither listed nor counted
    assert len({o.id for o in search.fetch_all()}) == 12
    assert client.reference("Patient", "a1").to_resource()["gender"] == "female"
    smart = smart_client.FHIRClient(settings={"app_id": "ehr", "api_base": fhir(gateway)})
    smart.server.auth = None
    smart.server.session.headers["Authorization"] = f"Bearer {access}"
    every = list(Observation.where(struct={"_count": "4"}).perform_resources_iter(smart.server))
    assert len(every) == 12 and all(o.id.startswith("a-") for o in every)


def test_fhir_kit_client_with_a_token(gateway: Served) -> None:
    check_what_fhir_kit_client_saw(fhir(gateway), token(gateway, "centre"))


# -- scopes ----------------------------------------------------------------------------------------

def test_scopes_too_narrow_are_403_naming_the_scope(gateway: Served) -> None:
    base = fhir(gateway)
    creator = session(gateway, "creator", "system/Observation.c")
    refused(creator.get(f"{base}/Observation/a-obs-1", timeout=30), 403, "system/Observation.r")
    made = creator.post(f"{base}/Observation", json={
        "resourceType": "Observation", "status": "final", "code": {"text": "x"},
        "subject": {"reference": "Patient/a1"}}, headers={"Content-Type": "application/fhir+json"}, timeout=30)
    assert made.status_code == 201, made.text
    patients = session(gateway, "patients-only", "system/Patient.rs")
    refused(patients.get(f"{base}/Observation/a-obs-1", timeout=30), 403, "system/Observation.r")
    refused(patients.get(f"{base}/Observation?subject=Patient/a1", timeout=30), 403, "system/Observation.s")
    assert patients.get(f"{base}/Patient/a1", timeout=30).status_code == 200


def test_include_and_everything_outside_the_scopes(gateway: Served) -> None:
    base = fhir(gateway)
    patients = session(gateway, "patients-only", "system/Patient.rs")
    bundle = patients.get(f"{base}/Patient?_id=a1&_revinclude=Observation:subject", timeout=30).json()
    modes = [e["search"]["mode"] for e in bundle["entry"]]
    assert modes == ["match", "outcome"]
    assert "left out" in bundle["entry"][-1]["resource"]["issue"][0]["diagnostics"]
    everything = patients.get(f"{base}/Patient/a1/$everything", timeout=30).json()
    assert [e["resource"]["resourceType"] for e in everything["entry"]] == ["Patient", "OperationOutcome"]
    refused(patients.get(f"{base}/Patient/a1/$everything?_type=Observation", timeout=30), 403, "Observation")


def test_a_transaction_entry_outside_the_scopes_writes_nothing(gateway: Served) -> None:
    patients = session(gateway, "patients-only", "system/Patient.crus")
    before = table_counts(gateway.store)
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "id": "a1", "gender": "male"},
         "request": {"method": "PUT", "url": "Patient/a1"}},
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"}},
         "request": {"method": "POST", "url": "Observation"}}]}
    answer = patients.post(fhir(gateway), json=bundle, headers={"Content-Type": "application/fhir+json"}, timeout=30)
    refused(answer, 403, "system/Observation.c")
    assert table_counts(gateway.store) == before


def test_export_is_held_to_the_scopes_site_and_starting_client(gateway: Served) -> None:
    base = fhir(gateway)
    patients = session(gateway, "patients-only", "system/Patient.rs")
    kick = {"Prefer": "respond-async"}
    refused(patients.get(f"{base}/$export?_type=Observation", headers=kick, timeout=30), 403, "Observation")
    site_a = session(gateway, "site-a-ehr", "system/Patient.rs system/Observation.rs")
    started = site_a.get(f"{base}/$export", headers=kick, timeout=30)
    assert started.status_code == 202, started.text
    status_url = started.headers["Content-Location"]
    manifest = export_manifest(site_a, status_url)
    assert manifest["requiresAccessToken"] is True
    assert {o["type"]: o["count"] for o in manifest["output"]} == {"Patient": 1, "Observation": 12}
    file_url = manifest["output"][0]["url"]
    refused(session(gateway, "site-b-ehr").get(status_url, timeout=30), 403, "another client")
    refused(session(gateway, "site-b-ehr").get(file_url, timeout=30), 403, "another client")
    refused(requests.get(file_url, timeout=30), 401)
    lines = site_a.get(f"{base}/$export-file/{status_url.rsplit('/', 1)[1]}/Observation.ndjson", timeout=30).text
    assert all(json.loads(line)["id"].startswith("a-") for line in lines.splitlines())


# -- sites ------------------------------------------------------------------------------------------

def test_site_a_never_reads_searches_counts_includes_or_writes_site_b(gateway: Served) -> None:
    base = fhir(gateway)
    site_a = session(gateway, "site-a-ehr")
    before = table_counts(gateway.store)
    # another site's resource is answered as an unknown one, word for word (issue 25 item 4)
    assert refused(site_a.get(f"{base}/Patient/b1", timeout=30), 404) == \
        refused(site_a.get(f"{base}/Patient/nobody", timeout=30), 404) | {"issue": [{
            "severity": "error", "code": "not-found", "diagnostics": "Patient/b1 is not known"}]}
    refused(site_a.get(f"{base}/Observation/b-obs-0/_history/1", timeout=30), 404, "has no version 1")
    assert site_a.get(f"{base}/Observation?subject=Patient/b1", timeout=30).json().get("entry") is None
    assert site_a.get(f"{base}/Observation?_summary=count", timeout=30).json()["total"] == 12
    assert site_a.get(f"{base}/?_type=Patient", timeout=30).json()["total"] == 1
    included = site_a.get(f"{base}/Observation?_id=a-obs-0&_include=Observation:subject", timeout=30).json()
    assert [e["resource"]["id"] for e in included["entry"]] == ["a-obs-0", "a1"]
    refused(site_a.get(f"{base}/Patient/b1/$everything", timeout=30), 404, "Patient/b1 is not known")
    write = {"Content-Type": "application/fhir+json"}
    refused(site_a.put(f"{base}/Patient/b1", json={"resourceType": "Patient", "id": "b1"},
                       headers=write, timeout=30), 403, "namespace")
    refused(site_a.post(f"{base}/Observation", json={"resourceType": "Observation", "status": "final",
                                                     "code": {"text": "x"}, "subject": {"reference": "Patient/b1"}},
                        headers=write, timeout=30), 422, "there is no Patient/b1 here")
    assert site_a.delete(f"{base}/Observation/b-obs-0", timeout=30).status_code == 204  # deletes nothing
    refused(site_a.put(f"{base}/PlanDefinition/plan", json={"resourceType": "PlanDefinition", "id": "plan",
                                                            "status": "retired"}, headers=write, timeout=30), 403)
    assert table_counts(gateway.store) == before
    assert site_a.get(f"{base}/PlanDefinition/plan", timeout=30).status_code == 200  # the protocol is everyone's
    centre = session(gateway, "centre")
    assert centre.get(f"{base}/Observation?_summary=count", timeout=30).json()["total"] == 17
    assert centre.get(f"{base}/Patient/b1", timeout=30).status_code == 200


def test_what_a_site_writes_is_labelled_with_its_site(gateway: Served) -> None:
    base = fhir(gateway)
    made = session(gateway, "site-a-ehr").post(f"{base}/Observation", json={
        "resourceType": "Observation", "status": "final", "code": {"text": "x"},
        "subject": {"reference": "Patient/a1"}}, headers={"Content-Type": "application/fhir+json"}, timeout=30)
    assert made.status_code == 201
    labels = made.json()["meta"]["security"]
    assert {"system": "http://ucmsc-cp.example.org/fhir/CodeSystem/study-site", "code": "site-a"} in labels
    refused(session(gateway, "site-b-ehr").get(made.headers["Location"], timeout=30), 404)
