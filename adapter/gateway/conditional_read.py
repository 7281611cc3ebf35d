"""What a read may ask besides the id: If-Modified-Since (RFC 7232 3.3) and a subset of the
resource (_summary, _elements: https://hl7.org/fhir/R4/search.html#summary, which read honours too)."""
from __future__ import annotations

from datetime import timezone
from email.utils import parsedate_to_datetime

from adapter.fhir.outcomes import bad_request
from adapter.fhir.search import MAX_ELEMENTS, SUMMARY_MODES

__all__ = ["modified_since", "subsetting_params"]


def modified_since(last_updated: str, header: str) -> bool:
    """Whether a stored instant (`...Z`, UTC) is later than an If-Modified-Since date. HTTP dates
    have whole seconds, as our Last-Modified does: the instant is compared to the second. A date
    that cannot be read is ignored (RFC 7232 3.3), so the resource counts as modified."""
    try:
        since = parsedate_to_datetime(header)
    except (TypeError, ValueError, IndexError):
        return True
    if since.tzinfo is not None:
        since = since.astimezone(timezone.utc)
    return last_updated[:19] > since.strftime("%Y-%m-%dT%H:%M:%S")


def subsetting_params(params: list[tuple[str, str]]) -> tuple[str | None, tuple[str, ...]]:
    """_summary and _elements of a read; other parameters are no concern of a read."""
    summary: str | None = None
    elements: tuple[str, ...] = ()
    for name, value in params:
        if name == "_summary":
            if value not in SUMMARY_MODES or value == "count":
                raise bad_request(f"_summary: {value!r} is not one of true, false, text, data on a read",
                                  "_summary")
            summary = None if value == "false" else value
        elif name == "_elements":
            elements = tuple(e.strip() for e in value.split(",") if e.strip())
            if len(elements) > MAX_ELEMENTS:
                raise bad_request(f"_elements: more than {MAX_ELEMENTS} element names", "_elements",
                                  code="too-costly")
    return summary, elements
