"""The Flask app factory. Every error leaves through one handler as an OperationOutcome."""
from __future__ import annotations

import functools
import gc
import logging
import os
import pathlib
from typing import Any

import orjson
from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, RequestEntityTooLarge

from adapter.exchange.export import resume_jobs
from adapter.fhir.dates import now_instant
from adapter.fhir.definitions import SERVED_TYPES
from adapter.fhir.validation import validate
from adapter.fhir.outcomes import FhirError, Issue, internal_error, method_not_allowed, too_large
from adapter.gateway.capability import capability_statement
from adapter.gateway.rest import blueprint, error_response
from adapter.store import DEFAULT_DB, open_store

__all__ = ["create_app", "DEFAULT_DB", "DEFAULT_MAX_BODY", "MAX_URL_LENGTH", "MAX_FORM_LENGTH"]

DEFAULT_MAX_BODY = 10 * 1024 * 1024
# A search's size, whichever way it comes: gunicorn refuses request lines past 8190 bytes with
# its own plain-text 414, so ours (an OperationOutcome) must come first. A POST _search body
# may be longer (the reason to use it), but not 10 MB of parameters.
MAX_URL_LENGTH = 8000  # characters of path and query string
MAX_FORM_LENGTH = 64 * 1024  # bytes of a POST [type]/_search form body
log = logging.getLogger("adapter.gateway")


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """A gateway app. Config keys: DATABASE_URL, MAX_CONTENT_LENGTH, MAX_URL_LENGTH,
    MAX_FORM_LENGTH, FHIR_PATH, FHIR_BASE_URL, EXPORT_DIR.

    Unset keys fall back to the environment (FHIR_ADAPTER_DB, FHIR_ADAPTER_MAX_BODY,
    FHIR_ADAPTER_EXPORT_DIR) and then to the defaults: the SQLite file var/adapter.db, a 10 MB
    body limit, Bulk Data files in `exports/` beside the SQLite file (else var/exports).
    Unfinished export jobs that no process runs are resumed.
    """
    app = Flask(__name__)
    app.config.update(
        DATABASE_URL=os.environ.get("FHIR_ADAPTER_DB", DEFAULT_DB),
        MAX_CONTENT_LENGTH=int(os.environ.get("FHIR_ADAPTER_MAX_BODY", DEFAULT_MAX_BODY)),
        FHIR_PATH="/fhir", MAX_URL_LENGTH=MAX_URL_LENGTH, MAX_FORM_LENGTH=MAX_FORM_LENGTH,
    )
    app.config.update(config or {})
    app.config.setdefault("EXPORT_DIR", os.environ.get("FHIR_ADAPTER_EXPORT_DIR")
                          or _export_dir(app.config["DATABASE_URL"]))
    app.extensions["fhir_store"] = open_store(app.config["DATABASE_URL"])
    resume_jobs(pathlib.Path(app.config["EXPORT_DIR"]), app.extensions["fhir_store"])
    started = now_instant()
    app.extensions["fhir_capabilities"] = functools.lru_cache(maxsize=8)(
        lambda base: orjson.dumps(capability_statement(base, started)))
    app.register_blueprint(blueprint, url_prefix=app.config["FHIR_PATH"])
    _register_errors(app)
    _warm_up()
    return app


def _export_dir(database_url: str) -> str:
    """Bulk export files beside an SQLite file (var/exports for var/adapter.db), else var/exports."""
    if database_url.startswith("sqlite:///") and not database_url.endswith(":memory:"):
        return str(pathlib.Path(database_url.removeprefix("sqlite:///")).parent / "exports")
    return "var/exports"


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
    def bounded_url() -> None:
        environ, limit = request.environ, app.config["MAX_URL_LENGTH"]
        length = len(environ.get("PATH_INFO", "")) + len(environ.get("QUERY_STRING", "")) + 1
        if length > limit:
            raise FhirError(414, [Issue("too-costly", f"the URL is {length} characters; the limit is {limit} "
                                        "(a long search can be sent as a POST [type]/_search form)")])

    @app.errorhandler(FhirError)
    def fhir_error(error: FhirError) -> Response:
        return error_response(error)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        if isinstance(error, MethodNotAllowed):
            allowed = sorted(error.valid_methods or [])
            return error_response(method_not_allowed("method not allowed here", allowed))
        if isinstance(error, RequestEntityTooLarge):
            return error_response(too_large(app.config["MAX_CONTENT_LENGTH"]))
        code = {404: "not-found"}.get(error.code or 500, "processing")
        return error_response(FhirError(error.code or 500, [Issue(code, error.description or str(error))]))

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> Response:
        log.exception("unhandled error")
        return error_response(internal_error())
