"""Search index values extracted from a resource, by the R4 SearchParameter definitions.

Plain-path expressions were compiled by the generator into element-name lists and are walked
directly over the JSON; the few others (`.where(system='email')`, `.exists()`) go through
fhirpathpy. The result is plain data, one list of rows per index kind; the store writes them.
"""
from __future__ import annotations

import decimal
import functools
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import fhirpathpy
from fhirpathpy.models import models

from adapter.fhir.dates import MAX, MIN, date_range
from adapter.fhir.definitions import SearchParam, search_params

__all__ = ["IndexRows", "Indexed", "extract", "normalize_string", "parse_reference", "index_key", "KEY_BYTES"]

# Index keys longer than this are kept cut to it (whole characters), on both stores: a
# PostgreSQL btree entry holds at most 2,704 bytes, and a token row has two keys (system, code).
# A search value is cut the same way, so equal and prefix searches still match.
KEY_BYTES = 800


def index_key(text: Any) -> Any:
    """`text` cut to KEY_BYTES of UTF-8 (None and short text as they are).

    Examples:
        >>> len(index_key("é" * 1000).encode())
        800
    """
    if not isinstance(text, str) or len(text) <= KEY_BYTES // 4:
        return text
    data = text.encode("utf-8")
    return text if len(data) <= KEY_BYTES else data[:KEY_BYTES].decode("utf-8", "ignore")


@dataclass
class IndexRows:
    """Index rows of one resource: each a tuple starting with the parameter code."""

    token: list[tuple[str, str | None, str | None, str | None]] = field(default_factory=list)
    string: list[tuple[str, str]] = field(default_factory=list)
    date: list[tuple[str, str, str]] = field(default_factory=list)
    reference: list[tuple[str, str | None, str | None, str]] = field(default_factory=list)
    quantity: list[tuple[str, float, str | None, str | None, str | None]] = field(default_factory=list)
    uri: list[tuple[str, str]] = field(default_factory=list)
    number: list[tuple[str, float]] = field(default_factory=list)
    # (param, system, code, value_system, value_code, value_number, value_unit, value_low,
    # value_high): a token and one other value taken from the same element instance
    composite: list[tuple[str, str | None, str | None, str | None, str | None, float | None,
                          str | None, str | None, str | None]] = field(default_factory=list)


@dataclass(frozen=True)
class Indexed:
    """A resource with its index rows already extracted (e.g. by a worker process), so that the
    process writing to the store only writes."""

    resource: dict[str, Any]
    rows: IndexRows


def normalize_string(text: str) -> str:
    """Case- and accent-insensitive form used by string search.

    Examples:
        >>> normalize_string("Zoë  Müller")
        'zoe  muller'
    """
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def parse_reference(ref: str) -> tuple[str | None, str | None]:
    """(type, id) of a literal reference, relative or absolute; (None, None) otherwise.

    Examples:
        >>> parse_reference("http://example.org/fhir/Patient/p1/_history/2")
        ('Patient', 'p1')
        >>> parse_reference("urn:uuid:1234")
        (None, None)
    """
    if ref.startswith(("#", "urn:")):
        return None, None
    parts = ref.split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) >= 2 and parts[-2][:1].isupper():
        return parts[-2], parts[-1]
    return None, None


def _walk(node: Any, path: tuple[str, ...], where: tuple[int, str, str] | None = None,
          depth: int = 0) -> Iterator[Any]:
    if isinstance(node, list):
        for item in node:
            yield from _walk(item, path, where, depth)
        return
    if where and depth == where[0] and not (isinstance(node, dict) and node.get(where[1]) == where[2]):
        return
    if not path:
        yield node
        return
    if not isinstance(node, dict):
        return
    # Choice elements were expanded by the generator (effective -> effectiveDateTime, ...).
    value = node.get(path[0])
    if value is not None:
        yield from _walk(value, path[1:], where, depth + 1)


@functools.cache
def _fhirpath(expression: str) -> Callable[[Any], list[Any]]:
    compiled = fhirpathpy.compile(expression, models["r4"])
    return lambda resource: list(compiled(resource, None))


