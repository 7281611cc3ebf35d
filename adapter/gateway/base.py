"""The service base URL of the running gateway, for links, Location and Content-Location."""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

from flask import current_app, request

H = TypeVar("H", bound=Callable[..., object])

__all__ = ["service_base", "is_public", "lean_read_safe", "LEAN_READ_SAFE"]

LEAN_READ_SAFE = "lean_read_safe"  # the attribute lean_read_safe() sets on a hook


def lean_read_safe(why: str) -> Callable[[H], H]:
    """Marks a Flask hook that a plain read by id needs nothing more of than the lean read path
    (lean_read.py) does itself, and says why. A hook without the mark makes every read go
    through Flask, so a hook added later applies to every read until someone decides otherwise."""
    def mark(hook: H) -> H:
        setattr(hook, LEAN_READ_SAFE, why)
        return hook
    return mark


def service_base() -> str:
    """The absolute base of the FHIR service, for links and Location headers.

    Built from the WSGI environ directly: werkzeug's request.host_url re-parses and
    IRI-decodes the URL, which cost more than the whole database read.
    """
    configured = current_app.config.get("FHIR_BASE_URL")
    if configured:
        return str(configured).rstrip("/")
    environ = request.environ
    host = environ.get("HTTP_HOST") or f"{environ['SERVER_NAME']}:{environ['SERVER_PORT']}"
    return _base(environ["wsgi.url_scheme"], host, environ.get("SCRIPT_NAME", ""),
                 current_app.config["FHIR_PATH"])


@functools.lru_cache(maxsize=64)
def _base(scheme: str, host: str, script: str, path: str) -> str:
    return f"{scheme}://{host}{script}{path}"


def is_public(path: str, fhir_path: str) -> bool:
    """The server's description of itself: no data in it, so neither audited nor no-store."""
    return path == f"{fhir_path}/metadata" or path.startswith(f"{fhir_path}/.well-known/")
