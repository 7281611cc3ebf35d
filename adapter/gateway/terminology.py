"""The terminology operations over HTTP (https://hl7.org/fhir/R4/terminology-service.html):
CodeSystem/$lookup, $validate-code and $subsumes, ValueSet/$expand and $validate-code,
ConceptMap/$translate, each at type and instance level, by GET and POST. The work is done in
adapter/terminology/; this turns inputs into its arguments and picks the resource to work on.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from adapter.fhir import jsonio
from adapter.fhir.outcomes import bad_request
from adapter.gateway.core import FhirRequest, FhirResponse, Route
from adapter.gateway.terminology_inputs import Inputs
from adapter.store.repository import Repository
from adapter.terminology import (
    expand, lookup, subsumes, translate, validate_code_in_system, validate_code_in_value_set,
)
from adapter.terminology.parameters import validation
from adapter.terminology.resolve import resolve, split_canonical
from adapter.terminology.translate import concept_maps

__all__ = ["TERMINOLOGY_ROUTES"]

_DISPLAY_ONLY = frozenset({"displayLanguage"})  # one language is held: nothing to choose


def _ok(resource: dict[str, Any]) -> FhirResponse:
    return FhirResponse(200, jsonio.dumps(resource))


def _code(inputs: Inputs, code: str, coding: str, system: str | None = "system",
          version: str | None = "version") -> tuple[dict[str, Any], str]:
    """The one code asked about, as a Coding, from `code` (+ system, version) or `coding`, and
    the name of the input it came from (for the expression of a later error)."""
    given_code, given_coding = inputs.text(code), inputs.coding(coding)
    if given_code and given_coding:
        raise bad_request(f"give {code!r} or {coding!r}, not both", coding)
    if given_coding:
        return given_coding, coding
    if not given_code:
        raise bad_request(f"parameter {code!r} (or {coding!r}) is required", code, code="required")
    found = {"code": given_code}
    for key, name in (("system", system), ("version", version)):
        if name and (value := inputs.text(name)):
            found[key] = value
    if "|" in found.get("system", ""):  # a canonical url|version (CodeSystem $validate-code's url)
        found["system"], embedded = split_canonical(found["system"], None)
        if embedded and "version" not in found:
            found["version"] = embedded
    return found, code


def _code_system(req: FhirRequest, repo: Repository, coding: dict[str, Any], expression: str) -> dict[str, Any]:
    if req.id is not None:
        return resolve(repo, "CodeSystem", rid=req.id)
    where = "system" if expression in ("code", "codeA", "codeB") else expression
    if not coding.get("system"):
        raise bad_request(f"say which code system: parameter 'system' (or {expression}.system), or call the "
                          "operation on an instance (CodeSystem/[id]/$...)", where, code="required")
    return resolve(repo, "CodeSystem", url=coding["system"], version=coding.get("version"), expression=where)


def lookup_operation(req: FhirRequest, repo: Repository) -> FhirResponse:
    inputs = Inputs(req, "lookup", {"code", "system", "version", "coding", "property"}, _DISPLAY_ONLY)
    coding, where = _code(inputs, "code", "coding")
    code_system = _code_system(req, repo, coding, where)
    return _ok(lookup(code_system, coding["code"], inputs.texts("property"), where))


def subsumes_operation(req: FhirRequest, repo: Repository) -> FhirResponse:
    inputs = Inputs(req, "subsumes", {"codeA", "codeB", "system", "version", "codingA", "codingB"})
    a, where_a = _code(inputs, "codeA", "codingA")
    b, where_b = _code(inputs, "codeB", "codingB")
    if a.get("system") and b.get("system") and a["system"] != b["system"]:
        raise bad_request(f"codingA and codingB are of different systems ({a['system']}, {b['system']}): "
                          "subsumption is within one code system", "codingB")
    code_system = _code_system(req, repo, a if a.get("system") else b, where_a)
    return _ok(subsumes(code_system, a["code"], b["code"], (where_a, where_b)))


def _codings(inputs: Inputs, system: str = "system", version: str | None = "version") -> list[dict[str, Any]]:
    """The codings to validate: `code` (+ system, display), `coding` or `codeableConcept`, one of them."""
    concept = inputs.codings("codeableConcept")
    single = inputs.coding("coding")
    given = [n for n, v in (("code", inputs.text("code")), ("coding", single), ("codeableConcept", concept)) if v]
    if len(given) > 1:
        raise bad_request(f"give one of code, coding and codeableConcept, not {' and '.join(given)}", given[1])
    if not given:
        raise bad_request("parameter 'code' (or coding, or codeableConcept) is required", "code", code="required")
    if concept is not None:
        return concept
    codings = [single] if single is not None else [_code(inputs, "code", "coding", system, version)[0]]
    if (display := inputs.text("display")) is not None:
        codings[0] = codings[0] | {"display": display}
    return codings


def validate_code_system_operation(req: FhirRequest, repo: Repository) -> FhirResponse:
    inputs = Inputs(req, "validate-code", {"url", "codeSystem", "code", "version", "display", "coding",
                                           "codeableConcept", "abstract"}, _DISPLAY_ONLY)
    codings = _codings(inputs, system="url")
    given = inputs.resource("codeSystem", "CodeSystem")
    if req.id is not None:
        code_system = resolve(repo, "CodeSystem", rid=req.id)
    elif given is not None:
        code_system = given
    else:
        url = inputs.text("url") or next((c.get("system") for c in codings if c.get("system")), None)
        code_system = resolve(repo, "CodeSystem", url=url, version=inputs.text("version"))
    return _ok(validation(*validate_code_in_system(code_system, codings, inputs.flag("abstract"))))


def _value_set(req: FhirRequest, repo: Repository, inputs: Inputs) -> dict[str, Any]:
    given = inputs.resource("valueSet", "ValueSet")
    if req.id is not None:
        return resolve(repo, "ValueSet", rid=req.id)
    if given is not None:
        return given
    return resolve(repo, "ValueSet", url=inputs.text("url"), version=inputs.text("valueSetVersion"))


def validate_value_set_operation(req: FhirRequest, repo: Repository) -> FhirResponse:
    inputs = Inputs(req, "validate-code", {"url", "valueSet", "valueSetVersion", "code", "system", "systemVersion",
                                           "display", "coding", "codeableConcept", "abstract"}, _DISPLAY_ONLY)
    codings = _codings(inputs, version="systemVersion")
    if inputs.text("code") and not inputs.text("system"):
        # R4: "If a code is provided, a system or a context must be provided"; context is refused
        raise bad_request("parameter 'system' is required with 'code' (a code alone may be in several "
                          "code systems)", "system", code="required")
    abstract = inputs.flag("abstract")
    return _ok(validation(*validate_code_in_value_set(repo, _value_set(req, repo, inputs), codings, abstract)))


_EXPAND_ECHO = (("filter", "String"), ("offset", "Integer"), ("count", "Integer"),
                ("includeDesignations", "Boolean"), ("activeOnly", "Boolean"), ("excludeNested", "Boolean"),
                ("excludeNotForUI", "Boolean"))


def expand_operation(req: FhirRequest, repo: Repository) -> FhirResponse:
    inputs = Inputs(req, "expand", {"url", "valueSet", "valueSetVersion", *(n for n, _ in _EXPAND_ECHO)},
                    _DISPLAY_ONLY | {"excludePostCoordinated"})  # no post-coordinated codes are held
    text, offset, count = inputs.text("filter"), inputs.count("offset"), inputs.count("count")
    designations, active = inputs.flag("includeDesignations"), inputs.flag("activeOnly")
    selectable = inputs.flag("excludeNotForUI")
    inputs.flag("excludeNested")  # checked only: the expansion is always flat
    vs = _value_set(req, repo, inputs)
    echo = []
    for name, kind in _EXPAND_ECHO:
        value = inputs.count(name) if kind == "Integer" else inputs.flag(name) if kind == "Boolean" else inputs.text(name)
        if value is not None:
            echo.append({"name": name, f"value{kind}": value})
    return _ok(expand(repo, vs, text, offset or 0, count, bool(designations), bool(active), echo, bool(selectable)))


def translate_operation(req: FhirRequest, repo: Repository) -> FhirResponse:
    inputs = Inputs(req, "translate", {"url", "conceptMap", "conceptMapVersion", "code", "system", "version",
                                       "source", "coding", "codeableConcept", "target", "targetsystem", "reverse"})
    codings = _codings(inputs)
    reverse = bool(inputs.flag("reverse"))
    given = inputs.resource("conceptMap", "ConceptMap")
    url, version = inputs.text("url"), inputs.text("conceptMapVersion")
    source, target = inputs.text("source"), inputs.text("target")
    # R4: reverse "reverses the meaning of the source and target parameters"; and a value set
    # named url|version is compared by its url, as the maps' canonicals are
    if reverse:
        source, target = target, source
    source, target = (split_canonical(v, None)[0] if v else None for v in (source, target))

    def maps_for(system: str | None) -> list[dict[str, Any]]:
        if given is not None and req.id is None:
            return [given]
        return concept_maps(repo, req.id, url, version, system, source, target, reverse)
    return _ok(translate(repo, maps_for, codings, inputs.text("targetsystem"), reverse))


_OPERATIONS: tuple[tuple[str, str, Callable[[FhirRequest, Repository], FhirResponse]], ...] = (
    ("CodeSystem", "lookup", lookup_operation),
    ("CodeSystem", "validate-code", validate_code_system_operation),
    ("CodeSystem", "subsumes", subsumes_operation),
    ("ValueSet", "expand", expand_operation),
    ("ValueSet", "validate-code", validate_value_set_operation),
    ("ConceptMap", "translate", translate_operation),
)
TERMINOLOGY_ROUTES: tuple[Route, ...] = tuple(
    Route(method, path, "operation", handler, name, f"http://hl7.org/fhir/OperationDefinition/{rtype}-{name}")
    for rtype, name, handler in _OPERATIONS
    for path in (f"/{rtype}/${name}", f"/{rtype}/<id>/${name}")
    for method in ("GET", "POST"))
