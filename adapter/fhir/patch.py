"""PATCH documents applied to a resource (https://hl7.org/fhir/R4/http.html#patch): JSON Patch
(RFC 6902, through the jsonpatch library) and FHIRPath Patch, a Parameters resource
(https://hl7.org/fhir/R4/fhirpatch.html).

A malformed document is a 400 and one that cannot be applied to this resource a 422, each naming
the operation. Neither may change the resource's type or id. The caller validates and stores the
result as it would a PUT body.
"""
from __future__ import annotations

import copy
import functools
import re
from typing import Any

import jsonpatch
import jsonpointer
from fhirpathpy import evaluate

from adapter.errors import AdapterError
from adapter.fhir import jsonio
from adapter.fhir.definitions import r4_schema
from adapter.fhir.outcomes import FhirError, Issue, bad_request

__all__ = ["apply_json_patch", "apply_fhirpath_patch", "MAX_OPERATIONS"]

MAX_OPERATIONS = 100  # operations in one document: each copies and re-checks the resource
# A JSON Patch `copy` doubles what it copies: 20 of them made 1 GB from a 1 kB name. The result
# of a patch may be no larger than a request body may be (the gateway's default limit).
MAX_RESULT_BYTES = 10 * 1024 * 1024


def _unchanged_identity(resource: Any, rtype: str, rid: str) -> str | None:
    if not isinstance(resource, dict):
        return "the result is no longer a resource (a JSON object)"
    if resource.get("resourceType") != rtype or resource.get("id") != rid:
        return f"a patch cannot change the resource's type or id ({rtype}/{rid})"
    return None


def _count(operations: list[Any], what: str) -> None:
    if len(operations) > MAX_OPERATIONS:
        raise bad_request(f"{what}: {len(operations)} operations; at most {MAX_OPERATIONS} in one patch",
                          code="too-costly")


# -- JSON Patch -----------------------------------------------------------------------------------

def apply_json_patch(resource: dict[str, Any], document: Any, rtype: str, rid: str) -> dict[str, Any]:
    if not isinstance(document, list):
        raise bad_request("a JSON Patch is a JSON array of operations (RFC 6902)", code="structure")
    _count(document, "JSON Patch")
    patches = []
    for i, op in enumerate(document):  # all checked before any is applied: 400 before 422
        name = f"operation [{i}]"
        if not isinstance(op, dict):
            raise bad_request(f"JSON Patch {name}: not a JSON object", code="structure")
        name = f"operation [{i}] ({op.get('op')} {op.get('path')})"
        try:
            patches.append((name, jsonpatch.JsonPatch([op])))
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException, TypeError, ValueError) as exc:
            raise bad_request(f"JSON Patch {name}: {exc}", code="structure") from None
    result: Any = copy.deepcopy(resource)
    for name, patch in patches:
        try:
            result = patch.apply(result, in_place=True)
        except jsonpatch.InvalidJsonPatch as exc:  # e.g. an add without a value
            raise bad_request(f"JSON Patch {name}: {exc}", code="structure") from None
        except jsonpatch.JsonPatchTestFailed as exc:
            raise FhirError(422, [Issue("processing", f"JSON Patch {name}: test failed: {exc}")]) from None
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException, TypeError, ValueError,
                KeyError, IndexError) as exc:
            raise FhirError(422, [Issue("processing", f"JSON Patch {name} cannot be applied: {exc}")]) from None
        if problem := _unchanged_identity(result, rtype, rid):
            raise FhirError(422, [Issue("processing", f"JSON Patch {name}: {problem}")])
        # Only a copy grows the resource beyond what the request itself carries.
        if patch.patch[0].get("op") == "copy" and len(jsonio.dumps(result)) > MAX_RESULT_BYTES:
            raise FhirError(413, [Issue("too-costly", f"JSON Patch {name}: the patched resource would be "
                                        f"over {MAX_RESULT_BYTES:,} bytes")])
    return result  # type: ignore[no-any-return]


# -- FHIRPath Patch -------------------------------------------------------------------------------

_TYPES = {"add": ("path", "name", "value"), "insert": ("path", "index", "value"), "delete": ("path",),
          "replace": ("path", "value"), "move": ("path", "source", "destination")}
_PART_TYPES = {"type": "valueCode", "path": "valueString", "name": "valueString", "index": "valueInteger",
               "source": "valueInteger", "destination": "valueInteger"}


