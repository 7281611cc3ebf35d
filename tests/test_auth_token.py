"""SMART Backend Services token endpoint: a real OAuth client gets a token, and every kind of
bad client assertion is refused per RFC 6749 section 5.2; on SQLite and PostgreSQL."""
from __future__ import annotations

import json
import pathlib
import stat
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from joserfc import jws
from sqlalchemy import select
from werkzeug.serving import make_server

from adapter.gateway.app import create_app
from adapter.store.clients import ClientRecord
from adapter.store.schema import auth_jti
from r4schema import assert_r4
from auth_helpers import (
    EC_KEY, OTHER_KEY, RSA_KEY, assertion, jwks_server, public_jwks, token_form, unsigned,
)

SCOPE = "system/Observation.rs system/Patient.rs"


def make_auth_app(db_url: str, tmp_path: pathlib.Path, **config: Any) -> Any:
    return create_app({"DATABASE_URL": db_url, "EXPORT_DIR": str(tmp_path / "exports"),
                       "REFERENTIAL_INTEGRITY": False, "AUTH": True,
                       "AUTH_KEY_FILE": str(tmp_path / "keys" / "auth-key.json"),
                       "AUTH_CLIENT_CACHE_SECONDS": 0, "AUTH_JWKS_REFETCH_SECONDS": 0, **config})


