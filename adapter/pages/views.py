"""The pages' Flask blueprint: routes, sign-in, the CSRF check, and HTML errors.

`pages_blueprint(repository)` takes the gateway's `access.repository`: the store as the
current request may use it. Authentication stays in the gateway's one authorise hook, which
accepts the sign-in cookie on /ui/ paths only (adapter/gateway/authorise.py).
"""
from __future__ import annotations

import functools
import gzip
import logging
import pathlib
import time
from collections.abc import Callable
from datetime import date
from typing import TypeVar
from urllib.parse import urlsplit

import plotly
from flask.typing import ResponseReturnValue
from flask import Blueprint, Response, current_app, redirect, render_template, request, send_file, url_for
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from adapter.auth.guard import Access
from adapter.auth.tokens import Unauthenticated, authenticate
from adapter.fhir.outcomes import FhirError, bad_request
from adapter.pages import COOKIE, PREFIX
from adapter.pages.child import child_page
from adapter.pages.study import adherence_matrix, adverse_events, enrolment, outcome_sections, spec
from adapter.pages.workbench import dry_run, fixtures, mappings
from adapter.store.repository import Repository

__all__ = ["pages_blueprint"]

log = logging.getLogger("adapter.pages")
_PLOTLY_JS = plotly.__file__.rsplit("/", 1)[0] + "/package_data/plotly.min.js"
_YEAR = 365 * 24 * 3600
T = TypeVar("T")
# Scripts and styles from this server only; Plotly sets inline styles on the SVG it draws.
_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")


@functools.cache
def _plotly_gzipped() -> bytes:
    return gzip.compress(pathlib.Path(_PLOTLY_JS).read_bytes(), compresslevel=6, mtime=0)


def _as_of() -> date:
    raw = request.args.get("as-of")
    try:
        return date.fromisoformat(raw) if raw else date.today()
    except ValueError:
        raise bad_request(f"as-of: {raw!r} is not a date (YYYY-MM-DD)", "as-of") from None


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


def _local(target: str | None) -> str:
    """Where to go after sign-in: a page of ours only (no open redirect)."""
    if target and target.startswith(PREFIX + "/") and not target.startswith("//") and "\\" not in target:
        return target
    return PREFIX + "/"


def _allowed(notes: list[str], what: str, make: Callable[[], T]) -> T | None:
    """A section of a page, or None and a note when the token may not read what it needs (a
    403): the rest of the page is still the reader's to see."""
    try:
        return make()
    except FhirError as error:
        if error.status != 403:
            raise
        notes.append(f"{what}: not shown with your access ({error})")
        return None


def _error(status: int, message: str) -> tuple[str, int]:
    return render_template("error.html", status=status, message=message), status


