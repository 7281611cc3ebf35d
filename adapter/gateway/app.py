"""The Flask app factory. Every error leaves through one handler as an OperationOutcome."""
from __future__ import annotations

import functools
import gc
import logging
import os
import pathlib
import time
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, RequestEntityTooLarge

from adapter.exchange.view import POLICY_DIR, default_exchange_key_file
from adapter.gateway.access import current_access, guarded, repository
from adapter.exchange.export import resume_jobs
from adapter.fhir.dates import now_instant
from adapter.errors import AdapterError
from adapter.private import beside_store
from adapter.store.outages import is_outage, unavailable
from adapter.fhir.references import service_base as reference_base
from adapter.fhir.definitions import SERVED_TYPES
from adapter.fhir.validation import validate
from adapter.fhir.jsonio import dumps
from adapter.fhir.outcomes import (
    FhirError, Issue, internal_error, method_not_allowed, operation_outcome, too_large,
)
from adapter.gateway import audit_hooks, encoding, headers
from adapter.gateway.base import lean_read_safe, service_base
from adapter.gateway.capability import capability_statement
from adapter.gateway.lean_read import lean_reads
from adapter.gateway.negotiation import FHIR_JSON, content_type
from adapter.gateway.rest import blueprint, error_response
from adapter.gateway import authorise, sign_in_setup, token_endpoint
from adapter.pages import PREFIX as PAGES_PREFIX, pages_blueprint
from adapter.store import DEFAULT_DB, open_store
from adapter.store.engines import normalize_url, request_deadline
from adapter.store.integrity import enabled_by_default

__all__ = ["create_app", "DEFAULT_DB", "DEFAULT_MAX_BODY", "MAX_URL_LENGTH", "MAX_FORM_LENGTH",
           "STATEMENT_TIMEOUT", "REQUEST_TIMEOUT"]

DEFAULT_MAX_BODY = 10 * 1024 * 1024
# A search's size, whichever way it comes: gunicorn refuses request lines past 8190 bytes with
# its own plain-text 414, so ours (an OperationOutcome) must come first. A POST _search body
# may be longer (the reason to use it), but not 10 MB of parameters.
MAX_URL_LENGTH = 8000  # characters of path and query string
MAX_FORM_LENGTH = 64 * 1024  # bytes of a POST [type]/_search form body
# Seconds. A statement is stopped past STATEMENT_TIMEOUT, and none starts once the request has
# run REQUEST_TIMEOUT: both end as a 503 well before gunicorn's worker timeout (`serve` sets it
# above their sum) would kill the worker and its database work would run on.
STATEMENT_TIMEOUT = 20.0
REQUEST_TIMEOUT = 25.0
log = logging.getLogger("adapter.gateway")


