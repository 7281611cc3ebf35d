"""Resource validation: R4B models + R4 required bindings + the official R4 JSON Schema.

Three layers, each catching what the others miss:
1. fhir.resources R4B models: datatypes, primitive regexes, cardinality, one value[x];
2. required value-set bindings (fhir.resources accepts Observation.status "done");
3. the official R4 4.0.1 JSON Schema (jsonschema-rs): R4B-only elements such as
   PlanDefinition.subjectCanonical, datatype enums such as Quantity.comparator.
Every problem becomes an `Issue` whose `expression` is the FHIRPath of the element.
"""
from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from typing import Any

import jsonschema_rs
from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from adapter.fhir.bounds import bound_problem
from adapter.fhir.definitions import CONTAINED_TYPES, SERVED_TYPES, bindings, r4_schema, resource_types
from adapter.fhir.ids import id_problem
from adapter.fhir.integers import integer_issues
from adapter.fhir.outcomes import Issue
from adapter.fhir.value_checks import Location, value_issues, value_locations

__all__ = ["validate", "expression", "ShapeValidator", "shape", "signature"]


def expression(resource_type: str, loc: tuple[Any, ...] | list[Any]) -> str:
    """FHIRPath of an element from a location of names and list indices.

    Examples:
        >>> expression("Observation", ("component", 0, "valueQuantity", "value"))
        'Observation.component[0].valueQuantity.value'
    """
    out = resource_type
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def validate(resource: Any, expected_type: str | None = None) -> list[Issue]:
    """All problems of one resource; an empty list means valid."""
    if not isinstance(resource, dict):
        return [Issue("structure", "a resource must be a JSON object")]
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str):
        return [Issue("required", "resourceType is missing", "resourceType")]
    if expected_type and rtype != expected_type:
        return [Issue("invalid", f"resourceType {rtype!r} does not match the URL's type "
                      f"{expected_type!r}", "resourceType")]
    if rtype not in SERVED_TYPES:
        return [Issue("not-supported", f"resource type {rtype!r} is not served here", "resourceType")]
    if (bound := bound_problem(resource)) is not None:  # first: nothing below walks an oversized one
        return [Issue("too-costly", bound[0], expression(rtype, bound[1]))]
    if unknown := _contained_types(rtype, resource):  # the R4B models fail on an unknown type
        return unknown
    issues = [Issue("value", problem, f"{rtype}.id")] if "id" in resource and (
        problem := id_problem(resource["id"])) else []
    issues.extend(i for i in _model_issues(rtype, resource) if not (issues and i.expression == f"{rtype}.id"))
    issues.extend(_binding_issues(rtype, resource))
    seen = {i.expression for i in issues}
    issues.extend(i for i in integer_issues(rtype, resource) if i.expression not in seen)
    issues.extend(_empty_issues(rtype, resource, ()))
    seen = {i.expression for i in issues}
    issues.extend(i for i in _schema_issues(rtype, resource) if i.expression not in seen)
    seen = {i.expression for i in issues}
    issues.extend(i for i in _contained_issues(rtype, resource) if i.expression not in seen)
    return issues


def _contained_issues(rtype: str, resource: dict[str, Any]) -> Iterator[Issue]:
    """Each contained resource of a type with definitions, against its own type's bindings and
    R4 schema: the models check it with its container, but the other layers see only the
    container's own elements (the schema's nested resource is a plain object)."""
    contained = resource.get("contained")
    for index, inner in enumerate(contained if isinstance(contained, list) else []):
        ctype = inner.get("resourceType") if isinstance(inner, dict) else None
        if ctype not in SERVED_TYPES and ctype not in CONTAINED_TYPES:
            continue
        where = f"{rtype}.contained[{index}]"
        for issue in (*_binding_issues(ctype, inner), *integer_issues(ctype, inner), *_schema_issues(ctype, inner)):
            inside = issue.expression or ctype
            yield Issue(issue.code, issue.diagnostics.replace(f"{inside} ", f"{where}{inside[len(ctype):]} ", 1),
                        where + inside[len(ctype):], issue.severity)


def shape(node: Any) -> str:
    """The structure of a JSON value: keys, list lengths and scalar types, not the values.

    Examples:
        >>> shape({"a": [1, "x"], "b": {"c": True}})
        '{a:[int,str],b:{c:bool}}'
    """
    if isinstance(node, dict):
        return "{" + ",".join(f"{k}:{shape(v)}" for k, v in node.items()) + "}"
    if isinstance(node, list):
        return "[" + ",".join(shape(v) for v in node) + "]"
    return type(node).__name__


