"""How every answer's bytes leave: `_pretty` indentation, gzip when the client accepts it, and
empty answers without a Content-Type (https://hl7.org/fhir/R4/http.html#parameters).

Hooks on the whole app, after the answer is made, so that errors, operations and Bundles get the
same treatment as reads; the read path pays only for a header look-up when nothing is asked.
"""
from __future__ import annotations

import gzip

from flask import Flask, Response, request
from werkzeug.http import parse_accept_header

from adapter.fhir import jsonio
from adapter.fhir.outcomes import FhirError, bad_request
from adapter.gateway.base import lean_read_safe

__all__ = ["register", "GZIP_MIN_SIZE", "gzipped"]

# Below this a gzip member saves too little to be worth the CPU (and the header overhead on a
# 300-byte Patient read).
GZIP_MIN_SIZE = 1024
_NO_BODY = (204, 304)


def register(app: Flask) -> None:
    app.before_request(_check_pretty)
    app.after_request(_finish)


@lean_read_safe("a read with a query string (_pretty) goes through Flask")
def _check_pretty() -> None:
    value = request.args.get("_pretty") if request.environ.get("QUERY_STRING") else None
    if value not in (None, "true", "false"):
        raise bad_request(f"_pretty: {value!r} is not true or false", "_pretty")


@lean_read_safe("the lean path gzips with gzipped(); _pretty needs a query string")
def _finish(response: Response) -> Response:
    if response.direct_passthrough or response.is_streamed:
        return response  # files sent as they are (Bulk Data NDJSON)
    body = response.get_data()
    if not body:
        # An empty answer has no representation, so no media type (RFC 9110 8.3); a 204 or 304
        # has no length either.
        response.headers.pop("Content-Type", None)
        if response.status_code in _NO_BODY:
            response.headers.pop("Content-Length", None)
        else:
            response.headers["Content-Length"] = "0"
        return response
    if response.mimetype in ("application/fhir+json", "application/json"):
        if request.environ.get("QUERY_STRING") and request.args.get("_pretty") == "true":
            try:
                body = jsonio.dumps(jsonio.parse(body), indent=True)
            except FhirError:  # not ours to judge: sent as it was made
                pass
            response.set_data(body)
        packed = None if "Content-Encoding" in response.headers else \
            gzipped(body, request.environ.get("HTTP_ACCEPT_ENCODING"))
        if packed is not None:
            response.set_data(packed)
            response.headers["Content-Encoding"] = "gzip"
            response.vary.add("Accept-Encoding")
    return response


def gzipped(body: bytes, accept_encoding: str | None) -> bytes | None:
    """The body gzipped when it is worth it and the client accepts gzip, else None (shared with
    the lean read path, adapter/gateway/lean_read.py)."""
    if len(body) < GZIP_MIN_SIZE or not accept_encoding or parse_accept_header(accept_encoding).quality("gzip") <= 0:
        return None
    # mtime 0: the same bytes for the same answer, whatever the clock says
    return gzip.compress(body, compresslevel=6, mtime=0)
