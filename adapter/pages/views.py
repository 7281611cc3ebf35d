"""The pages' Flask blueprint: routes, the CSRF check, headers, assets and HTML errors; the
views themselves are in study_views.py, workbench_views.py and sign_in.py.

`pages_blueprint(repository)` takes the gateway's `access.repository`: the store as the
current request may use it. Authentication stays in the gateway's one authorise hook, which
accepts the sign-in cookie on /ui/ paths only (adapter/gateway/authorise.py).
"""
from __future__ import annotations

import functools
import gzip
import logging
import pathlib
from collections.abc import Callable
from urllib.parse import urlsplit

from flask import Blueprint, Response, current_app, g, request, send_file
from flask.blueprints import BlueprintSetupState
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from adapter.auth.guard import Access
from adapter.fhir.outcomes import FhirError
from adapter.pages import sign_in as signing, study_views as views, workbench_views
from adapter.pages.context import HOOKS, error_page
from adapter.pages.paths import PREFIX
from adapter.pages.states import LEGEND
from adapter.store.repository import Repository

__all__ = ["pages_blueprint"]

log = logging.getLogger("adapter.pages")
# Plotly's basic bundle (scatter, bar and pie: all that figures.py draws), vendored from npm's
# plotly.js-basic-dist-min at the plotly.js version the `plotly` wheel ships: 1.1 MB for the
# browser to run where the full bundle is 4.8 MB (the study page's first chart 1.6-3.0 s with
# the full bundle on a busy machine, 1.0-1.4 s with this one). tests/test_pages_views.py holds
# the figures to these trace types and the versions to each other.
PLOTLY_JS_VERSION = "3.7.0"
PLOTLY_TRACES = frozenset({"scatter", "bar", "pie"})
_PLOTLY_JS = pathlib.Path(__file__).parent / "static" / "vendor" / f"plotly-basic-{PLOTLY_JS_VERSION}.min.js"
_YEAR = 365 * 24 * 3600
# Scripts and styles from this server only; Plotly sets inline styles on the SVG it draws.
_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")


@functools.cache
def _plotly_gzipped() -> bytes:
    return gzip.compress(_PLOTLY_JS.read_bytes(), compresslevel=6, mtime=0)


def _same_origin() -> bool:
    """A POST from our own pages: browsers send Sec-Fetch-Site (or, older ones, Origin) on every
    POST, so a form on another site (CSRF, or signing a person in with someone else's token) is
    refused. Sec-Fetch-Site is decisive when present: no page can set it. A client sending
    neither is no browser, and a browser is what a cookie could be abused in."""
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None:
        return fetch_site in ("same-origin", "none")
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    ours = {request.host_url.rstrip("/")}
    base = current_app.config.get("FHIR_BASE_URL")
    if base:
        parts = urlsplit(str(base))
        ours.add(f"{parts.scheme}://{parts.netloc}")
    return origin in ours



_ROUTES = (("/study", "study", views.study, ["GET"]), ("/", "study", views.study, ["GET"]),
           ("/study/outcomes", "study_outcomes", views.study_outcomes, ["GET"]),
           ("/study/adverse-events", "study_adverse_events", views.study_adverse_events, ["GET"]),
           ("/child/<patient_id>", "child", views.child, ["GET"]),
           ("/workbench", "workbench", workbench_views.workbench, ["GET", "POST"]),
           ("/sign-in", "sign_in", signing.sign_in, ["GET", "POST"]),
           ("/sign-in/start", "sign_in_start", signing.sign_in_start, ["GET"]),
           ("/sign-in/callback", "sign_in_callback", signing.sign_in_callback, ["GET"]),
           ("/sign-out", "sign_out", signing.sign_out, ["POST"]))


def pages_blueprint(repository: Callable[[], Repository],
                    access: Callable[[], Access | None] = lambda: None) -> Blueprint:
    """The pages, reading through `repository()` (the store as the current request may use it);
    `access()` is who asks (None: auth off), for what the repository cannot say: which site's
    mapping a site's user may try in the workbench."""
    pages = Blueprint("pages", __name__, template_folder="templates", static_folder="static",
                      static_url_path="/static")

    def remember(state: BlueprintSetupState) -> None:
        state.app.extensions[HOOKS] = (repository, access)

    pages.record_once(remember)
    for rule, endpoint, view, methods in _ROUTES:
        pages.add_url_rule(rule, endpoint, view, methods=methods)
    pages.add_url_rule(f"/assets/plotly-basic-{PLOTLY_JS_VERSION}.min.js", "plotly_js", _plotly_js)
    pages.add_url_rule("/<path:unknown>", "not_found", _not_found)
    pages.before_request(_refuse_cross_site_posts)
    pages.after_request(_page_headers)
    pages.app_context_processor(_page_globals)
    pages.register_error_handler(FhirError, _fhir_error)
    pages.register_error_handler(RequestEntityTooLarge, _too_large)
    pages.register_error_handler(HTTPException, _http_error)
    pages.register_error_handler(Exception, _unexpected)
    return pages


def _refuse_cross_site_posts() -> tuple[str, int] | None:
    if request.method == "POST" and not _same_origin():
        return error_page(403, "this form was sent from another site; use the page on this server")
    return None


def _page_headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = _CSP
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"  # no-referrer would make Origin "null"
    return response


def _plotly_js() -> Response:
    # The version is in the name, so the file may be cached for a year; gzipped (1.1 MB
    # -> 0.35 MB) once per process for the browsers that take it, as nearly all do.
    if request.accept_encodings.quality("gzip") > 0:
        response = Response(_plotly_gzipped(), mimetype="text/javascript")
        response.headers["Content-Encoding"] = "gzip"
    else:
        response = send_file(_PLOTLY_JS, mimetype="text/javascript")
    response.vary.add("Accept-Encoding")
    response.headers["Cache-Control"] = f"public, max-age={_YEAR}, immutable"
    return response


def _page_globals() -> dict[str, object]:
    return {"plotly_js": f"{PREFIX}/assets/plotly-basic-{PLOTLY_JS_VERSION}.min.js",
            "auth_on": bool(current_app.config.get("AUTH")), "visit_legend": LEGEND,
            "signed_in": g.get("page_user")}


def _not_found(unknown: str) -> tuple[str, int]:
    return error_page(404, f"there is no page {PREFIX}/{unknown}")


def _fhir_error(error: FhirError) -> tuple[str, int]:
    messages = {404: "not found", 410: "deleted", 403: "not allowed with your access"}
    return error_page(error.status, str(error) or messages.get(error.status, "the request could not be answered"))


def _too_large(_exc: RequestEntityTooLarge) -> tuple[str, int]:
    limit = current_app.config.get("MAX_CONTENT_LENGTH") or 0
    return error_page(413, f"the file is too large: the limit is {limit / 1024 / 1024:.1f} MB")


def _http_error(error: HTTPException) -> tuple[str, int]:
    return error_page(error.code or 500, error.description or "the request could not be answered")


def _unexpected(_exc: Exception) -> tuple[str, int]:
    log.exception("page failed")  # the details go to the log, never to the page
    return error_page(500, "the page could not be made; the server's log says why")
