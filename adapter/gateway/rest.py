"""The FHIR REST blueprint: HTTP in, `FhirRequest` to the interaction, `FhirResponse` out.

It knows no SQL and no FHIR rules; those live in the interactions, the FHIR core and the store.
"""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Request, Response, current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

from adapter.fhir.outcomes import FhirError, bad_request, method_not_allowed, too_large, unsupported_media_type
from adapter.gateway import bulk
from adapter.gateway.access import repository
from adapter.gateway.base import service_base
from adapter.gateway.body import read_body
from adapter.gateway.core import FhirRequest, Route
from adapter.gateway.routes import ROUTES
from adapter.gateway.negotiation import check_body_type, content_type, error_answer, response_type
from adapter.gateway.operations import OPERATION_ROUTES
from adapter.gateway.transactions import BUNDLE_ROUTES

__all__ = ["blueprint", "service_base", "ENDPOINT_ROUTES"]

blueprint = Blueprint("fhir", __name__)
# Flask endpoint -> its route, for the hooks that ask what a request was (audit, read-only types).
ENDPOINT_ROUTES: dict[str, Route] = {}


def _params(http: Request, form: bool) -> list[tuple[str, str]]:
    params = list(http.args.items(multi=True)) if http.environ.get("QUERY_STRING") else []
    if form:
        media = (http.content_type or "").split(";")[0].strip().lower()
        if http.content_length and media != "application/x-www-form-urlencoded":
            raise unsupported_media_type(http.content_type or "(none)")
        limit = http.max_content_length = current_app.config["MAX_FORM_LENGTH"]
        try:
            params.extend(http.form.items(multi=True))
        except RequestEntityTooLarge:
            raise too_large(limit, "the _search form body", "_search") from None
        if any("\x00" in k or "\x00" in v for k, v in params):
            raise bad_request("the search's form body holds the NUL character (%00)")
    return params


def _view(route: Route) -> Any:
    form = route.path.endswith("/_search")
    on_type = route.path == "/<resource_type>"  # also matches /metadata, for the methods it has no rule of
    reads_body = route.method in ("POST", "PUT", "PATCH") and not form

    def view(**path: str) -> Response:
        http = request._get_current_object()  # type: ignore[attr-defined]  # one proxy lookup
        if on_type and path.get("resource_type") == "metadata":  # DELETE /metadata is no type's delete
            raise method_not_allowed(f"{route.method} is not allowed on {http.path}; allowed: GET, HEAD, OPTIONS",
                                     ["GET", "HEAD", "OPTIONS"])
        # The query string is parsed only when there is one: reads by id usually have none.
        params = _params(http, form)
        media = response_type(http.environ.get("HTTP_ACCEPT"),
                              next((v for k, v in params if k == "_format"), None))
        body = None
        if reads_body:
            if route.method != "PATCH":  # a patch's types are the handler's: JSON Patch is no FHIR JSON
                check_body_type(http.content_type)
            body = read_body(http)
        req = FhirRequest(
            base_url=service_base, resource_type=path.get("resource_type"), id=path.get("id"),
            version=path.get("version"), params=params, headers=http.headers,
            body=body, compartment=path.get("compartment"), compartment_id=path.get("compartment_id"),
        )
        result = route.handler(req, repository())
        headers = list(result.headers.items())
        if result.body is not None:
            headers.append(("Content-Type", content_type(media)))
        return Response(result.body, result.status, headers)

    view.__name__ = f"{route.operation or route.interaction}_{route.method.lower()}_{len(route.path)}"
    return view


for _route in ROUTES + OPERATION_ROUTES + BUNDLE_ROUTES:
    # POST [base] (batch/transaction) is /fhir, without a slash: no redirect for it.
    _function = _view(_route)
    ENDPOINT_ROUTES[f"{blueprint.name}.{_function.__name__}"] = _route
    blueprint.add_url_rule(_route.path, view_func=_function, methods=[_route.method],
                           strict_slashes=_route.path != "/")


bulk.register(blueprint)


@blueprint.get("/metadata")
def metadata() -> Response:
    media = response_type(request.headers.get("Accept"), request.args.get("_format"))
    body = current_app.extensions["fhir_capabilities"](service_base())
    return Response(body, 200, content_type=content_type(media))


def error_response(error: FhirError) -> Response:
    status, headers, body = error_answer(error, request.headers.get("Accept"), request.args.get("_format"))
    return Response(body, status, headers)