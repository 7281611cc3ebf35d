# ruff: noqa: F811  (the gateway fixture is imported and then named by the tests)
"""What probes of the token endpoint and the sign-in found answering 500 (issue 25, item 6), on
SQLite and PostgreSQL: each an RFC 6749 error (or an HTML redirect for the pages), no worker lost."""
from __future__ import annotations

import json
import re

import requests

from adapter.store.clients import ClientRecord
from auth_helpers import RSA_KEY, assertion, public_jwks, token_form
from conftest import ROOT
from test_auth_token import Served, refused
from test_auth_token import gateway  # noqa: F401  (a fixture, used by name)


def test_what_the_client_sends_is_quoted_safely_in_the_error_description(gateway: Served) -> None:
    # Authlib refuses an error_description holding `"` or `\` with a ValueError: those were 500s.
    refused(gateway.post(token_form(assertion(RSA_KEY, "ehr", gateway.token_url, header={"kid": 'a"b'}))),
            says="kid 'a'b'")
    refused(gateway.post(token_form(assertion(RSA_KEY, "ehr", gateway.token_url, header={"kid": "a\\b\r\nX: y"}))),
            says="kid")
    refused(gateway.post(token_form(assertion(RSA_KEY, 'e"hr', gateway.token_url))), says="registered")
    refused(gateway.post(token_form(assertion(RSA_KEY, "ehr", gateway.token_url), scope='system/"x.rs')),
            "invalid_scope")


def test_the_token_endpoint_over_plain_http_for_another_host_is_an_oauth_error(gateway: Served) -> None:
    # Authlib's InsecureTransportError was raised before its own error handling: a 500.
    answer = requests.post(gateway.token_url, data=token_form(assertion(RSA_KEY, "ehr", "http://fhir.example.org/auth/token")),
                           headers={"Host": "fhir.example.org"}, timeout=30)
    refused(answer, "invalid_request", says="https")
    assert gateway.post(token_form(assertion(RSA_KEY, "ehr", gateway.token_url))).status_code == 200  # 127.0.0.1


def test_the_401_says_what_to_send_once(gateway: Served) -> None:
    answer = requests.get(f"{gateway.root}/fhir/Patient", timeout=30)
    text = answer.json()["issue"][0]["diagnostics"]
    assert answer.status_code == 401 and text.count("send Authorization") == 1, text


def test_a_control_character_in_the_sign_ins_next_is_no_500(gateway: Served) -> None:
    for target in ("/ui/%0d%0aX-Evil:%201", "/ui/child/%0a", "/ui/%09"):
        answer = requests.get(f"{gateway.root}/ui/sign-in?next={target}", timeout=30, allow_redirects=False)
        assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("text/html"), answer.text[:300]
        assert "X-Evil" not in answer.headers and "%0d%0a" not in answer.text.lower()
    token = gateway.post(token_form(assertion(RSA_KEY, "ehr", gateway.token_url))).json()["access_token"]
    signed = requests.post(f"{gateway.root}/ui/sign-in", data={"token": token, "next": "/ui/\r\nX-Evil: 1"},
                           timeout=30, allow_redirects=False)
    assert signed.status_code == 303 and signed.headers["Location"].endswith("/ui/"), signed.text[:300]
    assert "X-Evil" not in signed.headers


def test_the_docs_authlib_snippet_runs(gateway: Served, tmp_path, monkeypatch) -> None:
    """It read the JWK file as text, which joserfc takes for PEM: a ValueError before any request."""
    page = (ROOT / "docs" / "authorisation.md").read_text(encoding="utf-8")
    (snippet,) = [block for block in re.findall(r"```python\n(.*?)```", page, re.S) if "PrivateKeyJWT" in block]
    assert "https://fhir.example.org/auth/token" in snippet
    gateway.store.add_client(ClientRecord("ehr-site-a", "system/Observation.rs system/Patient.rs",
                                          json.dumps(public_jwks(RSA_KEY)), site="site-a"))
    (tmp_path / "ehr-private.jwk.json").write_text(json.dumps(RSA_KEY.as_dict(private=True)))
    monkeypatch.chdir(tmp_path)
    done: dict = {}
    exec(snippet.replace("https://fhir.example.org/auth/token", gateway.token_url), done)  # noqa: S102
    assert gateway.auth.authenticate(f"Bearer {done['token']['access_token']}").client == "ehr-site-a"
