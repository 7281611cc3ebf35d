"""How a person signs in to the pages, from the configuration: OpenID Connect (the hospital's
provider, adapter/auth/oidc.py) and/or the pasted access token (development).

Config keys (each falls back to its environment variable):
  OIDC_ISSUER         FHIR_ADAPTER_OIDC_ISSUER          the provider's issuer URL (https; http on loopback)
  OIDC_CLIENT_ID      FHIR_ADAPTER_OIDC_CLIENT_ID       this server's client at the provider
  OIDC_CLIENT_SECRET  FHIR_ADAPTER_OIDC_CLIENT_SECRET   its secret (or _FILE: a file holding it)
  OIDC_ROLES          FHIR_ADAPTER_OIDC_ROLES           the groups -> access mapping (YAML, adapter/auth/roles.py)
  OIDC_SCOPE          FHIR_ADAPTER_OIDC_SCOPE           scopes asked for; default "openid profile"
  OIDC_TIMEOUT        FHIR_ADAPTER_OIDC_TIMEOUT         seconds per call to the provider; default 5
  PAGES_SESSION_SECONDS FHIR_ADAPTER_PAGES_SESSION_SECONDS  how long a session lasts; default 8 hours
  PAGES_TOKEN_SIGN_IN FHIR_ADAPTER_TOKEN_SIGN_IN=on|off   the pasted-token sign-in; default on
                      (`fhir-adapter serve` turns it off on a non-loopback address unless told)
OpenID Connect needs AUTH: the pages then read through the same guard as the API's clients.
"""
from __future__ import annotations

import os
import pathlib

from flask import Flask

from adapter.auth.oidc import DEFAULT_TIMEOUT, OidcClient, OidcSettings
from adapter.auth.roles import load_roles
from adapter.pages.context import OIDC, SESSIONS
from adapter.store.page_sessions import PageSessions

__all__ = ["register", "DEFAULT_SESSION_SECONDS"]

DEFAULT_SESSION_SECONDS = 8 * 3600  # a working day's shift


def _setting(app: Flask, key: str, default: str | None = None) -> str | None:
    value = app.config.get(key)
    if value is None:
        value = os.environ.get(f"FHIR_ADAPTER_{key}") or default
    return None if value is None else str(value)


def _secret(app: Flask) -> str:
    secret = _setting(app, "OIDC_CLIENT_SECRET")
    if secret is None and os.environ.get("FHIR_ADAPTER_OIDC_CLIENT_SECRET_FILE"):
        secret = pathlib.Path(os.environ["FHIR_ADAPTER_OIDC_CLIENT_SECRET_FILE"]).read_text(encoding="utf-8").strip()
    if not secret:
        raise ValueError("OpenID Connect sign-in needs the client's secret (FHIR_ADAPTER_OIDC_CLIENT_SECRET "
                         "or FHIR_ADAPTER_OIDC_CLIENT_SECRET_FILE)")
    return secret


def register(app: Flask) -> None:
    token = _setting(app, "PAGES_TOKEN_SIGN_IN", "on")
    app.config["PAGES_TOKEN_SIGN_IN"] = token is not None and token.strip().lower() in ("on", "1", "true", "yes")
    app.config["PAGES_SESSION_SECONDS"] = int(_setting(app, "PAGES_SESSION_SECONDS") or DEFAULT_SESSION_SECONDS)
    store = app.extensions["fhir_store"]
    if isinstance(store, PageSessions):  # the SQL stores; a memory store has no sessions
        app.extensions[SESSIONS] = store
    issuer = _setting(app, "OIDC_ISSUER")
    if not issuer:
        return
    if not app.config.get("AUTH"):
        raise ValueError("OpenID Connect sign-in (OIDC_ISSUER) needs authorisation on (AUTH, --auth): "
                         "without it the pages need no sign-in")
    client_id, roles = _setting(app, "OIDC_CLIENT_ID"), _setting(app, "OIDC_ROLES")
    if not client_id or not roles:
        raise ValueError("OpenID Connect sign-in needs OIDC_CLIENT_ID and OIDC_ROLES (the groups -> access mapping)")
    app.extensions[OIDC] = OidcClient(OidcSettings(
        issuer, client_id, _secret(app), load_roles(roles), _setting(app, "OIDC_SCOPE") or "openid profile",
        float(_setting(app, "OIDC_TIMEOUT") or DEFAULT_TIMEOUT)))
