"""The audit trail: one AuditEvent per FHIR request, written off the request path, never lost on
a clean shutdown, never writable through the API; `fhir-adapter audit` reads it back."""
from __future__ import annotations

import base64
import contextlib
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from adapter.audit.writer import flush_all
from adapter.fhir.validation import validate
from adapter.gateway.app import create_app
from adapter.store.sql_store import SqlStore
from conftest import observation, wait_until_serving

CLI = str(pathlib.Path(sys.executable).parent / "fhir-adapter")
FHIR = {"Content-Type": "application/fhir+json"}


def row_counts(store: SqlStore) -> dict[str, int]:
    """Rows of every table, AuditEvent's included (conftest's table_counts leaves them out)."""
    from sqlalchemy import func, select

    from adapter.store.schema import INDEX_TABLES, history, resources
    with store.engine.connect() as conn:
        return {t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
                for t in (resources, history, *INDEX_TABLES.values())}


def audit_events(db_url: str) -> list[dict[str, Any]]:
    from adapter.audit.trail import audit_events as read
    store = SqlStore(db_url, migrate=False, check_references=False)
    try:
        return list(read(store))
    finally:
        store.close()


@contextlib.contextmanager
def serving(db_url: str, tmp_path: pathlib.Path, *options: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`fhir-adapter serve` with these options on a free loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([CLI, "serve", "--port", str(port), "--db", db_url, "--workers", "2", *options],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path,
                            env={**os.environ, "FHIR_ADAPTER_EXPORT_DIR": str(tmp_path / "exports")})
    try:
        wait_until_serving(f"http://127.0.0.1:{port}/fhir/metadata")
        yield f"http://127.0.0.1:{port}/fhir", proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=60)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """A clean shutdown, as systemd or docker stop does it."""
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0


def _patients(event: dict[str, Any]) -> set[str]:
    return {e["what"]["reference"] for e in event["entity"]
            if e.get("role", {}).get("code") == "1" and "what" in e}


def _subtype(event: dict[str, Any]) -> str:
    return event["subtype"][0]["code"] if event.get("subtype") else "-"


@pytest.mark.slow
def test_every_request_over_http_has_exactly_one_audit_event(db_url, tmp_path):
    with serving(db_url, tmp_path, "--audit") as (base, proc):
        s = requests.Session()
        expected: list[tuple[str, str, str, set[str]]] = []  # subtype, action, outcome, patients

        def call(method: str, path: str, status: int, subtype: str, action: str, patients: set[str],
                 **kw: Any) -> requests.Response:
            r = s.request(method, f"{base}/{path}", timeout=30, **kw)
            assert r.status_code == status, r.text
            expected.append((subtype, action, "0" if status < 400 else "4" if status < 500 else "8", patients))
            return r

        p1 = {"Patient/p1"}
        call("PUT", "Patient/p1", 201, "update", "C", p1, json={"resourceType": "Patient", "id": "p1"}, headers=FHIR)
        call("GET", "Patient/p1", 200, "read", "R", p1)
        created = call("POST", "Observation", 201, "create", "C", p1, json=observation(), headers=FHIR)
        oid = created.headers["Location"].split("/Observation/")[1].split("/")[0]
        call("GET", f"Observation/{oid}", 200, "read", "R", p1)
        call("GET", f"Observation/{oid}/_history/1", 200, "vread", "R", p1)
        call("GET", "Observation?subject=Patient/p1&_count=5", 200, "search-type", "E", p1)
        call("POST", "Observation/_search", 200, "search-type", "E", p1, data={"patient": "p1"})
        call("GET", "Patient/p1/Observation", 200, "search-type", "E", p1)
        call("PUT", f"Observation/{oid}", 200, "update", "U", p1, json=observation(id=oid, status="amended"),
             headers=FHIR)
        call("GET", "Patient/p1/$everything", 200, "$everything", "E", p1)
        call("DELETE", f"Observation/{oid}", 204, "delete", "D", set())
        call("GET", "Patient/nobody", 404, "read", "R", {"Patient/nobody"})
        call("GET", "Observation?date=yesterday", 400, "search-type", "E", set())
        kick = call("GET", "$export?_type=Patient", 202, "$export", "E", set(), headers={"Prefer": "respond-async"})
        for _ in range(300):  # each poll is a request of its own
            status = s.get(kick.headers["Content-Location"], timeout=30)
            assert status.status_code in (200, 202)
            expected.append(("$export-status", "R", "0", set()))
            if status.status_code == 200:
                break
            time.sleep(0.1)
        call("GET", status.json()["output"][0]["url"].split("/fhir/")[1], 200, "$export-file", "R", set())
        call("GET", "Patient?_id=p1", 200, "search-type", "E", p1)
        call("DELETE", "AuditEvent/x", 405, "delete", "D", set())
        for _ in range(3):  # the server's description of itself is not audited
            assert s.get(f"{base}/metadata", timeout=30).status_code == 200
        _stop(proc)  # the queued events are written by the workers on their way out

    events = audit_events(db_url)
    assert len(events) == len(expected)
    got = sorted((_subtype(e), e["action"], e["outcome"], sorted(_patients(e))) for e in events)
    assert got == sorted((st, a, o, sorted(p)) for st, a, o, p in expected)
    for event in events:
        assert validate(event) == []
        assert event["type"]["code"] == "rest"
        agent = event["agent"][0]
        assert agent["requestor"] is True and agent["who"]["display"] == "unauthenticated (auth off)"
        assert agent["network"]["address"] == "127.0.0.1"
        assert event["source"]["observer"]["display"].startswith("ucmsc-fhir-adapter")
    search = next(e for e in events if e["entity"][0].get("description") == "Observation"
                  and "query" in e["entity"][0] and e["outcome"] == "0")
    assert base64.b64decode(search["entity"][0]["query"]).decode() in ("subject=Patient/p1&_count=5", "patient=p1")
    refused = next(e for e in events if e["outcome"] == "4" and _subtype(e) == "read")
    assert refused["outcomeDesc"].startswith("404 Not Found")

    lines = subprocess.run([CLI, "audit", "--db", db_url, "--patient", "p1"], capture_output=True, text=True,
                           timeout=120, check=True).stdout.splitlines()
    assert len(lines) == sum(1 for *_, p in expected if "Patient/p1" in p)
    assert all("Patient/p1" in line for line in lines)