def _part_value(part: dict[str, Any], where: str) -> Any:
    """A part's value: its one value[x], or an element built from its own parts (a type without
    a value[x], e.g. a backbone element such as Patient.contact)."""
    values = [k for k in part if k.startswith("value")]
    if len(values) == 1 and "part" not in part:
        return part[values[0]]
    if not values and isinstance(part.get("part"), list) and part["part"]:
        element: dict[str, Any] = {}
        for j, child in enumerate(part["part"]):
            if not isinstance(child, dict) or not isinstance(child.get("name"), str) or not child["name"]:
                raise bad_request(f"{where}.part[{j}]: a part needs a name", f"{where}.part[{j}]")
            value = _part_value(child, f"{where}.part[{j}]")
            name = child["name"]
            if name in element:  # a repeated name makes a list
                element[name] = [*element[name], value] if isinstance(element[name], list) \
                    else [element[name], value]
            else:
                element[name] = value
        return element
    raise bad_request(f"{where}: a value needs exactly one value[x] or parts", where)


def _operations(document: Any) -> list[dict[str, Any]]:
    if not isinstance(document, dict) or document.get("resourceType") != "Parameters":
        raise bad_request("a FHIRPath Patch is a Parameters resource; a JSON Patch is sent as "
                          "application/json-patch+json", "resourceType")
    params = document.get("parameter")
    if not isinstance(params, list) or not params:
        raise bad_request("the FHIRPath Patch has no operation", "Parameters.parameter", code="required")
    _count(params, "FHIRPath Patch")
    operations = []
    for i, param in enumerate(params):
        where = f"Parameters.parameter[{i}]"
        if not isinstance(param, dict) or param.get("name") != "operation" or not isinstance(param.get("part"), list):
            raise bad_request(f"{where}: every parameter is an 'operation' with parts", where)
        op: dict[str, Any] = {"at": where}
        for j, part in enumerate(param["part"]):
            if not isinstance(part, dict) or not isinstance(part.get("name"), str):
                raise bad_request(f"{where}.part[{j}]: a part needs a name", f"{where}.part[{j}]")
            name = part["name"]
            if name == "value":
                op["value"] = _part_value(part, f"{where}.part[{j}]")
                continue
            kind = _PART_TYPES.get(name)
            if kind is None:
                raise bad_request(f"{where}.part[{j}]: unknown part {name!r}", f"{where}.part[{j}]")
            value = part.get(kind)
            valid = (type(value) is int and value >= 0) if kind == "valueInteger" else isinstance(value, str) and value
            if not valid:
                raise bad_request(f"{where}.part[{j}]: {name} needs a{' non-negative' if kind == 'valueInteger' else ''} "
                                  f"{kind}", f"{where}.part[{j}]")
            op[name] = value
        if op.get("type") not in _TYPES:
            raise bad_request(f"{where}: type {op.get('type')!r} is not one of {', '.join(_TYPES)}", where)
        missing = [p for p in _TYPES[op["type"]] if p not in op]
        if missing:
            raise bad_request(f"{where}: a {op['type']} operation needs {', '.join(missing)}", where,
                              code="required")
        operations.append(op)
    return operations


@functools.cache
def _definitions() -> dict[str, Any]:
    return r4_schema()["definitions"]  # type: ignore[no-any-return]


def _property(definition: str | None, name: str) -> tuple[bool, str | None]:
    """Whether an element repeats, and the schema definition of its type (None if unknown)."""
    prop = _definitions().get(definition or "", {}).get("properties", {}).get(name, {})
    ref = prop.get("items", {}).get("$ref") or prop.get("$ref")
    return "items" in prop, ref.rsplit("/", 1)[-1] if ref else None


def _steps(path: str) -> list[str]:
    """A path split on the dots outside parentheses and quotes."""
    steps, current, depth, quote = [], "", 0, False
    for char in path:
        if char == "'":
            quote = not quote
        elif not quote and char in "()":
            depth += 1 if char == "(" else -1
        if char == "." and not quote and depth == 0:
            steps.append(current)
            current = ""
        else:
            current += char
    steps.append(current)
    return steps


_NAME = re.compile(r"([A-Za-z][A-Za-z0-9_]*)(?:\[(\d{1,6})\])?")
_FUNCTION = re.compile(r"(where|first|last)\((.*)\)", re.S)
Location = tuple[Any, Any, "str | None"]  # container, key in it, schema definition of the value


class _Unsupported(AdapterError):
    pass


