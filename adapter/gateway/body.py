"""Reading a request body within the size limit, however the client sends it."""
from __future__ import annotations

from flask import Request, current_app

from adapter.fhir.outcomes import bad_request, too_large

__all__ = ["read_body"]


def read_body(http: Request) -> bytes:
    """The request body, within MAX_CONTENT_LENGTH however it is sent.

    With a Content-Length, Werkzeug refuses an oversized body (413) before reading it. A chunked
    body has none: Werkzeug would cut it at the limit and hand the first part on as if whole, so
    it is read here to one byte past the limit, and a malformed chunk is the client's error.
    """
    if http.content_length is not None or "chunked" not in http.headers.get("Transfer-Encoding", "").lower():
        return http.get_data(cache=False)
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    try:
        data = http.environ["wsgi.input"].read(limit + 1)
    except Exception as exc:  # the WSGI server's chunk parser: gunicorn's ParseException, Werkzeug's OSError
        raise bad_request(f"the chunked request body is malformed ({type(exc).__name__})",
                          code="structure") from None
    if len(data) > limit:
        raise too_large(limit)
    return data
