"""_summary and _elements (https://hl7.org/fhir/R4/search.html#summary): a resource cut down
to some of its elements, tagged SUBSETTED so that nobody takes it for the whole."""
from __future__ import annotations

import functools
from typing import Any

from fhir.resources.R4B import get_fhir_model_class

from adapter.fhir import jsonio

__all__ = ["subset", "summary_elements", "SUBSETTED"]

SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}
_ALWAYS = frozenset({"resourceType", "id", "meta"})


def _flagged(resource_type: str, flag: str) -> frozenset[str]:
    model = get_fhir_model_class(resource_type)
    return frozenset(f.alias or name for name, f in model.model_fields.items()
                     if isinstance(f.json_schema_extra, dict) and f.json_schema_extra.get(flag))


@functools.cache
def summary_elements(resource_type: str) -> frozenset[str]:
    """Elements marked isSummary in the resource's definition (R4B models, the same for R4 here)."""
    return _flagged(resource_type, "summary_element_property") | _ALWAYS


@functools.cache
def mandatory_elements(resource_type: str) -> frozenset[str]:
    return _flagged(resource_type, "element_required") | _ALWAYS


def _wanted(key: str, names: frozenset[str]) -> bool:
    """`value` keeps valueQuantity: a choice element is asked for by its name without type."""
    return key in names or any(key.startswith(n) and key[len(n):][:1].isupper() for n in names)


def subset(data: bytes, resource_type: str, summary: str | None, elements: tuple[str, ...]) -> bytes:
    """The stored bytes cut down as asked; unchanged when nothing is asked."""
    if summary is None and not elements:
        return data
    resource: dict[str, Any] = jsonio.parse(data)
    if summary == "data":
        kept = {k: v for k, v in resource.items() if k != "text"}
    else:
        if summary == "true":
            names = summary_elements(resource_type)
        elif summary == "text":
            names = mandatory_elements(resource_type) | {"text"}
        else:
            names = mandatory_elements(resource_type) | frozenset(elements)
        kept = {k: v for k, v in resource.items() if _wanted(k, names)}
    meta = dict(kept.get("meta") or {})
    meta["tag"] = [*meta.get("tag", []), SUBSETTED]
    kept["meta"] = meta
    return jsonio.dumps(kept)
