"""Web pages under /ui/: the study, a child, the mapping workbench (issue 14).

Server-rendered with Jinja2; plots are Plotly figures built here as plain dicts and drawn in the
browser by the plotly.min.js that the `plotly` wheel ships (served by us: hospital networks
reach no CDN). The pages read the store only through the repository the gateway hands each
request (its authorisation applied), so they can never show what the API would refuse.

This package never imports adapter.gateway: the gateway registers it (imports point gateway ->
pages -> services -> store -> fhir).
"""
from __future__ import annotations

from adapter.pages.paths import COOKIE, PREFIX, SESSION_COOKIE, SignedIn, is_asset, is_page, is_public_page
from adapter.pages.views import pages_blueprint

__all__ = ["PREFIX", "COOKIE", "SESSION_COOKIE", "SignedIn", "is_page", "is_public_page", "is_asset",
           "pages_blueprint"]
