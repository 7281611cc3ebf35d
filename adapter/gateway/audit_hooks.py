"""The gateway's side of the audit trail: which requests are recorded, what is taken from each
(a small tuple, adapter/audit/record.py), and the refusal of writes to the audit trail itself.

The client comes from `flask.g.access` (set by the authorisation hook: `.client`, `.site`), or is
None when auth is off or the request was refused before a grant.
"""
from __future__ import annotations

import socket
import time
from urllib.parse import urlencode

from flask import Flask, Response, g, request

from adapter.audit.record import AccessRecord
from adapter.audit.writer import AuditWriter
from adapter.gateway.base import is_public, lean_read_safe
from adapter.gateway.readonly import refuse_write
from adapter.pages import is_page, is_public_page
from adapter.gateway.rest import ENDPOINT_ROUTES

__all__ = ["register", "interaction_of"]

_WRITES = frozenset({"create", "update", "patch", "delete"})
_SINGLE = frozenset({"read", "vread", "create", "update", "patch"})
# The Bulk Data endpoints (adapter/gateway/bulk.py) are no Route: their own names.
_BULK = {"export_status": "$export-status", "export_delete": "$export-delete", "export_file": "$export-file"}


def interaction_of(endpoint: str | None) -> tuple[str | None, str | None]:
    """(restful-interaction code or "operation", operation name) of a Flask endpoint."""
    route = ENDPOINT_ROUTES.get(endpoint or "")
    if route is not None:
        return ("operation", f"${route.operation}") if route.operation else (route.interaction, None)
    name = (endpoint or "").partition(".")[2]
    if name.startswith("export_") and name not in _BULK:
        return "operation", "$export"
    if name in _BULK:
        return "operation", _BULK[name]
    return None, None


# The web pages (adapter/pages) as the audit trail sees them: the child page is a read of the
# Patient (so the trail names the child), the study page reads across types, the workbench
# maps a site's export (MRNs and all) without storing it.
_PAGES = {"pages.child": ("read", None), "pages.study": ("search-system", None),
          "pages.study_outcomes": ("search-system", None), "pages.study_adverse_events": ("search-system", None),
          "pages.workbench": ("operation", "$workbench-dry-run")}


def _page_record(response: Response, auth_on: bool) -> AccessRecord:
    interaction, operation = _PAGES.get(request.endpoint or "", (None, None))
    patient = (request.view_args or {}).get("patient_id") if interaction == "read" else None
    access = g.get("access")
    return AccessRecord(
        request.method, request.path.lstrip("/"), request.environ.get("QUERY_STRING", ""), response.status_code,
        interaction, operation, "Patient" if patient else None, patient, None, None, None, None,
        getattr(access, "client", None), getattr(access, "site", None), auth_on, request.remote_addr,
        time.time(), None, getattr(access, "user", None))


def register(app: Flask) -> None:
    fhir_path = app.config["FHIR_PATH"]

    @app.before_request
    @lean_read_safe("a read is no write")
    def refuse_read_only_writes() -> None:
        route = ENDPOINT_ROUTES.get(request.endpoint or "")
        if route is not None and route.interaction in _WRITES:
            refuse_write((request.view_args or {}).get("resource_type"), request.method)

    if not app.config["AUDIT"]:
        return
    observer = str(app.config.get("FHIR_BASE_URL") or socket.gethostname())
    writer = AuditWriter(app.config["DATABASE_URL"], observer, app.config.get("AUDIT_JOURNAL_DIR"))
    app.extensions["audit_writer"] = writer
    auth_on = bool(app.config.get("AUTH"))

    @app.after_request
    def audit(response: Response) -> Response:
        path = request.path
        if is_page(path):
            if not is_public_page(path) and request.method != "OPTIONS":
                writer.record(_page_record(response, auth_on))
            return response
        if request.method == "OPTIONS" or not path.startswith(fhir_path) or is_public(path, fhir_path):
            return response
        interaction, operation = interaction_of(request.endpoint)
        args = request.view_args or {}
        status = response.status_code
        query = request.environ.get("QUERY_STRING", "")
        form = request.__dict__.get("form")  # a POST _search's parameters, if the view parsed them
        if form:
            query = "&".join(filter(None, (query, urlencode(list(form.items(multi=True))))))
        if interaction == "transaction" and status < 300 and b'"batch-response"' in response.get_data():
            interaction = "batch"
        # The answer's bytes only where they are needed and small: a single resource (for its
        # patient) or an error (for its reason); never a streamed export file.
        wanted = status >= 400 or (interaction in _SINGLE and status < 300)
        body = response.get_data() if wanted and not response.direct_passthrough else None
        access = g.get("access")
        under = path[len(fhir_path):].strip("/")
        # Routes such as Patient/<id>/$everything name their type in the path, not in an argument.
        first = under.partition("/")[0]
        rtype = args.get("resource_type") or (first if interaction and first[:1].isupper() else None)
        writer.record(AccessRecord(
            request.method, under, query, status, interaction, operation, rtype,
            args.get("id") or args.get("group"), args.get("version"),
            args.get("compartment"), args.get("compartment_id"),
            response.headers.get("Location") or response.headers.get("Content-Location"),
            getattr(access, "client", None), getattr(access, "site", None), auth_on,
            request.remote_addr, time.time(), body))
        return response
