"""PATCH [type]/[id] (https://hl7.org/fhir/R4/http.html#patch): a JSON Patch (RFC 6902) or a
FHIRPath Patch, applied to the current version under its lock, the result validated and stored
as a PUT's would be (adapter/fhir/patch.py applies the documents)."""
from __future__ import annotations

from adapter.fhir import jsonio
from adapter.fhir.ids import check_id
from adapter.fhir.outcomes import FhirError, Issue, bad_request, not_found, precondition_failed
from adapter.fhir.patch import apply_fhirpath_patch, apply_json_patch
from adapter.gateway.core import FhirRequest, FhirResponse
from adapter.gateway.interactions import check_type, parse_if_match, validated, written
from adapter.store.repository import Repository

__all__ = ["patch"]

_PATCH_TYPES = {"application/json-patch+json": apply_json_patch, "application/fhir+json": apply_fhirpath_patch,
                "application/json": apply_fhirpath_patch}


def patch(req: FhirRequest, repo: Repository) -> FhirResponse:
    """PATCH [type]/[id] (http.html#patch): a JSON Patch, or a FHIRPath Patch in a Parameters
    body, applied to the current version; the result is validated and stored as a PUT would be."""
    rtype = check_type(req.resource_type)
    rid = check_id(req.id, f"{rtype}.id")
    media = (req.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    apply = _PATCH_TYPES.get(media)
    if apply is None:
        raise FhirError(415, [Issue("not-supported", f"a patch is sent as application/json-patch+json (JSON "
                                    f"Patch) or application/fhir+json (FHIRPath Patch), not {media or '(none)'!r}")])
    if not req.body:
        raise bad_request("the request has no body; send a patch document", code="required")
    document = jsonio.parse(req.body)
    if_match = req.headers.get("If-Match")
    version = parse_if_match(if_match) if if_match else None
    repo.read(rtype, rid)  # 404, or 410 for a deleted resource
    with repo.transaction() as tx:
        tx.lock([(rtype, rid)])
        current = tx.read(rtype, rid)
        if current is None:
            raise not_found(f"{rtype}/{rid} is not known (deleted meanwhile)")
        if version is not None and version != current.version_id:
            raise precondition_failed(f"If-Match names version {version} but the current version of "
                                      f"{rtype}/{rid} is {current.version_id}")
        patched = apply(jsonio.parse(current.data or b"{}"), document, rtype, rid)
        try:
            patched = validated(patched)
        except FhirError as exc:  # the document was well-formed; its result is not a valid resource
            raise FhirError(422, exc.issues, exc.headers) from None
        stored = tx.update(patched, if_match=current.version_id)
    return written(req, stored, 200)