@pytest.mark.slow
def test_audit_off_writes_none(db_url, tmp_path):
    with serving(db_url, tmp_path, "--no-audit") as (base, proc):
        assert requests.put(f"{base}/Patient/p1", json={"resourceType": "Patient", "id": "p1"}, headers=FHIR,
                            timeout=30).status_code == 201
        assert requests.get(f"{base}/Patient/p1", timeout=30).status_code == 200
        _stop(proc)
    assert audit_events(db_url) == []


@pytest.fixture
def audited(db_url: str, tmp_path: pathlib.Path) -> Iterator[Any]:
    """The app in this process with the audit on; `flush` writes what it queued."""
    app = create_app({"DATABASE_URL": db_url, "EXPORT_DIR": str(tmp_path / "exports"),
                      "REFERENTIAL_INTEGRITY": False, "AUDIT": True})
    yield app
    app.extensions["audit_writer"].close()
    app.extensions["fhir_store"].close()


def test_the_agent_is_the_client_of_the_token_and_its_site(db_url, tmp_path):
    """With auth on (and so the audit), the grant the authorisation hook leaves at flask.g.access
    names the agent; a request refused for want of a token is recorded as unauthenticated."""
    from adapter.fhir.sites import with_site
    from adapter.store.clients import ClientRecord
    from auth_helpers import RSA_KEY, public_jwks
    from test_auth_token import Served, make_auth_app
    from test_authorisation import token

    gateway = Served(make_auth_app(db_url, tmp_path))
    try:
        assert gateway.app.config["AUDIT"] is True
        jwks = json.dumps(public_jwks(RSA_KEY))
        gateway.store.add_client(ClientRecord("site-a-ehr", "system/*.rs", jwks, site="site-a"))
        gateway.store.load([with_site({"resourceType": "Patient", "id": "a1"}, "site-a")])
        fhir = f"{gateway.root}/fhir"
        bearer = {"Authorization": f"Bearer {token(gateway, 'site-a-ehr', 'system/*.rs')}"}
        assert requests.get(f"{fhir}/Patient/a1", headers=bearer, timeout=30).status_code == 200
        assert requests.get(f"{fhir}/Patient/a1", timeout=30).status_code == 401
        assert requests.get(f"{fhir}/AuditEvent", headers=bearer, timeout=30).status_code == 403  # centre only
        flush_all()
        events = audit_events(db_url)
        assert len(events) == 3
        by_outcome = {e["outcomeDesc"].split()[0]: e for e in events}
        granted = by_outcome["200"]["agent"][0]
        assert granted["who"]["identifier"]["value"] == "site-a-ehr"
        assert granted["role"][0]["coding"][0]["code"] == "site-a"
        assert _patients(by_outcome["200"]) == {"Patient/a1"} and by_outcome["200"]["outcome"] == "0"
        assert by_outcome["401"]["agent"][0]["who"]["display"] == "unauthenticated (no valid access token)"
        assert by_outcome["401"]["outcome"] == "4" and _patients(by_outcome["401"]) == {"Patient/a1"}
        assert by_outcome["403"]["agent"][0]["who"]["identifier"]["value"] == "site-a-ehr"
    finally:
        gateway.close()
    out = subprocess.run([CLI, "audit", "--db", db_url, "--client", "site-a-ehr"], capture_output=True,
                         text=True, timeout=120, check=True).stdout
    assert out.count("\n") == 2 and "site-a-ehr\tsite-a\tR\tread\tok" in out
    other = subprocess.run([CLI, "audit", "--db", db_url, "--client", "site-a"], capture_output=True,
                           text=True, timeout=120, check=True).stdout
    assert other == ""  # a prefix of the client id is another client


