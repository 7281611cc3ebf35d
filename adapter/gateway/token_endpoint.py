"""SMART Backend Services over HTTP: POST /auth/token and the SMART configuration document.

Registered only when auth is on (config AUTH), so that a gateway without it neither makes a
signing key nor advertises an authorisation it does not enforce. Both endpoints are public:
the request hook that demands a token must let them through.
"""
from __future__ import annotations

import logging
import os
import time
from typing import Any, cast

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749.errors import InsecureTransportError, InvalidRequestError
from flask import Blueprint, Flask, Response, current_app, jsonify, request

from adapter.auth.assertions import (
    AUTH_METHOD, AuthClient, BackendServicesGrant, ClientAssertion, query_client, said,
)
from adapter.auth.jwks import ALGORITHM_KEYS, JwksCache
from adapter.auth.keys import default_key_file, load_or_create
from adapter.auth.tokens import DEFAULT_CLIENT_CACHE_SECONDS, DEFAULT_LIFETIME, TokenService
from adapter.gateway.base import service_base
from adapter.store.clients import ClientRegistry

__all__ = ["register", "token_url", "TOKEN_PATH", "SCOPES_SUPPORTED", "auth_enabled"]

log = logging.getLogger("adapter.gateway")
TOKEN_PATH = "/auth/token"
# What a client may ask for (SMART v2 and v1 system scopes); each type may also be named.
SCOPES_SUPPORTED = ["system/*.cruds", "system/*.rs", "system/*.read", "system/*.write", "system/*.*"]
CAPABILITIES = ["client-confidential-asymmetric", "permission-v2", "permission-v1"]


def auth_enabled() -> bool:
    """FHIR_ADAPTER_AUTH=on (or 1, true, yes) in the environment."""
    return os.environ.get("FHIR_ADAPTER_AUTH", "").strip().lower() in ("on", "1", "true", "yes")


def token_url(base: str, fhir_path: str) -> str:
    """The token endpoint beside the FHIR service base: https://h/fhir -> https://h/auth/token."""
    root = base[: -len(fhir_path)] if fhir_path and base.endswith(fhir_path) else base
    return root.rstrip("/") + TOKEN_PATH


def _token_url() -> str:
    return token_url(service_base(), current_app.config["FHIR_PATH"])


def register(app: Flask) -> None:
    """Set up the authorisation server on `app` when its config says AUTH."""
    if not app.config.get("AUTH"):
        return
    config = app.config
    if not config.get("FHIR_BASE_URL"):
        # The assertion's aud is then checked against the Host the request names: an assertion
        # made for another server registering the same client could be replayed here.
        log.warning("auth is on without a fixed base URL (FHIR_BASE_URL): the token URL that "
                    "client assertions must name is taken from each request's Host header")
    clients = app.extensions["fhir_store"]
    if not isinstance(clients, ClientRegistry):
        raise TypeError("auth needs a store with a client registry (the SQL stores have one)")
    key = load_or_create(config.get("AUTH_KEY_FILE") or os.environ.get("FHIR_ADAPTER_AUTH_KEY")
                         or default_key_file(config["DATABASE_URL"]))
    tokens = TokenService(key, clients, int(config.get("ACCESS_TOKEN_LIFETIME", DEFAULT_LIFETIME)),
                          float(config.get("AUTH_CLIENT_CACHE_SECONDS", DEFAULT_CLIENT_CACHE_SECONDS)),
                          clock=config.get("CLOCK") or time.time)
    app.extensions["fhir_auth"] = tokens
    jwks = JwksCache(float(config.get("AUTH_JWKS_CACHE_SECONDS", 300)),
                     float(config.get("AUTH_JWKS_REFETCH_SECONDS", 10)))
    app.extensions["fhir_auth_jwks"] = jwks

    server = AuthorizationServer(query_client=query_client(clients), save_token=lambda *_: None)
    server.init_app(app)

    def generate(grant_type: str, client: AuthClient, scope: str, **_: Any) -> dict[str, Any]:
        token, lifetime = tokens.issue(client.record, scope, service_base())
        return {"access_token": token, "token_type": "bearer", "expires_in": lifetime, "scope": scope}

    server.register_token_generator("default", generate)
    server.register_grant(BackendServicesGrant)
    server.register_client_auth_method(AUTH_METHOD, ClientAssertion(clients, jwks, lambda: [_token_url()]))

    blueprint = Blueprint("smart_auth", __name__)

    @blueprint.post(TOKEN_PATH)
    def token() -> Response:
        try:
            return cast(Response, server.create_token_response())
        except InsecureTransportError:  # Authlib raises it before its own error handling: a 500
            return cast(Response, server.handle_error_response(None, InvalidRequestError(description=said(
                f"the token endpoint takes requests over https only (RFC 6749 section 3.2); this one came "
                f"over plain http for {request.host}: serve with --certfile and --keyfile, or behind a TLS "
                "proxy on this machine that sends X-Forwarded-Proto: https"))))

    @blueprint.get(f"{config['FHIR_PATH']}/.well-known/smart-configuration")
    def smart_configuration() -> Response:
        answer = jsonify(smart_configuration_document(_token_url()))
        answer.headers["Cache-Control"] = "max-age=300"
        return answer

    app.register_blueprint(blueprint)


def smart_configuration_document(token_endpoint: str) -> dict[str, Any]:
    """https://hl7.org/fhir/smart-app-launch/conformance.html, for backend services only."""
    return {
        "token_endpoint": token_endpoint,
        "token_endpoint_auth_methods_supported": [AUTH_METHOD],
        "token_endpoint_auth_signing_alg_values_supported": list(ALGORITHM_KEYS),
        "grant_types_supported": ["client_credentials"],
        "scopes_supported": SCOPES_SUPPORTED,
        "capabilities": CAPABILITIES,
    }