class Served:
    """An auth-on gateway over real HTTP on 127.0.0.1."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.root = f"http://127.0.0.1:{self.server.server_port}"
        self.token_url = f"{self.root}/auth/token"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def store(self) -> Any:
        return self.app.extensions["fhir_store"]

    @property
    def auth(self) -> Any:
        return self.app.extensions["fhir_auth"]

    def post(self, form: dict[str, str]) -> requests.Response:
        return requests.post(self.token_url, data=form, timeout=30)

    def close(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=5)
        if "audit_writer" in self.app.extensions:  # auth on: audit on; written before the store goes
            self.app.extensions["audit_writer"].close()
        self.store.close()


@pytest.fixture
def gateway(db_url: str, tmp_path: pathlib.Path) -> Iterator[Served]:
    served = Served(make_auth_app(db_url, tmp_path))
    served.store.add_client(ClientRecord("ehr", SCOPE, json.dumps(public_jwks(RSA_KEY, EC_KEY)),
                                         site="site-a"))
    yield served
    served.close()


def refused(answer: requests.Response, error: str = "invalid_client", says: str = "") -> None:
    """An RFC 6749 section 5.2 error answer."""
    assert answer.status_code in (400, 401), answer.text
    assert answer.headers["Content-Type"].startswith("application/json")
    assert answer.headers["Cache-Control"] == "no-store"
    body = answer.json()
    assert body["error"] == error, body
    assert says.lower() in body.get("error_description", "").lower(), body
    assert "access_token" not in body


def test_authlib_client_gets_a_token_that_authenticates(gateway: Served) -> None:
    auth = PrivateKeyJWT(gateway.token_url, alg="RS384", headers={"kid": RSA_KEY.kid},
                         claims={"exp": int(time.time()) + 240})
    with OAuth2Session("ehr", RSA_KEY, token_endpoint_auth_method=auth,
                       scope="system/Observation.rs system/Condition.rs") as session:
        token = session.fetch_token(gateway.token_url)
    assert token["token_type"] == "bearer"
    assert token["expires_in"] == 300
    assert token["scope"] == "system/Observation.rs"  # Condition is not registered: left out
    grant = gateway.auth.authenticate(f"Bearer {token['access_token']}", time.time())
    assert (grant.client, grant.site, grant.scope) == ("ehr", "site-a", "system/Observation.rs")
    assert time.time() + 290 < grant.expires <= time.time() + 300


def test_es384_assertion_from_a_jwks_url(db_url: str, tmp_path: pathlib.Path) -> None:
    with jwks_server(public_jwks(EC_KEY)) as jwks:
        served = Served(make_auth_app(db_url, tmp_path))
        try:
            served.store.add_client(ClientRecord("lab", "system/*.rs", jwks_url=jwks.url))
            answer = served.post(token_form(assertion(EC_KEY, "lab", served.token_url, alg="ES384"),
                                            scope="system/*.rs"))
            assert answer.status_code == 200, answer.text
            assert answer.headers["Cache-Control"] == "no-store"
            assert served.auth.authenticate("Bearer " + answer.json()["access_token"]).client == "lab"
            assert jwks.fetches == 1
        finally:
            served.close()


def test_expired_assertion_is_refused(gateway: Served) -> None:
    refused(gateway.post(token_form(assertion(RSA_KEY, "ehr", gateway.token_url, exp_in=-600))),
            says="expire")


def test_assertion_expiring_more_than_five_minutes_ahead_is_refused(gateway: Served) -> None:
    refused(gateway.post(token_form(assertion(RSA_KEY, "ehr", gateway.token_url, exp_in=3600))),
            says="300 s in the future")


def test_wrong_audience_is_refused(gateway: Served) -> None:
    for aud in ("https://other.example.org/auth/token", f"{gateway.root}/fhir"):
        refused(gateway.post(token_form(assertion(RSA_KEY, "ehr", aud))), says="aud")


def test_iss_must_be_the_client(gateway: Served) -> None:
    refused(gateway.post(token_form(assertion(RSA_KEY, "ehr", gateway.token_url, iss="someone"))),
            says="issuer and subject")


def test_replayed_jti_is_refused_also_by_another_app_on_the_same_store(
        gateway: Served, db_url: str, tmp_path: pathlib.Path) -> None:
    first = assertion(RSA_KEY, "ehr", gateway.token_url, jti="once-only")
    assert gateway.post(token_form(first)).status_code == 200
    refused(gateway.post(token_form(first)), says="used before")
    with gateway.store.engine.connect() as conn:  # kept while exp + the 60 s leeway may pass
        row = conn.execute(select(auth_jti).where(auth_jti.c.jti == "once-only")).one()
    assert row.client == "ehr" and row.expires == json.loads(jws.extract_compact(first.encode()).payload)["exp"] + 60
    # Another worker (its own process state, the same database) refuses it too, even when the
    # assertion is re-signed for its own URL with the jti used above.
    other = Served(make_auth_app(db_url, tmp_path))
    try:
        refused(other.post(token_form(assertion(RSA_KEY, "ehr", other.token_url, jti="once-only"))),
                says="used before")
        fresh = assertion(RSA_KEY, "ehr", other.token_url, jti="another")
        assert other.post(token_form(fresh)).status_code == 200
    finally:
        other.close()


def test_assertion_signed_by_an_unregistered_key_is_refused(gateway: Served) -> None:
    refused(gateway.post(token_form(assertion(OTHER_KEY, "ehr", gateway.token_url))), says="bad_signature")


def test_alg_none_is_refused(gateway: Served) -> None:
    refused(gateway.post(token_form(unsigned("ehr", gateway.token_url, "none"))), says="'none' is not allowed")


def test_hs256_signed_with_the_public_key_is_refused(gateway: Served) -> None:
    from cryptography.hazmat.primitives import serialization
    pem = RSA_KEY.public_key.public_bytes(serialization.Encoding.PEM,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    for secret in (pem, json.dumps(public_jwks(RSA_KEY)).encode()):
        refused(gateway.post(token_form(unsigned("ehr", gateway.token_url, "HS256", secret))),
                says="'HS256' is not allowed")


def test_rs256_is_not_one_of_the_allowed_algorithms(gateway: Served) -> None:
    refused(gateway.post(token_form(assertion(RSA_KEY, "ehr", gateway.token_url, alg="RS256"))),
            says="algorithm")


def test_unknown_client_is_refused(gateway: Served) -> None:
    refused(gateway.post(token_form(assertion(RSA_KEY, "stranger", gateway.token_url))),
            says="registered")


def test_revoked_client_gets_no_token_and_its_tokens_stop_working(gateway: Served) -> None:
    answer = gateway.post(token_form(assertion(RSA_KEY, "ehr", gateway.token_url)))
    header = "Bearer " + answer.json()["access_token"]
    assert gateway.auth.authenticate(header).client == "ehr"
    assert gateway.store.revoke_client("ehr")
    refused(gateway.post(token_form(assertion(RSA_KEY, "ehr", gateway.token_url))), says="revoked")
    with pytest.raises(Exception, match="revoked"):  # AUTH_CLIENT_CACHE_SECONDS is 0 here
        gateway.auth.authenticate(header)


def test_no_scope_covered_is_invalid_scope(gateway: Served) -> None:
    refused(gateway.post(token_form(assertion(RSA_KEY, "ehr", gateway.token_url),
                                    scope="system/Condition.rs")), "invalid_scope")
    refused(gateway.post(token_form(assertion(RSA_KEY, "ehr", gateway.token_url), scope="")),
            "invalid_request", says="scope")


def test_granted_scopes_are_the_requested_ones_narrowed_to_the_registration(gateway: Served) -> None:
    answer = gateway.post(token_form(assertion(RSA_KEY, "ehr", gateway.token_url), scope="system/*.read launch"))
    assert answer.json()["scope"] == "system/Observation.rs system/Patient.rs"
    grant = gateway.auth.authenticate("Bearer " + answer.json()["access_token"])
    assert grant.scope == "system/Observation.rs system/Patient.rs"
    refused(gateway.post(token_form(assertion(RSA_KEY, "ehr", gateway.token_url),
                                    scope="system/Observation.rs?category=laboratory")),
            "invalid_scope", says="not supported")


def test_module_authenticate_uses_the_current_apps_service(gateway: Served) -> None:
    from adapter.auth.tokens import Unauthenticated, authenticate
    answer = gateway.post(token_form(assertion(RSA_KEY, "ehr", gateway.token_url)))
    with gateway.app.test_request_context("/fhir/Patient"):
        assert authenticate("Bearer " + answer.json()["access_token"]).client == "ehr"
        with pytest.raises(Unauthenticated):
            authenticate(None)


def test_wrong_grant_type_and_missing_assertion(gateway: Served) -> None:
    form = token_form(assertion(RSA_KEY, "ehr", gateway.token_url)) | {"grant_type": "password"}
    refused(gateway.post(form), "unsupported_grant_type")
    refused(gateway.post({"grant_type": "client_credentials", "scope": SCOPE}))


def test_key_rotation_refetches_the_jwks_url_once(db_url: str, tmp_path: pathlib.Path) -> None:
    from joserfc.jwk import ECKey
    new_key = ECKey.generate_key("P-384", parameters={"kid": "ec-2"})
    unpublished = ECKey.generate_key("P-384", parameters={"kid": "ec-3"})
    with jwks_server(public_jwks(EC_KEY)) as jwks:
        served = Served(make_auth_app(db_url, tmp_path))
        try:
            served.store.add_client(ClientRecord("lab", "system/*.rs", jwks_url=jwks.url))
            sign = lambda key: token_form(assertion(key, "lab", served.token_url, alg="ES384"), "system/*.rs")  # noqa: E731
            assert served.post(sign(EC_KEY)).status_code == 200
            assert served.post(sign(EC_KEY)).status_code == 200
            assert jwks.fetches == 1  # cached
            jwks.jwks = public_jwks(EC_KEY, new_key)  # the client rotates
            assert served.post(sign(new_key)).status_code == 200
            assert jwks.fetches == 2  # one re-fetch for the unknown kid
            assert served.post(sign(new_key)).status_code == 200
            refused(served.post(sign(unpublished)))  # a kid nobody published: one more look only
            assert jwks.fetches == 3
            wrong_jku = assertion(EC_KEY, "lab", served.token_url, alg="ES384",
                                  header={"jku": "https://evil.example.org/jwks.json"})
            refused(served.post(token_form(wrong_jku, "system/*.rs")), says="jku")
            assert jwks.fetches == 3
        finally:
            served.close()


def test_unknown_kid_refetch_is_rate_limited(db_url: str, tmp_path: pathlib.Path) -> None:
    with jwks_server(public_jwks(EC_KEY)) as jwks:
        served = Served(make_auth_app(db_url, tmp_path, AUTH_JWKS_REFETCH_SECONDS=60))
        try:
            served.store.add_client(ClientRecord("lab", "system/*.rs", jwks_url=jwks.url))
            for _ in range(5):  # made-up kids (no key needed to send them) cost no fetch each
                refused(served.post(token_form(assertion(OTHER_KEY, "lab", served.token_url), "system/*.rs")))
            assert jwks.fetches == 1
        finally:
            served.close()


def test_server_key_file_is_private_and_shared_by_workers(gateway: Served, db_url: str,
                                                          tmp_path: pathlib.Path) -> None:
    path = tmp_path / "keys" / "auth-key.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    other = make_auth_app(db_url, tmp_path)  # a second worker: the same key, not a new one
    try:
        answer = gateway.post(token_form(assertion(RSA_KEY, "ehr", gateway.token_url)))
        assert other.extensions["fhir_auth"].authenticate("Bearer " + answer.json()["access_token"])
        assert json.loads(path.read_text())["d"] not in repr(other.extensions["fhir_auth"].key)
    finally:
        other.extensions["fhir_store"].close()


def test_smart_configuration_and_capability_statement(gateway: Served) -> None:
    config = requests.get(f"{gateway.root}/fhir/.well-known/smart-configuration", timeout=30).json()
    assert config["token_endpoint"] == gateway.token_url
    assert config["token_endpoint_auth_methods_supported"] == ["private_key_jwt"]
    assert config["token_endpoint_auth_signing_alg_values_supported"] == ["RS384", "ES384"]
    assert config["grant_types_supported"] == ["client_credentials"]
    assert {"client-confidential-asymmetric", "permission-v2", "permission-v1"} <= set(config["capabilities"])
    assert "system/*.rs" in config["scopes_supported"]
    statement = requests.get(f"{gateway.root}/fhir/metadata", timeout=30).json()
    assert_r4(statement)
    security = statement["rest"][0]["security"]
    uris = security["extension"][0]
    assert uris["url"] == "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
    assert uris["extension"] == [{"url": "token", "valueUri": gateway.token_url}]
    assert security["service"][0]["coding"][0] == {
        "system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "SMART-on-FHIR"}


def test_configured_base_url_names_the_token_endpoint(db_url: str, tmp_path: pathlib.Path) -> None:
    app = make_auth_app(db_url, tmp_path, FHIR_BASE_URL="https://fhir.example.org/cp/fhir")
    try:
        client = app.test_client()
        config = client.get("/fhir/.well-known/smart-configuration").get_json()
        assert config["token_endpoint"] == "https://fhir.example.org/cp/auth/token"
        security = client.get("/fhir/metadata").get_json()["rest"][0]["security"]
        assert security["extension"][0]["extension"][0]["valueUri"] == "https://fhir.example.org/cp/auth/token"
        app.extensions["fhir_store"].add_client(ClientRecord("ehr", SCOPE, json.dumps(public_jwks(RSA_KEY))))
        # the assertion's aud must be the configured URL, not the Host the request came by
        local = client.post("/auth/token", data=token_form(assertion(RSA_KEY, "ehr", "http://localhost/auth/token")))
        assert local.get_json()["error"] == "invalid_client"
        good = client.post("/auth/token", data=token_form(
            assertion(RSA_KEY, "ehr", "https://fhir.example.org/cp/auth/token")))
        assert good.status_code == 200, good.get_json()
    finally:
        app.extensions["fhir_store"].close()


def test_without_auth_nothing_is_advertised_and_no_key_is_made(db_url: str, tmp_path: pathlib.Path) -> None:
    app = make_auth_app(db_url, tmp_path, AUTH=False)
    try:
        client = app.test_client()
        assert "security" not in client.get("/fhir/metadata").get_json()["rest"][0]
        assert client.get("/fhir/.well-known/smart-configuration").status_code == 404
        assert client.post("/auth/token", data={"grant_type": "client_credentials"}).status_code == 404
        assert "fhir_auth" not in app.extensions
        assert not (tmp_path / "keys").exists()
    finally:
        app.extensions["fhir_store"].close()


@pytest.mark.slow
def test_gunicorn_workers_share_one_key_and_one_replay_cache(db_url: str, tmp_path: pathlib.Path) -> None:
    """`fhir-adapter serve` with auth on: two workers start at once and make the key on first
    use; every token verifies with the one key file, and a replay fails whichever worker gets it."""
    import os
    import socket
    import subprocess
    import sys

    from adapter.auth.keys import load_or_create
    from adapter.auth.tokens import TokenService
    from adapter.store.sql_store import SqlStore
    from conftest import wait_until_serving

    store = SqlStore(db_url)
    store.add_client(ClientRecord("ehr", SCOPE, json.dumps(public_jwks(RSA_KEY))))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    key_file = tmp_path / "secret" / "auth-key.json"
    cli = str(pathlib.Path(sys.executable).parent / "fhir-adapter")
    proc = subprocess.Popen([cli, "serve", "--port", str(port), "--db", db_url, "--workers", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path,
                            env={**os.environ, "FHIR_ADAPTER_AUTH": "on", "FHIR_ADAPTER_AUTH_KEY": str(key_file),
                                 "FHIR_ADAPTER_EXPORT_DIR": str(tmp_path / "exports")})
    url = f"http://127.0.0.1:{port}/auth/token"
    try:
        wait_until_serving(f"http://127.0.0.1:{port}/fhir/metadata")
        with requests.Session() as http:  # one connection each: the workers take turns
            answers = [requests.post(url, data=token_form(assertion(RSA_KEY, "ehr", url)), timeout=30)
                       for _ in range(12)]
            assert [a.status_code for a in answers] == [200] * 12, answers[0].text
            replay = assertion(RSA_KEY, "ehr", url)
            assert http.post(url, data=token_form(replay), timeout=30).status_code == 200
            for _ in range(4):
                refused(requests.post(url, data=token_form(replay), timeout=30), says="used before")
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        check = TokenService(load_or_create(key_file), store)
        for answer in answers:
            assert check.authenticate("Bearer " + answer.json()["access_token"]).client == "ehr"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        store.close()