_END = object()  # closes a dict or list in a signature (no key or type can equal it)


def _signature(node: Any, append: Any) -> None:
    kind = type(node)
    if kind is dict:
        append(dict)
        for key, value in node.items():
            append(key)
            kind = type(value)
            if kind is dict or kind is list:
                _signature(value, append)
            elif key == "resourceType" and kind is str:
                append(value)  # a type is structure: a Basic must not pass as a Patient's shape
            else:
                append(kind)  # a scalar's type, inline: most nodes are leaves
        append(_END)
    elif kind is list:
        append(list)
        for value in node:
            kind = type(value)
            if kind is dict or kind is list:
                _signature(value, append)
            else:
                append(kind)
        append(_END)
    else:
        append(kind)


def signature(node: Any) -> tuple[Any, ...]:
    """`shape` as a tuple of keys and types (dict and list open, a marker closes), 2-3x cheaper
    to make and unambiguous: keys are strings and markers are not, so no key can pass for
    structure (a key such as "a:int" cannot make two shapes equal).

    Examples:
        >>> signature({"a": [1, "x"]}) == signature({"a": [2, "y"]}), signature({"a": [1]}) == signature({"a": [True]})
        (True, False)
    """
    out: list[Any] = []
    _signature(node, out.append)
    return tuple(out)


class ShapeValidator:
    """`validate` for many resources made from the same templates (a site mapping's output, a
    site's files at the centre), with the same verdict as `validate` on every resource.

    The R4B model layer checks structure: element names, datatypes, cardinality, required
    elements, one value[x]. For two resources of the same shape (same keys, list lengths, scalar
    types and resource types) it cannot answer differently, so it runs once per shape
    (`signature`); on every resource run the layers that look at values (the id, the R4
    schema's primitive patterns, required bindings, contained resources) and, at the places
    found once per shape, the value checks only the models make (calendar dates, base64) and
    the integer ranges (value_checks.py). A resource containing a type the other layers cannot
    check is validated whole every time.
    The model costs ~165 us a resource, the rest ~15-25 us. One validator per process.
    (Empty arrays and objects are shape too: a shape holding one is never valid, never kept.)
    """

    def __init__(self) -> None:
        self._valid: dict[tuple[Any, ...], tuple[Location, ...]] = {}

    def __call__(self, resource: dict[str, Any]) -> list[Issue]:
        try:
            shaped = signature(resource)
        except RecursionError:  # nested past the stack: validate's iterative bound refuses it
            return validate(resource)
        locations = self._valid.get(shaped)
        if locations is None:
            issues = validate(resource)
            if not issues and _checkable(resource):
                if len(self._valid) >= 10_000:  # a source with endless shapes: stay bounded
                    self._valid.clear()
                self._valid[shaped] = value_locations(resource["resourceType"], resource)
            return issues
        rtype = resource["resourceType"]
        issues = [Issue("value", problem, f"{rtype}.id")] if "id" in resource and (
            problem := id_problem(resource["id"])) else []
        for found in (_binding_issues(rtype, resource), _schema_issues(rtype, resource),
                      _contained_issues(rtype, resource),
                      value_issues(rtype, resource, locations, expression)):
            seen = {i.expression for i in issues}
            issues.extend(i for i in found if i.expression not in seen)
        return issues


def _checkable(resource: dict[str, Any]) -> bool:
    """Whether every contained resource is of a type the value layers check (the others are
    checked by the models alone, so a resource holding one is never taken from the cache)."""
    contained = resource.get("contained") or ()
    return all(isinstance(c, dict) and (c.get("resourceType") in SERVED_TYPES or c.get("resourceType") in
                                        CONTAINED_TYPES) for c in contained)