def _resolve(holder: dict[str, Any], rtype: str, path: str) -> list[Location]:
    """Where a path leads in the resource (`holder[""]`): names with an optional [index],
    where(criteria) evaluated by fhirpathpy, first(), last()."""
    steps = _steps(path)
    if steps and steps[0] == rtype:
        steps = steps[1:]
    locations: list[Location] = [(holder, "", rtype)]
    for step in steps:
        name = _NAME.fullmatch(step)
        function = _FUNCTION.fullmatch(step)
        if name:
            found: list[Location] = []
            for container, key, definition in locations:
                node = container[key]
                if not isinstance(node, dict) or name.group(1) not in node:
                    continue
                _, child = _property(definition, name.group(1))
                value = node[name.group(1)]
                found += [(value, i, child) for i in range(len(value))] if isinstance(value, list) \
                    else [(node, name.group(1), child)]
            if name.group(2) is not None:
                index = int(name.group(2))
                found = found[index:index + 1]
            locations = found
        elif function and function.group(1) == "where" and function.group(2).strip():
            try:
                locations = [loc for loc in locations if evaluate(loc[0][loc[1]], function.group(2)) == [True]]
            except Exception as exc:  # fhirpathpy raises plain Exceptions for what it cannot parse
                raise _Unsupported(f"where({function.group(2)}): {exc}") from None
        elif function and not function.group(2).strip() and function.group(1) != "where":
            locations = locations[:1] if function.group(1) == "first" else locations[-1:]
        else:
            raise _Unsupported(f"{step!r}: only element names, [index], where(...), first() and last() "
                               "are supported in a patch path")
    return locations


def _one(locations: list[Location], what: str) -> Location:
    if len(locations) != 1:
        raise _Failed(f"{what} matches {len(locations)} elements; it must match exactly one")
    return locations[0]


class _Failed(AdapterError):
    pass


def _collection(holder: dict[str, Any], rtype: str, path: str) -> tuple[dict[str, Any], str]:
    """The element holding the list a path names (insert, move), and the list's name."""
    parent, _, last = path.rpartition(".")
    if not parent or not _NAME.fullmatch(last) or "[" in last:
        raise _Unsupported(f"{path!r}: insert and move need the path of a list, ending in its name")
    container, key, _ = _one(_resolve(holder, rtype, parent), parent)
    node = container[key]
    if not isinstance(node, dict):
        raise _Failed(f"{parent} is not an element with properties")
    return node, last


def _apply(holder: dict[str, Any], rtype: str, op: dict[str, Any]) -> None:
    kind, path = op["type"], op["path"]
    if kind in ("insert", "move"):
        node, name = _collection(holder, rtype, path)
        items = node.get(name, [])
        if not isinstance(items, list):
            raise _Failed(f"{path} is not a list")
        if kind == "insert":
            if op["index"] > len(items):
                raise _Failed(f"index {op['index']} is past the end of {path} ({len(items)} items)")
            node[name] = [*items[:op["index"]], op["value"], *items[op["index"]:]]
            return
        if op["source"] >= len(items) or op["destination"] >= len(items):
            raise _Failed(f"{path} has {len(items)} items: source and destination must be below that")
        items.insert(op["destination"], items.pop(op["source"]))
        return
    locations = _resolve(holder, rtype, path)
    if kind == "delete" and not locations:
        return  # "the element to delete (if found)"
    container, key, definition = _one(locations, path)
    if container is holder and kind != "add":
        raise _Failed("the resource itself cannot be deleted or replaced by a patch")
    if kind == "delete":
        del container[key]
    elif kind == "replace":
        container[key] = op["value"]
    else:  # add
        node, name = container[key], op["name"]
        if not isinstance(node, dict):
            raise _Failed(f"{path} is not an element with properties")
        repeats, _ = _property(definition, name)
        if isinstance(node.get(name), list):
            node[name].append(op["value"])
        elif name in node:
            raise _Failed(f"{path}.{name} already has a value (add appends to lists only; use replace)")
        else:
            node[name] = [op["value"]] if repeats else op["value"]


def _pruned(node: Any) -> Any:
    """No empty lists or objects: FHIR JSON has none (json.html), a delete may leave one."""
    if isinstance(node, dict):
        kept = {k: _pruned(v) for k, v in node.items()}
        return {k: v for k, v in kept.items() if v not in ({}, [])}
    if isinstance(node, list):
        return [v for v in (_pruned(item) for item in node) if v not in ({}, [])]
    return node


def apply_fhirpath_patch(resource: dict[str, Any], document: Any, rtype: str, rid: str) -> dict[str, Any]:
    operations = _operations(document)
    holder = {"": copy.deepcopy(resource)}
    for op in operations:
        label = f"{op['at']} ({op['type']} {op['path']})"
        try:
            _apply(holder, rtype, op)
        except _Unsupported as exc:
            raise FhirError(400, [Issue("not-supported", f"{label}: {exc}", op["at"])]) from None
        except _Failed as exc:
            raise FhirError(422, [Issue("processing", f"{label}: {exc}", op["at"])]) from None
        if problem := _unchanged_identity(holder[""], rtype, rid):
            raise FhirError(422, [Issue("processing", f"{label}: {problem}", op["at"])])
    return _pruned(holder[""])  # type: ignore[no-any-return]
