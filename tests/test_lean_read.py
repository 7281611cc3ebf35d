"""The lean read path (adapter/gateway/lean_read.py) answers a plain read by id exactly as the
Flask path does, its refusals too: status, headers and bytes, on both stores, with and without
authorisation; anything it does not take (conditional reads, queries, the audit on, any Flask
hook it does not reproduce) reaches Flask."""
from __future__ import annotations

import json
import pathlib
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from flask import request_started

from adapter.gateway.app import create_app
from adapter.store.clients import ClientRecord
from auth_helpers import RSA_KEY, public_jwks
from test_auth_token import Served, make_auth_app
from test_authorisation import CLIENTS, _data, token

_VOLATILE = {"date", "server", "connection"}


def _answer(response: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    headers = sorted((k.lower(), v) for k, v in response.headers.items() if k.lower() not in _VOLATILE)
    body = response.data if hasattr(response, "data") else response.content
    return response.status_code, headers, body


class _FlaskCount:
    """How many requests reached Flask's request handling (its request_started signal)."""

    def __init__(self, app: Any) -> None:
        self.count = 0
        request_started.connect(self._seen, app)

    def _seen(self, *_: Any, **__: Any) -> None:
        self.count += 1


@pytest.fixture
def two_apps(db_url: str, tmp_path: pathlib.Path) -> Iterator[tuple[Any, Any]]:
    config = {"DATABASE_URL": db_url, "EXPORT_DIR": str(tmp_path / "exports"), "REFERENTIAL_INTEGRITY": False}
    lean, flask_only = create_app(config), create_app({**config, "LEAN_READS": False})
    store = lean.extensions["fhir_store"]
    note = "x" * 1500  # past the gzip threshold
    store.load([{"resourceType": "Patient", "id": "small", "gender": "female"},
                {"resourceType": "Patient", "id": "large", "gender": "male", "text": {
                    "status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{note}</div>'}},
                {"resourceType": "Patient", "id": "gone"}])
    store.delete("Patient", "gone")
    yield lean, flask_only
    for app in (lean, flask_only):
        app.extensions["fhir_store"].close()


REQUESTS: list[tuple[str, dict[str, str]]] = [
    ("/fhir/Patient/small", {}),
    ("/fhir/Patient/small", {"Accept": "application/fhir+json"}),
    ("/fhir/Patient/small", {"Accept": "application/json"}),
    ("/fhir/Patient/small", {"Accept": "text/html, */*;q=0.1"}),
    ("/fhir/Patient/small", {"Accept": "application/xml"}),  # 406
    ("/fhir/Patient/large", {"Accept-Encoding": "gzip, deflate"}),
    ("/fhir/Patient/large", {"Accept-Encoding": "gzip;q=0"}),
    ("/fhir/Patient/large", {}),
    ("/fhir/Patient/small", {"If-None-Match": 'W/"1"'}),  # 304
    ("/fhir/Patient/small?_format=json", {}),
    ("/fhir/Patient/small?_summary=true", {}),
    ("/fhir/Patient/nobody", {}),  # 404
    ("/fhir/Patient/gone", {}),  # 410
    ("/fhir/Nothing/small", {}),  # 404: no such type
    ("/fhir/Patient/" + "a" * 65, {}),  # no FHIR id
]


def test_lean_and_flask_reads_answer_alike(two_apps: tuple[Any, Any]) -> None:
    lean, flask_only = two_apps
    reached = _FlaskCount(lean)
    lean_client, flask_client = lean.test_client(), flask_only.test_client()
    for path, headers in REQUESTS:
        before = reached.count
        got, expected = _answer(lean_client.get(path, headers=headers)), _answer(flask_client.get(path, headers=headers))
        assert got == expected, (path, headers)
        # a read by id of a served type, without query or conditions: answered before Flask,
        # whatever the answer (200, 404, 406, 410)
        plain = "?" not in path and "If-None-Match" not in headers and "Nothing" not in path and "aaaa" not in path
        assert reached.count - before == (0 if plain else 1), (path, headers)
    assert _answer(lean_client.get("/fhir/Patient/small"))[2] == lean.extensions["fhir_store"].read(
        "Patient", "small").data


def test_lean_reads_follow_the_store(two_apps: tuple[Any, Any]) -> None:
    """A changed or deleted resource is answered as it now is (nothing is kept between reads)."""
    lean, _ = two_apps
    client, store = lean.test_client(), lean.extensions["fhir_store"]
    assert client.get("/fhir/Patient/small").headers["ETag"] == 'W/"1"'
    store.update({"resourceType": "Patient", "id": "small", "gender": "other"})
    answer = client.get("/fhir/Patient/small")
    assert answer.headers["ETag"] == 'W/"2"' and answer.get_json()["gender"] == "other"
    store.delete("Patient", "small")
    assert client.get("/fhir/Patient/small").status_code == 410


def test_the_audit_on_sends_every_read_through_flask(db_url: str, tmp_path: pathlib.Path) -> None:
    app = create_app({"DATABASE_URL": db_url, "EXPORT_DIR": str(tmp_path / "exports"), "AUDIT": True})
    try:
        app.extensions["fhir_store"].load([{"resourceType": "Patient", "id": "p"}])
        reached = _FlaskCount(app)
        assert app.test_client().get("/fhir/Patient/p").status_code == 200
        assert reached.count == 1
    finally:
        app.extensions["audit_writer"].close()
        app.extensions["fhir_store"].close()


@pytest.fixture
def auth_pair(db_url: str, tmp_path: pathlib.Path) -> Iterator[tuple[Served, Served]]:
    lean = Served(make_auth_app(db_url, tmp_path, AUDIT=False))
    flask_only = Served(make_auth_app(db_url, tmp_path, AUDIT=False, LEAN_READS=False))
    jwks = json.dumps(public_jwks(RSA_KEY))
    for name, (site, scope) in CLIENTS.items():
        lean.store.add_client(ClientRecord(name, scope, jwks, site=site))
    lean.store.load(_data())
    yield lean, flask_only
    lean.close()
    flask_only.close()


def test_with_authorisation_the_lean_path_answers_as_flask_over_http(auth_pair: tuple[Served, Served]) -> None:
    """Same token, same answers: a site's own Observation, another site's, a type outside the
    scopes, no token, a token that is no token. Only the granted read skips Flask."""
    lean, flask_only = auth_pair
    reached = _FlaskCount(lean.app)
    site_a = token(lean, "site-a-ehr")  # the same key: valid on both apps
    patients_only = token(lean, "patients-only", "system/Patient.rs")
    cases = [("Observation/a-obs-1", site_a), ("Observation/b-obs-1", site_a), ("Patient/a1", site_a),
             ("Observation/a-obs-1", patients_only), ("Patient/a1", patients_only),
             ("Observation/a-obs-1", None), ("Observation/a-obs-1", "not-a-token")]
    for path, bearer in cases:
        headers = {"Accept": "application/fhir+json", **({"Authorization": f"Bearer {bearer}"} if bearer else {})}
        before = reached.count
        got = _answer(requests.get(f"{lean.root}/fhir/{path}", headers=headers, timeout=30))
        expected = _answer(requests.get(f"{flask_only.root}/fhir/{path}", headers=headers, timeout=30))
        assert got == expected, (path, bearer)
        assert reached.count - before == 0, (path, bearer, got[0])  # refusals answered before Flask too
    assert _answer(requests.get(f"{lean.root}/fhir/Observation/b-obs-1", timeout=30,
                                headers={"Authorization": f"Bearer {site_a}"}))[0] in (403, 404)


def test_a_hook_added_later_applies_to_every_read(two_apps: tuple[Any, Any]) -> None:
    """A Flask hook the lean path does not know (no lean_read_safe mark) sends every read
    through Flask, so what it does applies to reads as to everything else."""
    lean, _ = two_apps

    @lean.after_request
    def stamp(response: Any) -> Any:
        response.headers["X-Seen-By"] = "a hook added later"
        return response

    reached = _FlaskCount(lean)
    client = lean.test_client()
    for path in ("/fhir/Patient/small", "/fhir/Patient/nobody", "/fhir/Patient/gone"):
        assert client.get(path).headers.get("X-Seen-By") == "a hook added later", path
    assert reached.count == 3
