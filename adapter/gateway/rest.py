"""The FHIR REST blueprint: HTTP in, `FhirRequest` to the interaction, `FhirResponse` out.

It knows no SQL and no FHIR rules; those live in the interactions, the FHIR core and the store.
"""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, request

from adapter.fhir.jsonio import dumps
from adapter.fhir.outcomes import FhirError, unsupported_media_type
from adapter.gateway.interactions import ROUTES, FhirRequest, Route
from adapter.gateway.negotiation import check_body_type, response_type

__all__ = ["blueprint", "service_base"]

blueprint = Blueprint("fhir", __name__)


def service_base() -> str:
    configured = current_app.config.get("FHIR_BASE_URL")
    if configured:
        return str(configured).rstrip("/")
    return request.host_url.rstrip("/") + (blueprint_prefix() or "")


def blueprint_prefix() -> str:
    return str(current_app.config.get("FHIR_PATH", "/fhir"))


def _params(route: Route) -> list[tuple[str, str]]:
    params = list(request.args.items(multi=True))
    if route.path.endswith("/_search"):
        media = (request.content_type or "").split(";")[0].strip().lower()
        if request.content_length and media != "application/x-www-form-urlencoded":
            raise unsupported_media_type(request.content_type or "(none)")
        params.extend(request.form.items(multi=True))
    return params


def _view(route: Route) -> Any:
    def view(**path: str) -> Response:
        media = response_type(request.headers.get("Accept"), request.args.get("_format"))
        body = None
        if request.method in ("POST", "PUT") and not route.path.endswith("/_search"):
            check_body_type(request.content_type)
            body = request.get_data(cache=False)
        req = FhirRequest(
            base=service_base(), resource_type=path.get("resource_type"), id=path.get("id"),
            version=path.get("version"), params=_params(route), headers=request.headers,
            body=body,
        )
        result = route.handler(req, current_app.extensions["fhir_store"])
        return Response(result.body, result.status, result.headers,
                        content_type=f"{media}; charset=utf-8" if result.body is not None else None)

    view.__name__ = f"{route.interaction}_{route.method.lower()}_{len(route.path)}"
    return view


for _route in ROUTES:
    blueprint.add_url_rule(_route.path, view_func=_view(_route), methods=[_route.method])


@blueprint.get("/metadata")
def metadata() -> Response:
    media = response_type(request.headers.get("Accept"), request.args.get("_format"))
    body = current_app.extensions["fhir_capabilities"](service_base())
    return Response(body, 200, content_type=f"{media}; charset=utf-8")


def error_response(error: FhirError) -> Response:
    try:
        media = response_type(request.headers.get("Accept"), request.args.get("_format"))
    except FhirError:
        media = "application/fhir+json"
    return Response(dumps(error.outcome()), error.status, error.headers,
                    content_type=f"{media}; charset=utf-8")