def _flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    return default if value is None else value.strip().lower() in ("on", "1", "true", "yes")


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """A gateway app. Config keys: DATABASE_URL, MAX_CONTENT_LENGTH, MAX_URL_LENGTH,
    MAX_FORM_LENGTH, STATEMENT_TIMEOUT, REQUEST_TIMEOUT, FHIR_PATH, FHIR_BASE_URL (the public
    service base used for every link, in place of the Host header), EXPORT_DIR,
    REFERENTIAL_INTEGRITY (False: writes may hold references that do not resolve),
    AUTH (SMART Backend Services: POST /auth/token, the SMART configuration; with it
    AUTH_KEY_FILE, ACCESS_TOKEN_LIFETIME, AUTH_CLIENT_CACHE_SECONDS, AUTH_JWKS_CACHE_SECONDS,
    AUTH_JWKS_REFETCH_SECONDS, CLOCK: a callable giving the epoch seconds that tokens are
    issued and expire by, default time.time; see adapter/gateway/token_endpoint.py), AUDIT (an AuditEvent per
    FHIR request; default: AUTH; AUDIT_JOURNAL_DIR, where events wait on disk until written,
    default audit-journal/ beside the SQLite file, else var/audit-journal), CORS_ORIGINS (browser origins allowed; default none),
    EXCHANGE_POLICY_DIR (the exchange policies, default mappings/exchange) and EXCHANGE_KEY_FILE
    (the site's pseudonym key for them, made on first use; default beside the SQLite file),
    LEAN_READS (False: plain reads by id pass through Flask too; adapter/gateway/lean_read.py),
    the pages' sign-in: OIDC_ISSUER, OIDC_CLIENT_ID, OIDC_CLIENT_SECRET, OIDC_ROLES, OIDC_SCOPE,
    OIDC_TIMEOUT, PAGES_SESSION_SECONDS, PAGES_TOKEN_SIGN_IN (adapter/gateway/sign_in_setup.py).

    Unset keys fall back to the environment (FHIR_ADAPTER_DB, FHIR_ADAPTER_MAX_BODY,
    FHIR_ADAPTER_STATEMENT_TIMEOUT, FHIR_ADAPTER_REQUEST_TIMEOUT, FHIR_ADAPTER_EXPORT_DIR,
    FHIR_ADAPTER_REFERENTIAL_INTEGRITY=off, FHIR_ADAPTER_BASE_URL, FHIR_ADAPTER_AUTH=on,
    FHIR_ADAPTER_AUTH_KEY, FHIR_ADAPTER_AUDIT=on|off, FHIR_ADAPTER_CORS_ORIGINS=origin,origin,
    FHIR_ADAPTER_POLICY_DIR, FHIR_ADAPTER_EXCHANGE_KEY, FHIR_ADAPTER_AUDIT_JOURNAL) and
    then to the defaults: the SQLite file var/adapter.db, a 10 MB body limit, 20 s per statement
    and 25 s per request (0: unbounded), Bulk Data files in `exports/` beside the SQLite file
    (else var/exports). Relative paths are taken from the working directory the app starts in.
    Unfinished export jobs that no process runs are resumed.
    """
    app = Flask(__name__)
    app.config.update(
        DATABASE_URL=os.environ.get("FHIR_ADAPTER_DB", DEFAULT_DB),
        MAX_CONTENT_LENGTH=int(os.environ.get("FHIR_ADAPTER_MAX_BODY", DEFAULT_MAX_BODY)),
        FHIR_PATH="/fhir", MAX_URL_LENGTH=MAX_URL_LENGTH, MAX_FORM_LENGTH=MAX_FORM_LENGTH,
        STATEMENT_TIMEOUT=float(os.environ.get("FHIR_ADAPTER_STATEMENT_TIMEOUT", STATEMENT_TIMEOUT)),
        REQUEST_TIMEOUT=float(os.environ.get("FHIR_ADAPTER_REQUEST_TIMEOUT", REQUEST_TIMEOUT)),
        REFERENTIAL_INTEGRITY=enabled_by_default(), AUTH=token_endpoint.auth_enabled(),
        CORS_ORIGINS=os.environ.get("FHIR_ADAPTER_CORS_ORIGINS", ""),
    )
    if os.environ.get("FHIR_ADAPTER_BASE_URL"):
        app.config["FHIR_BASE_URL"] = os.environ["FHIR_ADAPTER_BASE_URL"]
    app.config.update(config or {})
    app.config.setdefault("AUDIT", _flag("FHIR_ADAPTER_AUDIT", bool(app.config["AUTH"])))
    app.config.setdefault("AUDIT_JOURNAL_DIR", os.environ.get("FHIR_ADAPTER_AUDIT_JOURNAL"))
    app.config["DATABASE_URL"] = normalize_url(app.config["DATABASE_URL"])
    app.config.setdefault("EXPORT_DIR", os.environ.get("FHIR_ADAPTER_EXPORT_DIR")
                          or beside_store(app.config["DATABASE_URL"], "exports"))
    app.config["EXPORT_DIR"] = os.path.abspath(app.config["EXPORT_DIR"])
    app.extensions["fhir_store"] = open_store(app.config["DATABASE_URL"],
                                              statement_timeout=app.config["STATEMENT_TIMEOUT"],
                                              check_references=app.config["REFERENTIAL_INTEGRITY"])
    app.config.setdefault("EXCHANGE_POLICY_DIR", os.environ.get("FHIR_ADAPTER_POLICY_DIR") or str(POLICY_DIR))
    app.config.setdefault("EXCHANGE_KEY_FILE", os.environ.get("FHIR_ADAPTER_EXCHANGE_KEY")
                          or default_exchange_key_file(app.config["DATABASE_URL"]))
    store = app.extensions["fhir_store"]
    resume_jobs(pathlib.Path(app.config["EXPORT_DIR"]), store, lambda access: guarded(store, access, app.config))
    started = now_instant()
    fhir_path = app.config["FHIR_PATH"]
    app.extensions["fhir_capabilities"] = functools.lru_cache(maxsize=8)(
        lambda base: orjson.dumps(capability_statement(
            base, started, app.config["REFERENTIAL_INTEGRITY"],
            token_endpoint.token_url(base, fhir_path) if app.config["AUTH"] else None)))
    app.register_blueprint(blueprint, url_prefix=fhir_path)
    # The web pages read through the same per-request repository as the API (issue 14).
    app.register_blueprint(pages_blueprint(repository, current_access), url_prefix=PAGES_PREFIX)
    token_endpoint.register(app)
    sign_in_setup.register(app)  # the pages' sign-in: OpenID Connect, the pasted token
    _register_errors(app)
    authorise.register(app)  # after begin_request: a request too long to serve is refused unread
    audit_hooks.register(app)
    headers.register(app)
    encoding.register(app)
    app.wsgi_app = _answer_aborts(lean_reads(app, app.wsgi_app))  # type: ignore[method-assign]
    _warm_up()
    return app


