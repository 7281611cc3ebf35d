"""Headers every answer gets, in one place: no MIME sniffing, no caching of patient data, and
CORS for the browser origins the deployment lists (none by default: no Access-Control-* at all).
"""
from __future__ import annotations

from flask import Flask, Response, request

from adapter.gateway.base import is_public, lean_read_safe
from adapter.pages import is_asset

__all__ = ["register", "cors_origins", "DATA_HEADERS"]

# What every answer that may carry patient data gets (the lean read path, lean_read.py, too).
DATA_HEADERS = (("X-Content-Type-Options", "nosniff"), ("Cache-Control", "no-store"))

_ALLOW_METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE"
_ALLOW_HEADERS = "Authorization, Content-Type, Prefer, If-Match, If-None-Match, If-None-Exist"
_EXPOSE_HEADERS = "Location, ETag, Content-Location, Last-Modified, X-Progress, Retry-After"


def cors_origins(value: str | list[str] | tuple[str, ...] | None) -> frozenset[str]:
    """Origins as a browser sends them (scheme://host[:port], no slash); "a, b" or a list."""
    items = value.split(",") if isinstance(value, str) else list(value or ())
    return frozenset(o.strip().rstrip("/") for o in items if o.strip())


def _vary_origin(response: Response) -> None:
    if "origin" not in {v.strip().lower() for v in response.headers.get("Vary", "").split(",")}:
        response.headers.add("Vary", "Origin")


def register(app: Flask) -> None:
    fhir_path = app.config["FHIR_PATH"]
    origins = cors_origins(app.config.get("CORS_ORIGINS"))

    if origins:
        @app.before_request
        def preflight() -> Response | None:
            origin = request.headers.get("Origin")
            if request.method != "OPTIONS" or "Access-Control-Request-Method" not in request.headers:
                return None
            if origin not in origins:
                return None  # Flask's own OPTIONS answer, without CORS headers: the browser refuses
            response = Response(status=204)
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Methods"] = _ALLOW_METHODS
            response.headers["Access-Control-Allow-Headers"] = _ALLOW_HEADERS
            response.headers["Access-Control-Max-Age"] = "600"
            return response

    @app.after_request
    @lean_read_safe("the lean path adds DATA_HEADERS; with CORS origins this hook is joined by the preflight, "
                    "which is not marked, and an Origin header sends a read to Flask anyway")
    def security_headers(response: Response) -> Response:
        headers = response.headers
        nosniff, no_store = DATA_HEADERS
        headers[nosniff[0]] = nosniff[1]
        # Everything but the server's description of itself may carry patient data (or a token).
        # (The pages' scripts and styles are versioned files without data: cached.)
        if not is_public(request.path, fhir_path) and not is_asset(request.path):
            headers[no_store[0]] = no_store[1]
        if origins:
            _vary_origin(response)  # the answer differs by Origin: caches must keep them apart
            origin = request.headers.get("Origin")
            if origin in origins:
                headers["Access-Control-Allow-Origin"] = origin
                headers["Access-Control-Expose-Headers"] = _EXPOSE_HEADERS
        return response
