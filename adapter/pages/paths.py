"""Where the pages live under the gateway, which of them need no sign-in, and the sign-in cookie."""
from __future__ import annotations

__all__ = ["PREFIX", "COOKIE", "is_page", "is_public_page", "is_asset"]

PREFIX = "/ui"
# The access token a person pasted at sign-in; read by the gateway's authorise hook for /ui/
# paths only, never for /fhir (so the API never acts on a cookie: no CSRF there).
COOKIE = "fhir_adapter_ui_token"
_ASSETS = (f"{PREFIX}/static/", f"{PREFIX}/assets/")
_PUBLIC = (f"{PREFIX}/sign-in", f"{PREFIX}/sign-out")


def is_asset(path: str) -> bool:
    """Scripts and styles: no patient data, so cacheable and served without sign-in."""
    return path.startswith(_ASSETS)


def is_public_page(path: str) -> bool:
    return is_asset(path) or path in _PUBLIC


def is_page(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")