def _answer_aborts(wsgi_app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    """gunicorn's worker timeout (SIGABRT) and shutdown raise SystemExit inside the request:
    answer it as an OperationOutcome, not gunicorn's HTML page, before the worker goes."""
    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        try:
            return wsgi_app(environ, start_response)
        except SystemExit:
            log.error("request stopped by the server (worker timeout or shutdown): %s %s",
                      environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"))
            body = dumps(operation_outcome([Issue(
                "timeout", "the request was stopped before its answer was ready (server time limit "
                "or shutdown); a write in it may or may not have been made")]))
            start_response("503 SERVICE UNAVAILABLE", [
                ("Content-Type", content_type(FHIR_JSON)),
                ("Content-Length", str(len(body))), ("Retry-After", "10")])
            return [body]
    return guarded


def _warm_up() -> None:
    """Load the validator's models and schemas now, then exempt them from garbage collection.

    They are hundreds of thousands of long-lived objects; left in the collected generations,
    every full collection walks them all and a read request pays for it.
    """
    for rtype in SERVED_TYPES:
        validate({"resourceType": rtype})
    gc.collect()
    gc.freeze()


def _register_errors(app: Flask) -> None:
    @app.before_request
    @lean_read_safe("the lean path sets the deadline itself; a read's URL is its id, no query, no NUL")
    def begin_request() -> None:
        """One hook for what every request gets: its time bound, the base for absolute
        references, and a URL check (its length; %00, which PostgreSQL cannot hold)."""
        seconds = app.config["REQUEST_TIMEOUT"]
        request_deadline.set(time.monotonic() + seconds if seconds else None)
        reference_base.set(service_base)  # absolute references to this server are checked too
        environ, limit = request.environ, app.config["MAX_URL_LENGTH"]
        path, query = environ.get("PATH_INFO", ""), environ.get("QUERY_STRING", "")
        length = len(path) + len(query) + 1
        if length > limit:
            raise FhirError(414, [Issue("too-costly", f"the URL is {length} characters; the limit is {limit} "
                                        "(a long search can be sent as a POST [type]/_search form)")])
        if "\x00" in path or "%00" in query:
            raise FhirError(400, [Issue("invalid", "the URL holds the NUL character (%00)")])

    @app.teardown_request
    @lean_read_safe("the lean path clears its deadline itself")
    def end_request(_error: BaseException | None) -> None:
        request_deadline.set(None)
        reference_base.set(None)

    @app.errorhandler(AdapterError)
    def adapter_error(error: AdapterError) -> Response:
        """The gateway's one boundary for the adapter's errors: a FhirError as it says, any
        other as an OperationOutcome of its status (a 500 logged: ours to fix)."""
        if isinstance(error, FhirError):
            return error_response(error)
        if is_outage(error):
            return error_response(unavailable(error))
        if error.status >= 500:
            log.error("%s %s: %s", request.method, request.path, error, exc_info=error)
            return error_response(internal_error())
        return error_response(FhirError(error.status, [Issue(error.code, str(error))]))

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        if isinstance(error, MethodNotAllowed):
            allowed = sorted(error.valid_methods or [])
            if request.path == f"{app.config['FHIR_PATH']}/metadata":  # not the type routes' methods
                allowed = ["GET", "HEAD", "OPTIONS"]
            return error_response(method_not_allowed(
                f"{request.method} is not allowed on {request.path}; allowed: {', '.join(allowed)}", allowed))
        if isinstance(error, RequestEntityTooLarge):
            return error_response(too_large(app.config["MAX_CONTENT_LENGTH"]))
        if error.code == 404:  # werkzeug's text speaks of "the URL you entered manually"
            return error_response(FhirError(404, [Issue("not-found", (
                f"no FHIR interaction at {request.path}; what this server does is listed at "
                f"{app.config['FHIR_PATH']}/metadata"))]))
        code = "processing"
        return error_response(FhirError(error.code or 500, [Issue(code, error.description or str(error))]))

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> Response:
        if is_outage(error):  # the database away or the disk full: a client may try again
            log.warning("%s %s: %s", request.method, request.path, str(error).splitlines()[0] if str(error) else
                        type(error).__name__)
            return error_response(unavailable(error))
        log.exception("unhandled error")
        return error_response(internal_error())