def _empty_issues(rtype: str, node: Any, loc: tuple[Any, ...]) -> Iterator[Issue]:
    """FHIR JSON has no empty arrays and no empty objects (R4 json.html: an element is left out
    instead); neither the R4B models nor the R4 schema says so."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        if isinstance(value, (dict, list)):
            if not value:
                where = expression(rtype, (*loc, key))
                kind = "array" if isinstance(value, list) else "object"
                yield Issue("structure", f"{where} is an empty {kind}: FHIR JSON leaves an element "
                            "without content out", where)
            else:
                yield from _empty_issues(rtype, value, (*loc, key))


def _contained_types(rtype: str, resource: dict[str, Any]) -> list[Issue]:
    contained = resource.get("contained")
    issues = []
    for i, item in enumerate(contained if isinstance(contained, list) else ()):
        kind = item.get("resourceType") if isinstance(item, dict) else None
        if isinstance(item, dict) and kind not in resource_types():
            what = f"{kind!r} is no FHIR R4 resource type" if kind is not None else "a contained resource needs a resourceType"
            issues.append(Issue("structure", what, expression(rtype, ("contained", i, "resourceType"))))
    return issues


_CHOICE = re.compile(r"\['(\w+?)[A-Z]")


def _model_issues(rtype: str, resource: dict[str, Any]) -> Iterator[Issue]:
    try:
        get_fhir_model_class(rtype).model_validate(resource)
    except (KeyError, TypeError, AttributeError) as exc:  # the models' own failures, e.g. an R4-only type
        yield Issue("structure", f"the resource cannot be read as an R4 {rtype} ({type(exc).__name__}: "
                    f"{str(exc)[:200]})", rtype)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if p != "resource_type")
            msg = err["msg"].removeprefix("Value error, ")
            code = "required" if "missing" in err["type"] else "structure" if \
                err["type"] == "extra_forbidden" else "value"
            if "missing" in err["type"]:
                msg = f"{expression(rtype, loc)} is required"
            elif err["type"] == "extra_forbidden":
                msg = f"unknown element {loc[-1]!r}"
            elif not loc and (m := _CHOICE.search(msg)):
                loc = (f"{m.group(1)}[x]",)
                msg = f"only one {m.group(1)}[x] element is allowed: {msg}"
            input_ = err.get("input")
            if code == "value" and isinstance(input_, (str, int, float)):
                msg = f"{msg} (value {input_!r})"
            yield Issue(code, msg, expression(rtype, loc))


@functools.cache
def _binding_paths(rtype: str) -> list[tuple[tuple[str, ...], dict[str, Any]]]:
    return [(tuple(path.split(".")[1:]), b) for path, b in bindings().items()
            if path.split(".")[0] == rtype]


def _walk(node: Any, path: tuple[str, ...], loc: tuple[Any, ...]) -> Iterator[tuple[tuple[Any, ...], Any]]:
    if isinstance(node, list):
        for i, item in enumerate(node):
            yield from _walk(item, path, loc + (i,))
    elif not path:
        yield loc, node
    elif isinstance(node, dict) and path[0] in node:
        yield from _walk(node[path[0]], path[1:], loc + (path[0],))


def _binding_issues(rtype: str, resource: dict[str, Any]) -> Iterator[Issue]:
    for path, binding in _binding_paths(rtype):
        for loc, value in _walk(resource, path, ()):
            if isinstance(value, str):
                if value not in binding["codes"]:
                    yield Issue("code-invalid", f"{value!r} is not in the required value set "
                                f"{binding['valueSet']} (allowed: {', '.join(binding['codes'])})",
                                expression(rtype, loc))
            elif isinstance(value, dict) and "code" not in value:  # CodeableConcept
                codings = value.get("coding") or []
                if not any(isinstance(c, dict) and c.get("system") in binding["systems"]
                           and c.get("code") in binding["codes"] for c in codings):
                    yield Issue("code-invalid", "no coding from the required value set "
                                f"{binding['valueSet']} (system {binding['systems'][0]}, codes: "
                                f"{', '.join(binding['codes'])})", expression(rtype, loc))


@functools.cache
def _schema_validator(rtype: str) -> Any:
    schema = dict(r4_schema())
    schema["allOf"] = [{"$ref": f"#/definitions/{rtype}"}]
    return jsonschema_rs.Draft6Validator(schema)


@functools.cache
def _r4b_fields(rtype: str) -> frozenset[str]:
    return frozenset(f.alias or name for name, f in get_fhir_model_class(rtype).model_fields.items())


def _schema_issues(rtype: str, resource: dict[str, Any]) -> Iterator[Issue]:
    validator = _schema_validator(rtype)
    if validator.is_valid(resource):
        return
    for err in validator.iter_errors(resource):
        loc = list(err.instance_path)
        missing = getattr(err.kind, "property", None)
        if isinstance(missing, str):
            where = expression(rtype, loc + [missing])
            yield Issue("required", f"{where} is required", where)
            continue
        unexpected = getattr(err.kind, "unexpected", None)
        if unexpected:
            for name in unexpected:
                where = expression(rtype, loc + [name])
                if not loc and name in _r4b_fields(rtype):
                    yield Issue("structure", f"{where} exists only in FHIR R4B; this server "
                                "speaks FHIR R4 4.0.1", where)
                else:
                    yield Issue("structure", f"unknown element {name!r}", where)
            continue
        yield Issue("value", f"does not conform to the R4 schema: {err.message[:300]}",
                    expression(rtype, loc))
