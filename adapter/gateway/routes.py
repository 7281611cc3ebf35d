"""The route table of the FHIR interactions (operations and Bundles add theirs: operations.py,
transactions.py): what the Flask blueprint serves and the CapabilityStatement lists."""
from __future__ import annotations

from adapter.gateway import interactions as i
from adapter.gateway.core import FhirRequest, FhirResponse, Route
from adapter.gateway.patching import patch
from adapter.gateway.system_search import compartment_search_all, system_search
from adapter.store.repository import Repository

__all__ = ["ROUTES", "TYPE_INTERACTIONS", "SYSTEM_INTERACTIONS"]


def _search(req: FhirRequest, repo: Repository) -> FhirResponse:
    """GET [type]?..., GET Patient/[id]/[type]?..., and GET Patient/[id]/*: a patient's whole
    compartment, searched across its types."""
    if req.resource_type == "*" and req.compartment:
        return compartment_search_all(req, repo)
    return i.search(req, repo)


ROUTES: tuple[Route, ...] = (
    Route("GET", "/_history", "history-system", i.history),
    Route("GET", "/<resource_type>", "search-type", _search),
    Route("POST", "/<resource_type>/_search", "search-type", _search),
    Route("POST", "/<resource_type>", "create", i.create),
    Route("PUT", "/<resource_type>", "update", i.conditional_update),
    Route("DELETE", "/<resource_type>", "delete", i.conditional_delete),
    Route("GET", "/<resource_type>/_history", "history-type", i.history),
    Route("GET", "/<resource_type>/<id>", "read", i.read),
    Route("PUT", "/<resource_type>/<id>", "update", i.update),
    Route("PATCH", "/<resource_type>/<id>", "patch", patch),
    Route("DELETE", "/<resource_type>/<id>", "delete", i.delete),
    Route("GET", "/<resource_type>/<id>/_history", "history-instance", i.history),
    Route("GET", "/<resource_type>/<id>/_history/<version>", "vread", i.vread),
    Route("GET", "/<compartment>/<compartment_id>/<resource_type>", "search-type", _search),
    Route("GET", "/", "search-system", system_search),
)
# Interactions on every served type, in the order of the table above.
TYPE_INTERACTIONS: tuple[str, ...] = tuple(dict.fromkeys(
    r.interaction for r in ROUTES if "<resource_type>" in r.path))
SYSTEM_INTERACTIONS: tuple[str, ...] = tuple(dict.fromkeys(
    r.interaction for r in ROUTES if "<resource_type>" not in r.path and not r.operation))

