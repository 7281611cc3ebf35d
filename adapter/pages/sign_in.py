"""Signing in to the pages (an access token pasted, kept in an HttpOnly cookie sent to the
pages' paths only) and out."""
from __future__ import annotations


from flask import current_app, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from adapter.auth.tokens import Unauthenticated, authenticate
from adapter.pages.paths import COOKIE, PREFIX

__all__ = ["sign_in", "sign_out", "local_target"]


def local_target(target: str | None) -> str:
    """Where to go after sign-in: a page of ours only (no open redirect)."""
    # no control character either: a CR or LF in the Location header was a 500 (and a header
    # injection wherever a server lets one through)
    if target and target.startswith(PREFIX + "/") and not target.startswith("//") and "\\" not in target \
            and target.isprintable():
        return target
    return PREFIX + "/"


def sign_in() -> ResponseReturnValue:
    target = local_target(request.values.get("next"))
    if not current_app.config.get("AUTH"):
        return redirect(target, 303)
    if request.method == "GET":
        return render_template("sign_in.html", target=target, problem="")
    token = (request.form.get("token") or "").strip()
    try:
        grant = authenticate(f"Bearer {token}" if token else None)
    except Unauthenticated as error:
        return render_template("sign_in.html", target=target, problem=error.reason), 401
    response = redirect(target, 303)
    base = str(current_app.config.get("FHIR_BASE_URL") or "")
    # The cookie lives as long as the token (by the tokens' clock); only the pages' paths send it.
    now = current_app.extensions["fhir_auth"].clock()
    response.set_cookie(COOKIE, token, max_age=max(1, grant.expires - int(now)), path=PREFIX,
                        httponly=True, samesite="Strict", secure=request.is_secure or base.startswith("https:"))
    return response


def sign_out() -> ResponseReturnValue:
    response = redirect(url_for("pages.sign_in") if current_app.config.get("AUTH") else PREFIX + "/", 303)
    response.delete_cookie(COOKIE, path=PREFIX)
    return response
