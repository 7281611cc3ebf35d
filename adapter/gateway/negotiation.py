"""Content negotiation for FHIR JSON (https://hl7.org/fhir/R4/http.html#mime-type).

Answers are JSON only: `application/fhir+json` unless the client asked for plain
`application/json`. Anything else asked for (XML, Turtle, HTML...) is a 406; a request body of
another type is a 415.
"""
from __future__ import annotations

from adapter.fhir.jsonio import dumps
from adapter.fhir.outcomes import FhirError, not_acceptable, unsupported_media_type

__all__ = ["response_type", "check_body_type", "content_type", "error_answer", "FHIR_JSON"]

FHIR_JSON = "application/fhir+json"
_JSON_TYPES = {FHIR_JSON, "application/json", "application/json+fhir", "text/json"}
_WILDCARDS = {"*/*", "application/*"}
_CONTENT_TYPES = {media: f"{media}; charset=utf-8" for media in (FHIR_JSON, "application/json")}
_FORMATS = {"json": FHIR_JSON, "application/json": "application/json",
            "application/fhir+json": FHIR_JSON, "application/json+fhir": FHIR_JSON}


def _media_types(header: str) -> list[tuple[str, float]]:
    types = []
    for part in header.split(","):
        pieces = [p.strip() for p in part.split(";")]
        if not pieces[0]:
            continue
        quality = 1.0
        for param in pieces[1:]:
            key, _, value = param.partition("=")
            if key.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        types.append((pieces[0].lower(), quality))
    return types


def content_type(media: str) -> str:
    """The Content-Type header of an answer in `media` (one response_type chose)."""
    return _CONTENT_TYPES[media]


def response_type(accept: str | None, format_param: str | None) -> str:
    """The media type to answer in, or a 406 FhirError.

    Examples:
        >>> response_type("application/xml, application/json;q=0.5", None)
        'application/json'
        >>> response_type(None, "json")
        'application/fhir+json'
    """
    if format_param:
        chosen = _FORMATS.get(format_param.strip().lower())
        if chosen is None:
            raise not_acceptable(format_param)
        return chosen
    if not accept or not accept.strip():
        return FHIR_JSON
    for media, quality in sorted(_media_types(accept), key=lambda t: -t[1]):
        if quality <= 0:
            continue
        if media in _WILDCARDS or media in (FHIR_JSON, "application/json+fhir"):
            return FHIR_JSON
        if media in _JSON_TYPES:
            return "application/json"
    raise not_acceptable(accept)


def check_body_type(header: str | None) -> None:
    """415 unless the body (its Content-Type header) is FHIR JSON (charset and fhirVersion
    parameters allowed)."""
    media = (header or "").split(";")[0].strip().lower()
    if media not in _JSON_TYPES:
        raise unsupported_media_type(header or "(none)")


def error_answer(error: FhirError, accept: str | None, fmt: str | None = None) -> tuple[int, list[tuple[str, str]], bytes]:
    """(status, headers, body) of an error: its OperationOutcome in the negotiated format (JSON
    when nothing acceptable is), with the error's own headers. The one way errors are written,
    by Flask's error path (rest.error_response) and the lean read path alike."""
    try:
        media = response_type(accept, fmt)
    except FhirError:
        media = FHIR_JSON
    return error.status, [*error.headers.items(), ("Content-Type", content_type(media))], dumps(error.outcome())