def _values(resource: dict[str, Any], param: SearchParam) -> Iterator[tuple[Any, str | None]]:
    if param.paths is None:
        for value in _fhirpath(param.expression)(_plain(resource)):
            yield value, None
        return
    for compiled in param.paths:
        if compiled.path[0] in resource:  # most parameters' elements are absent: skip cheaply
            for value in _walk(resource, compiled.path, compiled.where):
                yield value, compiled.resolve


def _plain(node: Any) -> Any:
    """fhirpathpy needs floats, not Decimals."""
    if isinstance(node, dict):
        return {k: _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return float(node) if isinstance(node, decimal.Decimal) else node


def _token(rows: IndexRows, code: str, value: Any) -> None:
    if isinstance(value, bool):
        rows.token.append((code, None, "true" if value else "false", None))
    elif isinstance(value, str):
        rows.token.append((code, None, value, None))
    elif isinstance(value, dict):
        if "coding" in value or ("text" in value and "code" not in value and "value" not in value):
            for coding in value.get("coding") or []:
                if isinstance(coding, dict):
                    rows.token.append((code, coding.get("system"), coding.get("code"),
                                       coding.get("display") or value.get("text")))
            if value.get("text") and not value.get("coding"):
                rows.token.append((code, None, None, value["text"]))
        elif "value" in value and "code" not in value:  # Identifier, ContactPoint
            kind: dict[str, Any] = value["type"] if isinstance(value.get("type"), dict) else {}
            rows.token.append((code, value.get("system"), str(value["value"]), kind.get("text")))
            for coding in kind.get("coding") or []:  # for :of-type (type-system|type-code|value)
                if isinstance(coding, dict):
                    rows.token.append((f"{code}:of-type", None,
                                       f"{coding.get('system', '')}|{coding.get('code', '')}|{value['value']}", None))
        elif "code" in value:  # Coding
            rows.token.append((code, value.get("system"), value.get("code"), value.get("display")))


_NAME_PARTS = ("text", "family", "given", "prefix", "suffix", "line", "city", "district",
               "state", "postalCode", "country")


def _string(rows: IndexRows, code: str, value: Any) -> None:
    if isinstance(value, str):
        rows.string.append((code, normalize_string(value)))
    elif isinstance(value, dict):  # HumanName, Address
        for part in _NAME_PARTS:
            for text in _walk(value, (part,)):
                if isinstance(text, str):
                    rows.string.append((code, normalize_string(text)))


def _date(rows: IndexRows, code: str, value: Any) -> None:
    try:
        if isinstance(value, str):
            rows.date.append((code, *date_range(value)))
        elif isinstance(value, dict) and ("start" in value or "end" in value):  # Period
            low = date_range(value["start"])[0] if value.get("start") else MIN
            high = date_range(value["end"])[1] if value.get("end") else MAX
            rows.date.append((code, low, high))
        elif isinstance(value, dict) and "event" in value:  # Timing
            for event in value["event"]:
                rows.date.append((code, *date_range(event)))
    except ValueError:
        pass  # validation has already rejected malformed dates; nothing to index


def _reference(rows: IndexRows, code: str, value: Any, resolve: str | None) -> None:
    if isinstance(value, dict):
        ref = value.get("reference")
        identifier = value.get("identifier")
        if isinstance(identifier, dict) and "value" in identifier:  # for :identifier
            rows.token.append((f"{code}:identifier", identifier.get("system"), str(identifier["value"]), None))
        if not isinstance(ref, str):
            return
    elif isinstance(value, str):  # canonical
        ref = value
    else:
        return
    rtype, rid = parse_reference(ref)
    if resolve and rtype != resolve:
        return
    rows.reference.append((code, rtype, rid, ref))


def _quantity(rows: IndexRows, code: str, value: Any) -> None:
    if isinstance(value, dict) and isinstance(value.get("value"), (int, float, decimal.Decimal)):
        rows.quantity.append((code, float(value["value"]), value.get("system"), value.get("code"),
                              value.get("unit")))


def _composite(rows: IndexRows, param: SearchParam, resource: dict[str, Any]) -> None:
    """Rows pairing each code with each value of the same instance (one Observation.component),
    so that a search never pairs one component's code with another's value."""
    assert param.paths is not None
    first, second = param.components
    for i, instance in enumerate(param.paths):
        if instance.path and instance.path[0] not in resource:
            continue
        for node in _walk(resource, instance.path):
            # Most composites of a type find no value here (an Observation has one value[x]):
            # skip them before building anything; extraction is on every ingest's hot path.
            if not isinstance(node, dict) or not any(not path or path[0] in node for path in second.paths[i]):
                continue
            codes, values = IndexRows(), IndexRows()
            for path in first.paths[i]:
                for value in _walk(node, path):
                    _token(codes, param.code, value)
            for path in second.paths[i]:
                for value in _walk(node, path):
                    _component(values, second.type, param.code, value)
            pairs = [(s, c) for _, s, c, _ in codes.token if c is not None]
            for system, code in pairs:
                for row in _component_values(values):
                    rows.composite.append((param.code, system, code, *row))


def _component(rows: IndexRows, kind: str, code: str, value: Any) -> None:
    if kind == "token":
        _token(rows, code, value)
    elif kind == "quantity":
        _quantity(rows, code, value)
    elif kind == "date":
        _date(rows, code, value)
    elif kind == "string":
        _string(rows, code, value)


def _component_values(rows: IndexRows) -> Iterator[tuple[Any, ...]]:
    """(value_system, value_code, value_number, value_unit, value_low, value_high)."""
    for _, system, code, _ in rows.token:
        if code is not None:
            yield system, code, None, None, None, None
    for _, number, system, code, unit in rows.quantity:
        yield system, code, number, unit, None, None
    for _, low, high in rows.date:
        yield None, None, None, None, low, high
    for _, text in rows.string:
        yield None, text, None, None, None, None


@functools.lru_cache(maxsize=4096)  # bounded: a client may send endless sets of elements
def _applicable(resource_type: str, elements: tuple[str, ...]) -> tuple[tuple[str, SearchParam], ...]:
    """The search parameters that can have a value in a resource with these top-level elements:
    those whose paths start at one of them (a composite's instance may be the resource itself),
    and those read by FHIRPath. Resources of one type share a few sets of elements, so this is
    worked out once per set rather than every parameter tried on every resource."""
    present = set(elements)
    out = []
    for code, param in search_params(resource_type).items():
        if param.paths is None or any((not c.path and param.type == "composite") or (c.path and c.path[0] in present)
                                      for c in param.paths):
            out.append((code, param))
    return tuple(out)


def extract(resource: dict[str, Any]) -> IndexRows:
    """All index rows of a resource, for every search parameter of its type."""
    rows = IndexRows()
    for code, param in _applicable(resource["resourceType"], tuple(resource)):
        if param.type == "composite":
            _composite(rows, param, resource)
            continue
        for value, resolve in _values(resource, param):
            kind = param.type
            if kind == "reference":
                _reference(rows, code, value, resolve)
            elif kind in ("token", "quantity", "date", "string"):
                _component(rows, kind, code, value)
            elif kind == "uri" and isinstance(value, str):
                rows.uri.append((code, value))
            elif kind == "number" and isinstance(value, (int, float, decimal.Decimal)) \
                    and not isinstance(value, bool):
                rows.number.append((code, float(value)))
    return _keys_cut(rows)


def _keys_cut(rows: IndexRows) -> IndexRows:
    """Cut the looked-up keys (token system and code, string, reference target, uri)."""
    def long(text: Any) -> bool:
        return isinstance(text, str) and len(text) > KEY_BYTES // 4

    if any(long(r[1]) or long(r[2]) for r in rows.token):
        rows.token = [(p, index_key(s), index_key(c), t) for p, s, c, t in rows.token]
    if any(long(r[1]) for r in rows.string):
        rows.string = [(p, index_key(v)) for p, v in rows.string]
    if any(long(r[2]) for r in rows.reference):
        rows.reference = [(p, t, index_key(i), u) for p, t, i, u in rows.reference]
    if any(long(r[1]) for r in rows.uri):
        rows.uri = [(p, index_key(v)) for p, v in rows.uri]
    if any(long(r[1]) or long(r[2]) or long(r[3]) or long(r[4]) for r in rows.composite):
        rows.composite = [(p, index_key(s), index_key(c), index_key(vs), index_key(vc), *rest)
                          for p, s, c, vs, vc, *rest in rows.composite]
    return rows
