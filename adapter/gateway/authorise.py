"""The one request hook that authenticates (SMART Backend Services access tokens).

With authorisation on (config AUTH), every request but the public ones (the CapabilityStatement,
the SMART configuration; the token endpoint lives outside the FHIR base) must carry a valid
access token; its grant becomes `g.access`, and from it the guarded repository
(adapter/gateway/access.py) that every handler is given.

The web pages (/ui/) take a person's session instead (OpenID Connect sign-in, its access the
groups -> access mapping's: adapter/auth/roles.py), or the token a development sign-in pasted
(a browser cannot do SMART Backend Services itself), and send a page request without either to
the sign-in page. These cookies count on /ui/ paths only: the API never acts on them, so a
cross-site request cannot use them there.
"""
from __future__ import annotations

import time
from urllib.parse import quote

from flask import Flask, Response, current_app, g, redirect, request

from adapter.auth.guard import Access, access_of
from adapter.auth.tokens import Unauthenticated, authenticate
from adapter.fhir.outcomes import FhirError, Issue
from adapter.gateway.base import lean_read_safe
from adapter.pages import COOKIE, PREFIX as PAGES, SESSION_COOKIE, SignedIn, is_page, is_public_page
from adapter.pages.context import SESSIONS
from adapter.store.page_sessions import SESSION

__all__ = ["register", "unauthorised", "access_from"]

_PUBLIC = ("/metadata", "/.well-known/smart-configuration")


def register(app: Flask) -> None:
    fhir = app.config["FHIR_PATH"]
    public = {fhir + p for p in _PUBLIC} | {fhir + p + "/" for p in _PUBLIC}

    @app.before_request
    @lean_read_safe("the lean path checks the same token with access_from")
    def authorise() -> Response | None:
        g.access = None
        if app.config.get("AUTH") and is_page(request.path):
            return _authorise_page()
        # OPTIONS: a CORS preflight carries no credentials (Fetch standard); /auth/: the token
        # endpoint authenticates the client by its assertion instead.
        if not app.config.get("AUTH") or request.path in public or request.method == "OPTIONS" \
                or request.path.startswith("/auth/"):
            return None
        header = request.headers.get("Authorization")
        try:
            g.access = access_from(app, header)
        except Unauthenticated as error:
            raise unauthorised(str(error), bool(header)) from None
        return None


def access_from(app: Flask, authorization: str | None) -> Access:
    """The grant of an `Authorization: Bearer` header, or Unauthenticated: the one check, for
    this hook and for the lean read path (adapter/gateway/lean_read.py), which runs outside
    Flask's app context."""
    grant = authenticate(authorization, app=app)
    return access_of(grant.client, grant.site, grant.scope, grant.policy)


def _authorise_page() -> Response | None:
    """A page: its grant from the person's session (OpenID Connect) or, where the pasted-token
    sign-in is on, from the token cookie; else (HTML, not a FHIR 401) to the sign-in page. A
    session becomes an Access like a client's, so the same guard holds it."""
    if is_public_page(request.path):
        return None
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    session = request.cookies.get(SESSION_COOKIE)
    sessions = app.extensions.get(SESSIONS)
    data = sessions.get_session(SESSION, session, int(time.time())) if session and sessions is not None else None
    if data is not None:
        g.access = access_of(data["name"], data["site"], data["scope"], user=(data["iss"], data["sub"]))
        g.page_user = SignedIn(data["name"], data["why"])
        return None
    token = request.cookies.get(COOKIE) if app.config.get("PAGES_TOKEN_SIGN_IN") else None
    try:
        g.access = access_from(app, f"Bearer {token}" if token else None)
        g.page_user = SignedIn(g.access.client)
    except Unauthenticated:
        back = request.full_path if request.method == "GET" else PAGES + "/"
        return redirect(f"{PAGES}/sign-in?next={quote(back.rstrip('?'), safe='/')}", 303)  # type: ignore[return-value]
    return None


def unauthorised(reason: str, token_sent: bool) -> FhirError:
    """401 with the RFC 6750 challenge: no error code when no token came (section 3.1)."""
    challenge = 'Bearer realm="fhir"'
    if token_sent:
        challenge += f', error="invalid_token", error_description="{reason.replace(chr(34), chr(39))}"'
    return FhirError(401, [Issue("login", f"{reason}: send Authorization: Bearer <access token> "
                                 "(SMART Backend Services; see .well-known/smart-configuration)")],
                     {"WWW-Authenticate": challenge})


