"""Signing in to the pages through a real OpenID Connect provider: npm's oidc-provider
(tests/node/oidc_provider.mjs) on a loopback port, the gateway over real HTTP, Debian's Chromium
through the provider's own login form. What each person sees is what the groups -> access
mapping gives, held by the same guard as a site's API client; what goes wrong at sign-in is a
page and no session.

A second provider (issuer http://localhost:PORT, the same quick-start signing keys as the first)
plays the other issuer: its answers, its ID tokens and, for a gateway configured with it by its
127.0.0.1 address, its discovery document. No part of the gateway is replaced."""
from __future__ import annotations

import html
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import click
import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session

from adapter.audit.writer import flush_all
from adapter.auth.oidc import SignInFailed
from adapter.cli.sign_in_options import SignInOptions
from adapter.fhir.sites import sites_of
from adapter.protocol.apply import search_all
from conftest import ROOT
from test_pages import AS_OF, Server, _app, _subjects, visit

NODE_DIR = ROOT / "tests" / "node"
CLIENT, SECRET = "ucmsc-pages", "pages-test-secret"  # as registered in oidc_provider.mjs
SESSION, SIGN_IN = "fhir_adapter_ui_session", "fhir_adapter_ui_sign_in"
ROLES = """claim: groups
groups:
  ucmsc-centre: {scope: "system/*.rs"}
  ucmsc-site-a: {site: site-a, scope: "system/*.rs"}
  ucmsc-readers: {scope: "system/Patient.rs system/Observation.rs"}
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Provider:
    """oidc-provider in a node process on `port`, for the gateways' callbacks `redirects`."""

    def __init__(self, port: int, redirects: list[str], issuer: str | None = None, code_ttl: int = 0) -> None:
        node = shutil.which("node")
        if node is None or not (NODE_DIR / "node_modules" / "oidc-provider").exists():
            reason = "node or oidc-provider is missing: npm ci --prefix tests/node (make install)"
            if os.environ.get("FHIR_ADAPTER_REQUIRE_NODE") == "1":
                pytest.fail(reason)
            pytest.skip(reason)
        self.issuer = issuer or f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen([node, str(NODE_DIR / "oidc_provider.mjs"), str(port), ",".join(redirects),
                                         self.issuer, *([str(code_ttl)] if code_ttl else [])],
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # "ready <issuer>" once it listens
        assert line.startswith("ready"), f"oidc-provider did not start: {line!r}"

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


@dataclass
class Setup:
    pages: Server  # the four sites' store, audit off
    audited: Server  # an empty store of its own, audit on
    provider: Provider
    other: Provider  # another issuer, the same keys and clients


def _gateway(url: str, folder: Any, issuer: str, **config: Any) -> Server:
    roles = folder / "roles.yaml"
    roles.write_text(ROLES, encoding="utf-8")
    return Server(_app(url, folder, AUTH=True, AUTH_KEY_FILE=str(folder / "auth-key.json"), OIDC_ISSUER=issuer,
                       OIDC_CLIENT_ID=CLIENT, OIDC_CLIENT_SECRET=SECRET, OIDC_ROLES=str(roles),
                       PAGES_TOKEN_SIGN_IN=False, **config))


@pytest.fixture(scope="module")
def oidc(four_sites: tuple[Any, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    port, other_port = _free_port(), _free_port()
    issuer = f"http://127.0.0.1:{port}"
    pages = _gateway(four_sites[1], tmp_path_factory.mktemp("oidc-pages"), issuer)
    folder = tmp_path_factory.mktemp("oidc-audit")
    audited = _gateway(f"sqlite:///{folder / 'audit.db'}", folder, issuer, AUDIT=True,
                       AUDIT_JOURNAL_DIR=str(folder / "journal"))
    callbacks = [f"{s.root}/ui/sign-in/callback" for s in (pages, audited)]
    provider = Provider(port, callbacks)
    other = Provider(other_port, callbacks, f"http://localhost:{other_port}")
    yield Setup(pages, audited, provider, other)
    for closing in (provider, other, pages, audited):
        closing.close()


def provider_login(session: requests.Session, url: str, user: str) -> str:
    """From an authorization URL through the provider's login form as `user` (unless the
    provider remembers them) to its redirect back: the gateway's callback URL, not followed."""
    answer = session.get(url, allow_redirects=False, timeout=10)
    for _ in range(8):
        if answer.is_redirect:
            location = urljoin(answer.url, answer.headers["Location"])
            if "/ui/sign-in/callback" in location:
                return location
            answer = session.get(location, allow_redirects=False, timeout=10)
            continue
        form = re.search(r'action="([^"]+)" method="post"', answer.text)
        assert form, answer.text[:500]
        answer = session.post(form[1], data={"prompt": "login", "login": user, "password": "any"},
                              allow_redirects=False, timeout=10)
    raise AssertionError("the provider never sent the browser back")


def start(session: requests.Session, server: Server) -> str:
    """The gateway's sign-in started: the provider's authorization URL it sends the browser to."""
    answer = session.get(f"{server.root}/ui/sign-in/start", params={"next": "/ui/"}, allow_redirects=False,
                         timeout=10)
    assert answer.status_code == 303 and SIGN_IN in answer.cookies, answer.text[:300]
    return str(answer.headers["Location"])


def refused(answer: requests.Response, status: int, says: str) -> None:
    """A sign-in failure page: the status, the reason, and no session."""
    assert answer.status_code == status, answer.text[:500]
    assert "text/html" in answer.headers["Content-Type"]
    assert says in html.unescape(answer.text), re.search(r'id="sign-in-failed">([^<]*)', answer.text)
    assert SESSION not in answer.cookies and "Try again" in answer.text


def _with(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()} | params
    return parts._replace(query=urlencode(query)).geturl()


def _patients(page: Any) -> list[str]:
    return sorted(page.locator("tr.child").evaluate_all("rows => rows.map(r => r.dataset.patient)"))


def _browser_sign_in(chromium: Any, oidc: Setup, user: str) -> tuple[Any, Any]:
    context = chromium.new_context()
    page, _ = visit(context, f"{oidc.pages.root}/ui/?as-of={AS_OF}")
    assert page.url.startswith(f"{oidc.pages.root}/ui/sign-in")  # a page needing a session: to sign-in
    # Issue 29 item 7: no Sign out before anyone signed in; the page's one action is signing in.
    assert page.locator("#sign-out").count() == 0 and page.locator("text=Sign out").count() == 0
    assert page.locator("#token").count() == 0  # the pasted-token sign-in is off here
    page.click("#sign-in-oidc")
    page.wait_for_url(f"{oidc.provider.issuer}/interaction/**")  # the provider's own login form
    page.fill("input[name=login]", user)
    page.fill("input[name=password]", "any")
    with page.expect_navigation(url=f"{oidc.pages.root}/ui/**", wait_until="networkidle"):
        page.click("button[type=submit]")
    page.wait_for_function("() => !document.querySelector('[data-fragment]')", timeout=60_000)
    return context, page


@pytest.mark.slow
def test_a_site_user_and_the_centre_sign_in_through_the_provider_and_see_what_their_groups_give(
        browser: Any, oidc: Setup, four_sites: tuple[Any, str]) -> None:
    root, subjects = oidc.pages.root, _subjects(four_sites[0])
    site_a = sorted(s["individual"]["reference"].split("/")[1] for s in subjects if "site-a" in sites_of(s))
    context, page = _browser_sign_in(browser, oidc, "site-a")
    assert page.locator("#signed-in-as").inner_text() == "anna.site-a"
    cookie = next(c for c in context.cookies() if c["name"] == SESSION)
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and cookie["path"] == "/ui"
    assert not any(c["name"] == SIGN_IN for c in context.cookies())  # the sign-in under way is over
    # Site A's staff: site A's children, as a site-A client of the API would, and no more.
    assert _patients(page) == site_a and int(page.locator("#enrolled-total").inner_text()) == len(site_a)
    assert page.goto(f"{root}/ui/child/site-a-A0004").status == 200
    assert page.goto(f"{root}/ui/child/site-b-B0002").status == 404  # as a child never enrolled
    # Sign-out ends the session on the server: the old cookie no longer opens a page.
    page.goto(f"{root}/ui/?as-of={AS_OF}")
    with page.expect_navigation():
        page.click("#sign-out button")
    assert page.url.startswith(f"{root}/ui/sign-in") and page.locator("#signed-out").count() == 1
    replayed = requests.get(f"{root}/ui/", cookies={SESSION: cookie["value"]}, allow_redirects=False, timeout=10)
    assert replayed.status_code == 303 and "/ui/sign-in" in replayed.headers["Location"]
    page.goto(f"{root}/ui/?as-of={AS_OF}")
    assert page.url.startswith(f"{root}/ui/sign-in")
    context.close()

    # The centre: every site's children.
    context, page = _browser_sign_in(browser, oidc, "centre")
    assert page.locator("#signed-in-as").inner_text() == "carla.centre"
    assert int(page.locator("#enrolled-total").inner_text()) == len(subjects)
    shown = _patients(page)
    assert any(p.startswith("site-a-") for p in shown) and any(p.startswith("site-b-") for p in shown)
    assert page.goto(f"{root}/ui/child/site-b-B0002").status == 200
    context.close()

    # Groups the mapping does not know: signed in, sees nothing, told why.
    context, page = _browser_sign_in(browser, oidc, "nobody")
    assert "nora.nobody" in page.locator("#no-access").inner_text()
    assert "your groups (staff) give no access here" in page.locator("#no-access").inner_text()
    assert page.locator("#enrolment").count() == 0 and page.locator("tr.child").count() == 0
    assert "Enrolment: not shown with your access" in page.content()
    assert page.goto(f"{root}/ui/child/site-a-A0004").status == 403
    context.close()


@pytest.mark.slow
def test_sign_in_failures_are_pages_without_a_session(oidc: Setup) -> None:
    root = oidc.pages.root
    browser_ = requests.Session()  # one browser: its cookies for the gateway and the provider
    # A state that is not the one this browser started with (a forged answer).
    answer = provider_login(browser_, start(browser_, oidc.pages), "site-a")
    refused(browser_.get(_with(answer, state="forged"), allow_redirects=False, timeout=10), 400,
            "state does not match")
    # The callback is used up by the failure: the genuine answer now finds no sign-in under way.
    refused(browser_.get(answer, allow_redirects=False, timeout=10), 400, "no sign-in is under way")
    # A good sign-in, then its answer replayed: nothing under way any more, no second session.
    answer = provider_login(browser_, start(browser_, oidc.pages), "site-a")
    signed = browser_.get(answer, allow_redirects=False, timeout=10)
    assert signed.status_code == 303 and SESSION in signed.cookies
    refused(browser_.get(answer, allow_redirects=False, timeout=10), 400, "no sign-in is under way")
    # Its code replayed into a new sign-in of this browser (that one's state): the provider refuses it.
    code = parse_qs(urlsplit(answer).query)["code"][0]
    fresh = provider_login(browser_, start(browser_, oidc.pages), "site-a")
    refused(browser_.get(_with(fresh, code=code), allow_redirects=False, timeout=10), 400,
            "refused the code (invalid_grant")
    # A nonce that is not this sign-in's: the provider puts the one it was given in the ID token.
    url = start(browser_, oidc.pages)
    refused(browser_.get(provider_login(browser_, _with(url, nonce="another-nonce"), "site-a"),
                         allow_redirects=False, timeout=10), 400, "nonce is not this sign-in's")
    # An answer from another provider (the same client registered there, RFC 9207's iss says so).
    url = start(browser_, oidc.pages)
    other_url = oidc.other.issuer + "/auth?" + urlsplit(url).query
    refused(browser_.get(provider_login(browser_, other_url, "site-a"), allow_redirects=False, timeout=10),
            400, "the answer came from another provider")
    # The provider said no (the person cancelled): said so.
    state = parse_qs(urlsplit(start(browser_, oidc.pages)).query)["state"][0]
    refused(browser_.get(f"{root}/ui/sign-in/callback", params={"state": state, "error": "access_denied"},
                         allow_redirects=False, timeout=10), 400, "did not sign you in: access_denied")
    # The pasted-token sign-in is off on this gateway: its form is refused, not just hidden.
    forced = requests.post(f"{root}/ui/sign-in", data={"token": "x"}, timeout=10)
    assert forced.status_code == 403 and "off on this server" in forced.text
    # A callback without any sign-in started: nothing to finish.
    refused(requests.get(f"{root}/ui/sign-in/callback?code=x&state=y", allow_redirects=False, timeout=10),
            400, "no sign-in is under way")


def _id_token(provider_url: str, client: str, secret: str, redirect: str, user: str) -> str:
    """A real ID token from a provider for `client`, got by that client's own code flow."""
    session = OAuth2Session(client, secret, scope="openid profile", redirect_uri=redirect,
                            code_challenge_method="S256")
    verifier = "v" * 50
    url, _ = session.create_authorization_url(f"{provider_url}/auth", code_verifier=verifier, nonce="the-nonce")
    answer = provider_login(requests.Session(), url, user)
    token = session.fetch_token(f"{provider_url}/token", authorization_response=answer, code_verifier=verifier,
                                timeout=10)
    return str(token["id_token"])


def test_id_tokens_of_another_issuer_or_audience_are_refused(oidc: Setup) -> None:
    """The gateway's own client checks real ID tokens: signed with the same keys (the providers'
    quick-start keys), so that the issuer and audience checks, not the signature, must refuse them."""
    client = oidc.pages.app.extensions["fhir_oidc"]
    redirect = f"{oidc.pages.root}/ui/sign-in/callback"
    good = _id_token(oidc.provider.issuer, CLIENT, SECRET, redirect, "site-a")
    assert client.verify(good, "the-nonce")["groups"] == ["ucmsc-site-a", "staff"]
    with pytest.raises(SignInFailed, match="nonce is not this sign-in's"):
        client.verify(good, "another")
    theirs = _id_token(oidc.other.issuer, CLIENT, SECRET, redirect, "site-a")
    with pytest.raises(SignInFailed, match=f"issued by '{oidc.other.issuer}', not by {oidc.provider.issuer}"):
        client.verify(theirs, "the-nonce")
    other_app = _id_token(oidc.provider.issuer, "other-app", "other-test-secret", redirect, "site-a")
    with pytest.raises(SignInFailed, match="meant for 'other-app', not for this server"):
        client.verify(other_app, "the-nonce")
    with pytest.raises(SignInFailed, match="expired"):
        type(client)(client.settings, clock=lambda: time.time() + 7200).verify(good, "the-nonce")
    tampered = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    with pytest.raises(SignInFailed, match="signature"):
        client.verify(tampered, "the-nonce")


@pytest.mark.slow  # three gateways and a 1 s wait: 2.6 s on a quiet machine
def test_a_provider_down_or_speaking_for_another_issuer_is_a_clear_page_within_the_bound(
        oidc: Setup, tmp_path_factory: pytest.TempPathFactory) -> None:
    silent = socket.socket()  # accepts connections (the kernel's backlog) and never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    gone = _free_port()  # nothing listens: refused at once
    try:
        for issuer, says in ((f"http://127.0.0.1:{silent.getsockname()[1]}", "did not answer within 1 s"),
                             (f"http://127.0.0.1:{gone}", "could not be reached"),
                             (f"http://127.0.0.1:{urlsplit(oidc.other.issuer).port}", "names another issuer")):
            folder = tmp_path_factory.mktemp("oidc-down")
            server = _gateway(f"sqlite:///{folder / 'down.db'}", folder, issuer, OIDC_TIMEOUT=1)
            try:
                started = time.monotonic()
                answer = requests.get(f"{server.root}/ui/sign-in/start", allow_redirects=False, timeout=10)
                assert time.monotonic() - started < 3  # the bound (1 s here; 5 s by default), and no hang
                refused(answer, 503, says)
                assert SIGN_IN not in answer.cookies
            finally:
                server.close()
    finally:
        silent.close()


def test_a_signed_in_person_is_the_agent_of_the_audit_events(oidc: Setup) -> None:
    browser_ = requests.Session()
    answer = provider_login(browser_, start(browser_, oidc.audited), "site-a")
    assert browser_.get(answer, allow_redirects=False, timeout=10).status_code == 303
    assert browser_.get(f"{oidc.audited.root}/ui/child/site-a-A0001", timeout=10).status_code == 404  # none here
    flush_all()
    store = oidc.audited.app.extensions["fhir_store"]
    events = list(search_all(store, "AuditEvent", [("entity", "Patient/site-a-A0001")]))
    assert len(events) == 1
    agent = events[0]["agent"][0]
    assert agent["who"] == {"identifier": {"system": oidc.provider.issuer, "value": "site-a"},
                            "display": "anna.site-a"}
    assert agent["type"]["coding"][0]["code"] == "humanuser"
    assert agent["role"][0]["coding"][0]["code"] == "site-a" and agent["name"] == "anna.site-a (site site-a)"


def test_without_research_subject_access_the_study_page_says_so_per_section(oidc: Setup) -> None:
    """Issue 29 item 7: no whole-page 403 where the sections can say what is not shown, and the
    error pages' "Back to the study" leads to a page, not to the same 403."""
    browser_ = requests.Session()
    answer = provider_login(browser_, start(browser_, oidc.pages), "reader")
    assert browser_.get(answer, allow_redirects=False, timeout=10).status_code == 303
    study = browser_.get(f"{oidc.pages.root}/ui/", params={"whole": "1", "as-of": AS_OF}, timeout=60)
    assert study.status_code == 200 and 'id="enrolment"' not in study.text
    for section in ("Enrolment", "Adherence", "Change from baseline", "Adverse events"):
        assert f"{section}: not shown with your access" in study.text, section
    refused = browser_.get(f"{oidc.pages.root}/ui/workbench", timeout=10)
    assert refused.status_code == 403
    back = re.search(r'<a href="([^"]+)">Back to the study</a>', refused.text)
    assert back and browser_.get(urljoin(refused.url, back[1]), timeout=60).status_code == 200


def test_serve_keeps_the_token_sign_in_to_loopback_and_checks_the_oidc_options(tmp_path: Any) -> None:
    assert SignInOptions().worker_env(loopback=True, auth=True) == {"FHIR_ADAPTER_TOKEN_SIGN_IN": "on"}
    assert SignInOptions().worker_env(loopback=False, auth=True) == {"FHIR_ADAPTER_TOKEN_SIGN_IN": "off"}
    assert SignInOptions(token_sign_in=True).worker_env(False, True)["FHIR_ADAPTER_TOKEN_SIGN_IN"] == "on"
    roles, secret = tmp_path / "roles.yaml", tmp_path / "secret"
    roles.write_text(ROLES, encoding="utf-8")
    secret.write_text(SECRET, encoding="utf-8")
    options = SignInOptions("https://login.example/realms/staff", CLIENT, str(secret), str(roles))
    env = options.worker_env(False, True)
    assert env["FHIR_ADAPTER_OIDC_ISSUER"] == "https://login.example/realms/staff"
    assert env["FHIR_ADAPTER_OIDC_CLIENT_SECRET_FILE"] == str(secret) and SECRET not in env.values()
    with pytest.raises(click.UsageError, match="needs --auth"):
        options.worker_env(False, False)
    roles.write_text("groups: {centre: {scope: 'system/Nothing.rs'}}", encoding="utf-8")
    with pytest.raises(click.UsageError, match="Nothing is not a resource type"):
        options.worker_env(False, True)


def test_behind_https_the_cookies_are_secure_and_the_callback_is_the_public_one(
        oidc: Setup, tmp_path: Any) -> None:
    roles = tmp_path / "roles.yaml"
    roles.write_text(ROLES, encoding="utf-8")
    app = _app(f"sqlite:///{tmp_path / 'https.db'}", tmp_path, AUTH=True, AUTH_KEY_FILE=str(tmp_path / "key.json"),
               FHIR_BASE_URL="https://fhir.hospital.example/fhir", OIDC_ISSUER=oidc.provider.issuer,
               OIDC_CLIENT_ID=CLIENT, OIDC_CLIENT_SECRET=SECRET, OIDC_ROLES=str(roles))
    answer = app.test_client().get("/ui/sign-in/start?next=/ui/child/x")
    assert answer.status_code == 303
    query = parse_qs(urlsplit(answer.headers["Location"]).query)
    assert query["redirect_uri"] == ["https://fhir.hospital.example/ui/sign-in/callback"]
    assert query["code_challenge_method"] == ["S256"] and query["code_challenge"] and query["nonce"]
    cookie = answer.headers["Set-Cookie"]
    assert cookie.startswith(f"{SIGN_IN}=") and "; Secure" in cookie and "; HttpOnly" in cookie
    assert "; SameSite=Lax" in cookie and "; Path=/ui/sign-in" in cookie


@pytest.mark.slow  # waits for a code to expire
def test_an_expired_code_is_refused_by_the_provider_and_signs_nobody_in(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    port, folder = _free_port(), tmp_path_factory.mktemp("oidc-expiry")
    server = _gateway(f"sqlite:///{folder / 'expiry.db'}", folder, f"http://127.0.0.1:{port}")
    provider = Provider(port, [f"{server.root}/ui/sign-in/callback"], code_ttl=1)
    try:
        browser_ = requests.Session()
        answer = provider_login(browser_, start(browser_, server), "site-a")
        time.sleep(2.5)  # past the code's 1 s (the provider's clock has whole seconds)
        refused(browser_.get(answer, allow_redirects=False, timeout=10), 400, "refused the code (invalid_grant")
    finally:
        provider.close()
        server.close()


# -- from a review of the sign-in (each failed before its fix) ------------------------------------

def test_a_nonce_the_browser_edited_to_non_ascii_is_a_page_not_a_500(oidc: Setup) -> None:
    """The provider echoes the nonce of the authorization URL into the ID token; comparing str
    holding non-ASCII raised TypeError in compare_digest."""
    browser = requests.Session()
    url = _with(start(browser, oidc.pages), nonce="n\u00e9")
    refused(browser.get(provider_login(browser, url, "site-a"), allow_redirects=False, timeout=10), 400,
            "nonce is not this sign-in's")


def test_an_answer_without_iss_from_a_provider_that_always_sends_it_is_refused(oidc: Setup) -> None:
    """RFC 9207 2.4: oidc-provider's discovery says authorization_response_iss_parameter_supported."""
    browser = requests.Session()
    answer = urlsplit(provider_login(browser, start(browser, oidc.pages), "site-a"))
    query = {k: v[0] for k, v in parse_qs(answer.query).items() if k != "iss"}
    refused(browser.get(answer._replace(query=urlencode(query)).geturl(), allow_redirects=False, timeout=10),
            400, "does not name its provider (iss)")


def test_a_group_claim_is_read_as_the_provider_writes_it() -> None:
    from adapter.auth.roles import resolve, role_map
    roles = role_map({"groups": {"centre": {"scope": "system/*.rs"}}})
    # a single-valued claim is one group: "not centre" must not become the centre's access
    assert resolve(roles, {"groups": "not centre"})[0] is None
    assert resolve(role_map({"groups": {"ucmsc centre": {"scope": "system/*.rs"}}}),
                   {"groups": "ucmsc centre"})[0] is not None
    # a namespaced claim name holds dots (Auth0): the whole name first, then a path (Keycloak)
    dotted = role_map({"claim": "https://hospital.example/groups", "groups": {"centre": {"scope": "system/*.rs"}}})
    assert resolve(dotted, {"https://hospital.example/groups": ["centre"]})[0] is not None
    nested = role_map({"claim": "realm_access.roles", "groups": {"centre": {"scope": "system/*.rs"}}})
    assert resolve(nested, {"realm_access": {"roles": ["centre"]}})[0] is not None


def test_a_provider_dripping_its_answer_is_cut_at_the_bound_in_all() -> None:
    """requests' timeout bounds each socket read: a byte every half second held the worker ~16 s
    with a 1 s bound. Now the whole call is bounded."""
    import threading

    from adapter.auth.oidc import OidcClient, OidcSettings
    from adapter.auth.roles import role_map
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)

    def drip() -> None:
        conn, _ = listener.accept()
        conn.recv(4096)
        with conn:
            for byte in b"HTTP/1.1 200 OK\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa":
                try:
                    conn.send(bytes([byte]))
                except OSError:
                    return
                time.sleep(0.5)
    threading.Thread(target=drip, daemon=True).start()
    client = OidcClient(OidcSettings(f"http://127.0.0.1:{listener.getsockname()[1]}", "c", "s",
                                     role_map({"groups": {"x": {"scope": "system/*.rs"}}}), timeout=1))
    started = time.monotonic()
    with pytest.raises(SignInFailed, match="did not answer within 1 s"):
        client.metadata()
    assert time.monotonic() - started < 2.5
    listener.close()


def test_id_token_claims_openid_connect_requires_are_checked() -> None:
    """azp of another client with one audience, no iat, a not-before an hour ahead: each refused
    (OpenID Connect Core 3.1.3.7; the review's tokens were accepted)."""
    from joserfc import jwt as jose_jwt
    from joserfc.jwk import KeySet, RSAKey

    from adapter.auth.oidc import OidcClient, OidcSettings
    from adapter.auth.roles import role_map
    key = RSAKey.generate_key(2048, parameters={"kid": "k1"}, private=True)
    client = OidcClient(OidcSettings("http://127.0.0.1:9", CLIENT, SECRET,
                                     role_map({"groups": {"x": {"scope": "system/*.rs"}}})))
    client._keys = KeySet([key])  # as fetched from the provider's jwks_uri
    now = int(time.time())
    base = {"iss": "http://127.0.0.1:9", "aud": CLIENT, "sub": "u1", "nonce": "n", "iat": now, "exp": now + 300}

    def signed(claims: dict[str, Any]) -> str:
        return jose_jwt.encode({"alg": "RS256", "kid": "k1"}, claims, key)
    assert client.verify(signed(base), "n")["sub"] == "u1"
    assert client.verify(signed({**base, "azp": CLIENT}), "n")["sub"] == "u1"
    for claims, says in (({**base, "azp": "another-app"}, "azp 'another-app'"),
                         ({k: v for k, v in base.items() if k != "iat"}, "when it was issued"),
                         ({**base, "nbf": now + 3600}, "not valid yet"),
                         ({**base, "iat": True}, "when it was issued")):
        with pytest.raises(SignInFailed, match=re.escape(says)):
            client.verify(signed(claims), "n")


def test_sign_ins_under_way_are_bounded(oidc: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    """Anyone may start a sign-in (a GET), and each was a row for 10 minutes: 200 anonymous
    starts left 200 rows. Past the bound (expired ones purged first), a 503 with Retry-After."""
    import adapter.store.page_sessions as page_sessions
    store = oidc.audited.app.extensions["fhir_store"]
    with store._autocommit.connect() as conn:
        under_way = store._under_way(conn, int(time.time()))
    monkeypatch.setattr(page_sessions, "MAX_SIGN_INS", under_way + 2)
    for _ in range(2):
        start(requests.Session(), oidc.audited)
    answer = requests.get(f"{oidc.audited.root}/ui/sign-in/start", allow_redirects=False, timeout=10)
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "60", answer.text[:300]
    assert "too many sign-ins" in html.unescape(answer.text) and SIGN_IN not in answer.cookies