def pages_blueprint(repository: Callable[[], Repository],
                    access: Callable[[], Access | None] = lambda: None) -> Blueprint:
    """The pages, reading through `repository()` (the store as the current request may use it);
    `access()` is who asks (None: auth off), for what the repository cannot say: which site's
    mapping a site's user may try in the workbench."""
    pages = Blueprint("pages", __name__, template_folder="templates", static_folder="static",
                      static_url_path="/static")

    @pages.before_request
    def refuse_cross_site_posts() -> tuple[str, int] | None:
        if request.method == "POST" and not _same_origin():
            return _error(403, "this form was sent from another site; use the page on this server")
        return None

    @pages.after_request
    def page_headers(response: Response) -> Response:
        response.headers["Content-Security-Policy"] = _CSP
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "same-origin"  # no-referrer would make Origin "null"
        return response

    @pages.get(f"/assets/plotly-{plotly.__version__}.min.js")
    def plotly_js() -> Response:
        # The version is in the name, so the file may be cached for a year; gzipped (4.8 MB
        # -> 1.4 MB) once per process for the browsers that take it, as nearly all do.
        if request.accept_encodings.quality("gzip") > 0:
            response = Response(_plotly_gzipped(), mimetype="text/javascript")
            response.headers["Content-Encoding"] = "gzip"
        else:
            response = send_file(_PLOTLY_JS, mimetype="text/javascript")
        response.vary.add("Accept-Encoding")
        response.headers["Cache-Control"] = f"public, max-age={_YEAR}, immutable"
        return response

    @pages.app_context_processor
    def page_globals() -> dict[str, object]:
        return {"plotly_js": f"{PREFIX}/assets/plotly-{plotly.__version__}.min.js",
                "auth_on": bool(current_app.config.get("AUTH"))}

    @pages.get("/")
    @pages.get("/study")
    def study() -> str:
        repo, study_id = repository(), spec().protocol["id"]
        page = request.args.get("page", "1")
        started = time.perf_counter()
        enrolled = enrolment(repo, study_id)
        notes: list[str] = []
        as_of, number = _as_of(), int(page) if page.isascii() and page.isdigit() and len(page) < 7 else 1
        # The outcomes and adverse events read the whole study once after a write (3 s at 10,000
        # children): by default the page comes first and they follow as fragments (pages.js);
        # ?whole=1 renders them in place (no script).
        lazy = request.args.get("whole") != "1"
        sections = None if lazy else _allowed(notes, "Change from baseline",
                                              lambda: outcome_sections(repo, study_id)) or []
        matrix = _allowed(notes, "Adherence", lambda: adherence_matrix(repo, enrolled.subjects, as_of, number))
        events = None if lazy else _allowed(notes, "Adverse events", lambda: adverse_events(repo, study_id))
        return render_template("study.html", enrolled=enrolled, sections=sections, matrix=matrix, lazy=lazy,
                               events=events, study=study_id, notes=notes, seconds=time.perf_counter() - started)

    @pages.get("/study/outcomes")
    def study_outcomes() -> ResponseReturnValue:
        if request.headers.get("X-Fragment") != "1":  # opened as a page: the whole study page, in place
            return redirect(url_for("pages.study", whole="1", _anchor="outcomes"))
        repo, notes = repository(), list[str]()
        sections = _allowed(notes, "Change from baseline", lambda: outcome_sections(repo, spec().protocol["id"]))
        return render_template("study_outcomes.html", sections=sections or [], section_notes=notes)

    @pages.get("/study/adverse-events")
    def study_adverse_events() -> ResponseReturnValue:
        if request.headers.get("X-Fragment") != "1":
            return redirect(url_for("pages.study", whole="1", _anchor="adverse-events"))
        repo, notes = repository(), list[str]()
        events = _allowed(notes, "Adverse events", lambda: adverse_events(repo, spec().protocol["id"]))
        return render_template("study_adverse_events.html", events=events, section_notes=notes)

    @pages.get("/child/<patient_id>")
    def child(patient_id: str) -> str:
        return render_template("child.html", child=child_page(repository(), patient_id, _as_of()),
                               patient_id=patient_id)

    @pages.route("/workbench", methods=["GET", "POST"])
    def workbench() -> ResponseReturnValue:
        # Ingest needs to create resources; the dry run is held to the same (it reads a site's
        # export, which holds MRNs), though it writes nothing.
        repository().require("Patient", "c", "the mapping workbench (a dry run of an ingest)")
        run, choices = None, fixtures()
        mapping = request.values.get("mapping", "")
        who = access()
        allowed = [m for m in mappings() if who is None or who.site is None or m == who.site]
        if mapping and mapping not in allowed:
            return _error(403, f"{mapping} is another site's mapping; yours: {', '.join(allowed) or 'none'}")
        if request.method == "POST" and "file" in request.files and request.files["file"].filename:
            upload = request.files["file"]
            run = dry_run(mapping, upload.filename or "upload", upload=upload.read())
        elif request.values.get("fixture"):
            name = request.values["fixture"]
            if who is not None and who.site is not None and not name.startswith(f"{who.site}/"):
                return _error(403, f"{name} is another site's file; a site's user tries its own site's only")
            if name in choices:
                run = dry_run(mapping, name, path=choices[name])
            else:
                return _error(400, f"no fixture named {name!r}; choose one from the list")
        elif request.method == "POST":
            return _error(400, "choose a fixture or a file to upload")
        return render_template("workbench.html", run=run, mappings=allowed, fixtures=list(choices),
                               chosen=mapping, limit=current_app.config.get("MAX_CONTENT_LENGTH"))

    @pages.route("/sign-in", methods=["GET", "POST"])
    def sign_in() -> ResponseReturnValue:
        target = _local(request.values.get("next"))
        if not current_app.config.get("AUTH"):
            return redirect(target, 303)
        if request.method == "GET":
            return render_template("sign_in.html", target=target, problem="")
        token = (request.form.get("token") or "").strip()
        try:
            grant = authenticate(f"Bearer {token}" if token else None)
        except Unauthenticated as error:
            return render_template("sign_in.html", target=target, problem=error.reason), 401
        response = redirect(target, 303)
        base = str(current_app.config.get("FHIR_BASE_URL") or "")
        # The cookie lives as long as the token (by the tokens' clock); only the pages' paths send it.
        now = current_app.extensions["fhir_auth"].clock()
        response.set_cookie(COOKIE, token, max_age=max(1, grant.expires - int(now)), path=PREFIX,
                            httponly=True, samesite="Strict", secure=request.is_secure or base.startswith("https:"))
        return response

    @pages.post("/sign-out")
    def sign_out() -> ResponseReturnValue:
        response = redirect(url_for("pages.sign_in") if current_app.config.get("AUTH") else PREFIX + "/", 303)
        response.delete_cookie(COOKIE, path=PREFIX)
        return response

    @pages.route("/<path:unknown>")
    def not_found(unknown: str) -> tuple[str, int]:
        return _error(404, f"there is no page {PREFIX}/{unknown}")

    @pages.errorhandler(FhirError)
    def fhir_error(error: FhirError) -> tuple[str, int]:
        messages = {404: "not found", 410: "deleted", 403: "not allowed with your access"}
        return _error(error.status, str(error) or messages.get(error.status, "the request could not be answered"))

    @pages.errorhandler(RequestEntityTooLarge)
    def too_large(_exc: RequestEntityTooLarge) -> tuple[str, int]:
        limit = current_app.config.get("MAX_CONTENT_LENGTH") or 0
        return _error(413, f"the file is too large: the limit is {limit / 1024 / 1024:.1f} MB")

    @pages.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> tuple[str, int]:
        return _error(error.code or 500, error.description or "the request could not be answered")

    @pages.errorhandler(Exception)
    def unexpected(_exc: Exception) -> tuple[str, int]:
        log.exception("page failed")  # the details go to the log, never to the page
        return _error(500, "the page could not be made; the server's log says why")

    return pages