def test_batch_and_transaction_are_told_apart(audited, db_url):
    client = audited.test_client()
    entry = {"request": {"method": "GET", "url": "Patient?_count=1"}}
    for kind in ("batch", "transaction"):
        r = client.post("/fhir", json={"resourceType": "Bundle", "type": kind, "entry": [entry]}, headers=FHIR)
        assert r.status_code == 200
    flush_all()
    assert sorted(_subtype(e) for e in audit_events(db_url)) == ["batch", "transaction"]


def test_audit_events_cannot_be_written_through_the_api(app, client, store):
    """No create, update, patch or delete of an AuditEvent, alone or inside a Bundle."""
    store.load([{"resourceType": "AuditEvent", "id": "a1", "type": {"code": "rest"}, "recorded": "2026-01-01T00:00:00Z",
                 "agent": [{"requestor": True}], "source": {"observer": {"display": "x"}}}])
    before = row_counts(store)
    event = {"resourceType": "AuditEvent", "id": "a1", "type": {"code": "rest"}, "recorded": "2026-01-01T00:00:00Z",
             "agent": [{"requestor": True}], "source": {"observer": {"display": "forged"}}}
    attempts = [
        client.post("/fhir/AuditEvent", json=event, headers=FHIR),
        client.put("/fhir/AuditEvent/a1", json=event, headers=FHIR),
        client.put("/fhir/AuditEvent?_id=a1", json=event, headers=FHIR),
        client.patch("/fhir/AuditEvent/a1", json=[{"op": "remove", "path": "/agent"}],
                     headers={"Content-Type": "application/json-patch+json"}),
        client.delete("/fhir/AuditEvent/a1"),
        client.delete("/fhir/AuditEvent?_id=a1"),
        client.post("/fhir", json={"resourceType": "Bundle", "type": "transaction", "entry": [
            {"request": {"method": "DELETE", "url": "AuditEvent/a1"}}]}, headers=FHIR),
    ]
    for r in attempts:
        assert r.status_code == 405, r.get_data(as_text=True)
        assert "AuditEvent" in r.json["issue"][0]["diagnostics"]
    batch = client.post("/fhir", json={"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "PUT", "url": "AuditEvent/a1"}, "resource": event}]}, headers=FHIR)
    assert batch.json["entry"][0]["response"]["status"] == "405"
    assert row_counts(store) == before
    assert json.loads(client.get("/fhir/AuditEvent/a1").data)["source"]["observer"]["display"] == "x"
    assert client.get("/fhir/AuditEvent?_id=a1").status_code == 200
    metadata = {r["type"]: r for r in client.get("/fhir/metadata").json["rest"][0]["resource"]}
    assert {i["code"] for i in metadata["AuditEvent"]["interaction"]} == {
        "read", "vread", "history-instance", "history-type", "search-type"}


def test_events_of_one_shape_are_validated_once_but_an_empty_text_is_another_shape():
    from adapter.audit.events import audit_event
    from adapter.audit.record import AccessRecord
    from adapter.audit.writer import _shape
    record = AccessRecord("GET", "Patient/p1", "", 200, "read", None, "Patient", "p1", None, None, None, None,
                          "c1", None, True, "127.0.0.1", 0.0, None)
    one, two = audit_event(record, "host"), audit_event(record._replace(resource_id="p2", time=9.0), "host")
    assert one["id"] != two["id"] and _shape(one) == _shape(two)
    assert _shape(audit_event(record._replace(client=""), "host")) != _shape(one)
    assert _shape(audit_event(record._replace(status=404), "host")) != _shape(one)  # another outcome code


@pytest.mark.parametrize("env, expected", [
    ({}, False),
    ({"FHIR_ADAPTER_AUTH": "on"}, True),  # auth on: audited unless said otherwise
    ({"FHIR_ADAPTER_AUTH": "on", "FHIR_ADAPTER_AUDIT": "off"}, False),
    ({"FHIR_ADAPTER_AUDIT": "on"}, True),
])
def test_audit_default_follows_auth(env, expected, tmp_path, monkeypatch):
    for name in ("FHIR_ADAPTER_AUTH", "FHIR_ADAPTER_AUDIT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'a.db'}", "EXPORT_DIR": str(tmp_path / "x")})
    try:
        assert app.config["AUDIT"] is expected
        assert ("audit_writer" in app.extensions) is expected
    finally:
        if "audit_writer" in app.extensions:
            app.extensions["audit_writer"].close()
        app.extensions["fhir_store"].close()


def test_page_views_are_audited_the_child_page_as_a_read_of_the_child(audited, db_url):
    """The web pages show patient data too: each page view is one AuditEvent; the sign-in page
    and the scripts and styles are not."""
    audited.extensions["fhir_store"].load([{"resourceType": "Patient", "id": "p1"}])
    client = audited.test_client()
    assert client.get("/ui/child/p1").status_code == 200
    assert client.get("/ui/static/pages.css").status_code == 200
    assert client.get("/ui/sign-in").status_code == 303  # auth off: straight to the pages
    flush_all()
    events = audit_events(db_url)
    assert [(_subtype(e), e["action"], _patients(e)) for e in events] == [("read", "R", {"Patient/p1"})]
    assert events[0]["entity"][0]["what"]["reference"] == "Patient/p1"
