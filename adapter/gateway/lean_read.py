"""Reads by id answered before Flask: the hottest request, without Flask's request machinery.

A plain `GET [base]/[type]/[id]` (no query string, no conditional or CORS headers, the audit
off) is the one request an EHR's sync sends most. Here it runs through the very same parts as
in Flask: the authorisation check (`authorise.access_from`), the guarded repository
(`access.guarded`), the read handler (`interactions.read`), content negotiation, gzip and the
data headers; only Flask's context, routing and hooks are skipped. Anything else, and any
answer but a 200 (a 401, 404, 410, 406 or a failure), goes to the Flask app, which answers it
as it always does: a refused read is simply done again there. tests/test_lean_read.py holds
both paths to the same status, headers and bytes.
"""
from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask

from adapter.fhir.definitions import SERVED_TYPES
from adapter.gateway import authorise, encoding
from adapter.gateway.access import guarded
from adapter.gateway.headers import DATA_HEADERS
from adapter.gateway.core import FhirRequest
from adapter.gateway.interactions import read
from adapter.gateway.negotiation import content_type, response_type
from adapter.store.engines import request_deadline
from adapter.store.repository import Repository

__all__ = ["lean_reads"]

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
# Headers that ask for more than a plain read: answered by Flask.
_DECLINED = ("HTTP_IF_NONE_MATCH", "HTTP_IF_MODIFIED_SINCE", "HTTP_IF_MATCH", "HTTP_ORIGIN", "HTTP_PREFER")


def lean_reads(app: Flask, flask_app: WsgiApp) -> WsgiApp:
    """`flask_app` with plain reads by id answered first; the app unchanged when its
    configuration asks every request to pass Flask's hooks (the audit, CORS)."""
    if app.config.get("AUDIT") or app.config.get("CORS_ORIGINS") or not app.config.get("LEAN_READS", True):
        return flask_app
    path = re.compile(re.escape(app.config["FHIR_PATH"]) + r"/([A-Z][A-Za-z]{1,63})/([A-Za-z0-9\-.]{1,64})")
    store: Repository = app.extensions["fhir_store"]
    config, auth, timeout = app.config, bool(app.config.get("AUTH")), app.config["REQUEST_TIMEOUT"]

    def base() -> str:  # a read writes no link
        raise AssertionError("a read by id has no use for the service base")

    def answer(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") != "GET" or environ.get("QUERY_STRING") \
                or any(name in environ for name in _DECLINED):
            return flask_app(environ, start_response)
        match = path.fullmatch(environ.get("PATH_INFO", ""))
        if match is None or match.group(1) not in SERVED_TYPES:
            return flask_app(environ, start_response)
        request_deadline.set(time.monotonic() + timeout if timeout else None)
        try:
            repo = guarded(store, authorise.access_from(app, environ.get("HTTP_AUTHORIZATION")), config) \
                if auth else store
            media = response_type(environ.get("HTTP_ACCEPT"), None)
            result = read(FhirRequest(base, match.group(1), match.group(2)), repo)
        except Exception:  # noqa: BLE001 -- every refusal is Flask's to answer, the same way as ever
            return flask_app(environ, start_response)
        finally:
            request_deadline.set(None)
        if result.status != 200:
            return flask_app(environ, start_response)
        body = result.body or b"{}"
        headers = [*result.headers.items(), ("Content-Type", content_type(media))]
        packed = encoding.gzipped(body, environ.get("HTTP_ACCEPT_ENCODING"))
        if packed is not None:
            body = packed
            headers += [("Content-Encoding", "gzip"), ("Vary", "Accept-Encoding")]
        headers += [("Content-Length", str(len(body))), *DATA_HEADERS]
        start_response("200 OK", headers)
        return [body]

    return answer
