"""Reads by id answered before Flask: the hottest request, without Flask's request machinery.

A plain `GET [base]/[type]/[id]` (no query string, no conditional or CORS headers) is the one
request an EHR's sync sends most. Here it runs through the very same parts as in Flask: the
authorisation check (`authorise.access_from`), the guarded repository (`access.guarded`), the
read handler (`interactions.read`), content negotiation, gzip and the data headers; only
Flask's context and routing are skipped. Its refusals (401, 403, 404, 410, 406) are answered
here too, with the body and headers Flask's error path gives them (`error_answer`).

Which requests it may take is decided by what Flask would run, not by configuration keys:
every hook of the app must carry `lean_read_safe` (adapter/gateway/base.py), the mark of a
hook whose work this path does itself or a plain read does not need. A hook without it (the
audit's, CORS's preflight, or any added later) sends every read through Flask. Anything else
(a query string, a conditional header, an outage) goes to Flask as well.
tests/test_lean_read.py holds both paths to the same status, headers and bytes.
"""
from __future__ import annotations

import re
import time
from http import HTTPStatus
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask

from adapter.auth.tokens import Unauthenticated
from adapter.fhir.definitions import SERVED_TYPES
from adapter.fhir.outcomes import FhirError
from adapter.gateway import authorise, encoding
from adapter.gateway.access import guarded
from adapter.gateway.base import LEAN_READ_SAFE
from adapter.gateway.core import FhirRequest
from adapter.gateway.headers import DATA_HEADERS
from adapter.gateway.interactions import read
from adapter.gateway.negotiation import content_type, error_answer, response_type
from adapter.store.engines import request_deadline
from adapter.store.repository import Repository

__all__ = ["lean_reads", "hooks_reproduced"]

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
# Headers that ask for more than a plain read: answered by Flask.
_DECLINED = ("HTTP_IF_NONE_MATCH", "HTTP_IF_MODIFIED_SINCE", "HTTP_IF_MATCH", "HTTP_ORIGIN", "HTTP_PREFER")


def hooks_reproduced(app: Flask) -> bool:
    """Every hook Flask would run for a read by id is one this path reproduces."""
    hooks = (*app.before_request_funcs.get(None, ()), *app.after_request_funcs.get(None, ()),
             *app.teardown_request_funcs.get(None, ()), *app.url_value_preprocessors.get(None, ()))
    return all(getattr(hook, LEAN_READ_SAFE, None) for hook in hooks)




def lean_reads(app: Flask, flask_app: WsgiApp) -> WsgiApp:
    """`flask_app` with plain reads by id answered first (when its hooks allow: see above)."""
    if not app.config.get("LEAN_READS", True):
        return flask_app
    path = re.compile(re.escape(app.config["FHIR_PATH"]) + r"/([A-Z][A-Za-z]{1,63})/([A-Za-z0-9\-.]{1,64})")
    store: Repository = app.extensions["fhir_store"]
    config, auth, timeout = app.config, bool(app.config.get("AUTH")), app.config["REQUEST_TIMEOUT"]

    def base() -> str:  # a read writes no link
        raise AssertionError("a read by id has no use for the service base")

    def answer(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") != "GET" or environ.get("QUERY_STRING") \
                or any(name in environ for name in _DECLINED) or not hooks_reproduced(app):
            return flask_app(environ, start_response)
        match = path.fullmatch(environ.get("PATH_INFO", ""))
        if match is None or match.group(1) not in SERVED_TYPES:
            return flask_app(environ, start_response)
        request_deadline.set(time.monotonic() + timeout if timeout else None)
        try:
            header = environ.get("HTTP_AUTHORIZATION")
            try:
                repo = guarded(store, authorise.access_from(app, header), config) if auth else store
            except Unauthenticated as refused:
                raise authorise.unauthorised(str(refused), bool(header)) from None
            media = response_type(environ.get("HTTP_ACCEPT"), None)
            result = read(FhirRequest(base, match.group(1), match.group(2)), repo)
            status, headers, body = 200, [*result.headers.items(), ("Content-Type", content_type(media))], \
                result.body or b"{}"
        except FhirError as error:
            status, headers, body = error_answer(error, environ.get("HTTP_ACCEPT"))
        except Exception:  # noqa: BLE001 -- an outage or a defect: Flask's to answer, the same way as ever
            return flask_app(environ, start_response)
        finally:
            request_deadline.set(None)
        packed = encoding.gzipped(body, environ.get("HTTP_ACCEPT_ENCODING"))
        if packed is not None:
            body = packed
            headers += [("Content-Encoding", "gzip"), ("Vary", "Accept-Encoding")]
        headers += [("Content-Length", str(len(body))), *DATA_HEADERS]
        start_response(f"{status} {HTTPStatus(status).phrase.upper()}", headers)
        return [body]

    return answer


