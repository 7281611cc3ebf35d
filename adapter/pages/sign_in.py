"""Signing in to the pages and out.

Through the hospital's OpenID Connect provider (adapter/auth/oidc.py): `start` keeps the
sign-in's state, nonce and PKCE verifier server-side under a random cookie for the sign-in paths
and sends the browser to the provider; `callback` takes them back (once: a replayed callback
finds nothing), checks the answer and the ID token, maps the person's groups to an access
(adapter/auth/roles.py) and opens a server-side session. Whatever fails is said on a page, and
no session is made.

For development, an access token may be pasted instead (kept in an HttpOnly cookie sent to the
pages' paths only) where PAGES_TOKEN_SIGN_IN is on.
"""
from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

from flask import Response, current_app, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from adapter.auth.oidc import OidcClient, SignInFailed
from adapter.auth.roles import resolve
from adapter.auth.tokens import Unauthenticated, authenticate
from adapter.pages.context import OIDC, SESSIONS
from adapter.pages.paths import COOKIE, PREFIX, SESSION_COOKIE, SIGN_IN_COOKIE, SIGN_IN_PATH
from adapter.store.page_sessions import SESSION, SIGN_IN, TooManySignIns

__all__ = ["sign_in", "sign_in_start", "sign_in_callback", "sign_out", "local_target"]

SIGN_IN_SECONDS = 600  # how long a person may take at the provider's login form


def local_target(target: str | None) -> str:
    """Where to go after sign-in: a page of ours only (no open redirect)."""
    # no control character either: a CR or LF in the Location header was a 500 (and a header
    # injection wherever a server lets one through)
    if target and target.startswith(PREFIX + "/") and not target.startswith("//") and "\\" not in target \
            and target.isprintable():
        return target
    return PREFIX + "/"


def _secure() -> bool:
    return request.is_secure or str(current_app.config.get("FHIR_BASE_URL") or "").startswith("https:")


def _root() -> str:
    """This server's public root: the base URL's, when one is set (behind a proxy), else the request's."""
    base = str(current_app.config.get("FHIR_BASE_URL") or "")
    if not base:
        return request.host_url.rstrip("/")
    fhir = current_app.config["FHIR_PATH"]
    return (base[: -len(fhir)] if base.endswith(fhir) else f"{urlsplit(base).scheme}://{urlsplit(base).netloc}")


def _oidc() -> OidcClient | None:
    return current_app.extensions.get(OIDC)  # type: ignore[no-any-return]


def _page(target: str, problem: str = "", status: int = 200) -> tuple[str, int]:
    client = _oidc()
    return render_template("sign_in.html", target=target, problem=problem, oidc=client is not None,
                           issuer=client.settings.issuer if client else "",
                           token_sign_in=bool(current_app.config.get("PAGES_TOKEN_SIGN_IN")),
                           signed_out=request.args.get("signed-out") == "1"), status


def sign_in() -> ResponseReturnValue:
    target = local_target(request.values.get("next"))
    if not current_app.config.get("AUTH"):
        return redirect(target, 303)
    if request.method == "GET":
        return _page(target)
    if not current_app.config.get("PAGES_TOKEN_SIGN_IN"):
        return _page(target, "signing in with a pasted token is off on this server", 403)
    token = (request.form.get("token") or "").strip()
    try:
        grant = authenticate(f"Bearer {token}" if token else None)
    except Unauthenticated as error:
        return _page(target, error.reason, 401)
    response = redirect(target, 303)
    # The cookie lives as long as the token (by the tokens' clock); only the pages' paths send it.
    now = current_app.extensions["fhir_auth"].clock()
    response.set_cookie(COOKIE, token, max_age=max(1, grant.expires - int(now)), path=PREFIX,
                        httponly=True, samesite="Strict", secure=_secure())
    return response


def _failed(reason: str, status: int) -> Response:
    response = Response(render_template("sign_in_failed.html", reason=reason), status)
    response.delete_cookie(SIGN_IN_COOKIE, path=SIGN_IN_PATH)
    return response


def sign_in_start() -> ResponseReturnValue:
    client = _oidc()
    if client is None or not current_app.config.get("AUTH"):
        return _failed("signing in through an OpenID Connect provider is not set up on this server", 404)
    try:
        url, pending = client.begin(_root() + SIGN_IN_PATH + "/callback")
    except SignInFailed as error:
        return _failed(str(error), error.status)
    now = int(time.time())
    try:
        value = current_app.extensions[SESSIONS].open_session(
            SIGN_IN, {**pending, "next": local_target(request.args.get("next"))}, now + SIGN_IN_SECONDS, now)
    except TooManySignIns:
        busy = _failed("too many sign-ins are under way on this server; try again in a minute", 503)
        busy.headers["Retry-After"] = "60"
        return busy
    response = redirect(url, 303)
    # Lax, not Strict: the provider's redirect back is a cross-site navigation, and must bring it.
    response.set_cookie(SIGN_IN_COOKIE, value, max_age=SIGN_IN_SECONDS, path=SIGN_IN_PATH, httponly=True,
                        samesite="Lax", secure=_secure())
    return response


def _name(claims: dict[str, Any]) -> str:
    for key in ("preferred_username", "name", "email"):
        if isinstance(claims.get(key), str) and claims[key].strip():
            return str(claims[key]).strip()[:128]
    return str(claims["sub"])[:128]


def sign_in_callback() -> ResponseReturnValue:
    client, sessions = _oidc(), current_app.extensions.get(SESSIONS)
    if client is None or sessions is None:
        return _failed("signing in through an OpenID Connect provider is not set up on this server", 404)
    value, now = request.cookies.get(SIGN_IN_COOKIE), int(time.time())
    pending = sessions.take_session(SIGN_IN, value, now) if value else None
    if pending is None:
        return _failed("no sign-in is under way in this browser: it was finished already (a replayed answer), "
                       f"took longer than {SIGN_IN_SECONDS // 60} minutes, or was started in another browser", 400)
    try:
        claims = client.finish(pending, request.args)
    except SignInFailed as error:
        return _failed(str(error), error.status)
    role, why = resolve(client.settings.roles, claims)
    data = {"iss": claims["iss"], "sub": claims["sub"], "name": _name(claims), "why": why,
            "site": role.site if role else None, "scope": role.scope if role else ""}
    lifetime = int(current_app.config["PAGES_SESSION_SECONDS"])
    session = sessions.open_session(SESSION, data, now + lifetime, now)
    response = redirect(pending["next"], 303)
    old = request.cookies.get(SESSION_COOKIE)
    if old:
        sessions.end_session(old)  # a new sign-in in this browser replaces the session it had
    response.delete_cookie(SIGN_IN_COOKIE, path=SIGN_IN_PATH)
    response.set_cookie(SESSION_COOKIE, session, max_age=lifetime, path=PREFIX, httponly=True, samesite="Lax",
                        secure=_secure())
    return response


def sign_out() -> ResponseReturnValue:
    """Ends the session server-side (every worker sees it gone at once), then the cookies."""
    session, sessions = request.cookies.get(SESSION_COOKIE), current_app.extensions.get(SESSIONS)
    if session and sessions is not None:
        sessions.end_session(session)
    auth = current_app.config.get("AUTH")
    response = redirect(url_for("pages.sign_in") + "?signed-out=1" if auth else PREFIX + "/", 303)
    response.delete_cookie(COOKIE, path=PREFIX)
    response.delete_cookie(SESSION_COOKIE, path=PREFIX)
    return response
