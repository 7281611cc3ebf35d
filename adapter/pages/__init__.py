"""Web pages under /ui/: the study, a child, the mapping workbench (issue 14).

Server-rendered with Jinja2; plots are Plotly figures built here as plain dicts and drawn in the
browser by the plotly.min.js that the `plotly` wheel ships (served by us: hospital networks
reach no CDN). The pages read the store only through the repository the gateway hands each
request (its authorisation applied), so they can never show what the API would refuse.

This package never imports adapter.gateway: the gateway registers it (imports point gateway ->
pages -> services -> store -> fhir).
"""
from __future__ import annotations

__all__ = ["PREFIX", "COOKIE", "is_page", "is_public_page", "is_asset", "pages_blueprint"]

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


from adapter.pages.views import pages_blueprint  # noqa: E402  (after the names views imports)
