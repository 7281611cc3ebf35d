"""A FHIR search parsed into plain data (https://hl7.org/fhir/R4/search.html).

The gateway hands query parameters in; the store turns the resulting `SearchRequest` into SQL.
Neither Flask nor SQLAlchemy is imported here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from adapter.errors import AdapterError
from adapter.fhir.cursors import decode_cursor, decode_search_cursor, encode_cursor
from adapter.fhir.definitions import SERVED_TYPES, search_params
from adapter.fhir.search_values import (
    DEFAULT_COUNT, MAX_COUNT, MAX_VALUES, PREFIXES, composite_value, parse_count, parse_since, too_many, value_of, values_of,
)
from adapter.fhir.outcomes import FhirError, Issue, bad_request

__all__ = [
    "Filter", "SortKey", "Include", "SearchRequest", "parse_search", "encode_cursor", "decode_cursor",
    "decode_search_cursor", "parse_count", "parse_since", "PREFIXES", "MODIFIERS", "DEFAULT_COUNT", "MAX_COUNT", "SUMMARY_MODES",
    "MAX_PARAMETERS", "MAX_FILTERS", "MAX_VALUES", "MAX_SORT_KEYS", "MAX_INCLUDES", "MAX_ELEMENTS",
]

MODIFIERS = {
    "token": {"missing", "not", "text", "of-type"},
    "string": {"missing", "exact", "contains"},
    "date": {"missing"},
    "reference": {"missing", "identifier"},  # plus :Type
    "quantity": {"missing"},
    "uri": {"missing", "below", "above"},
    "number": {"missing"},
    "composite": {"missing"},  # search.html#composite: no other modifier applies
}
SORTABLE = {"token", "string", "date", "uri", "number", "quantity"}
SUMMARY_MODES = ("true", "false", "text", "data", "count")
# What one search may ask; past these the SQL grows until it takes seconds (200 `status:not`
# took 28 s on PostgreSQL, 64 sort keys 19 s) or SQLite refuses it ("Expression tree is too
# large" from about 500 ORed dates). Each is a 400 naming the parameter; docs/limits.md.
MAX_PARAMETERS = 100  # query or form parameters of one search, unknown ones included
MAX_FILTERS = 20  # filters ANDed: repeated and chained parameters each count
MAX_SORT_KEYS = 8
MAX_INCLUDES = 10  # _include and _revinclude together
MAX_ELEMENTS = 100  # names in _elements


@dataclass(frozen=True)
class Filter:
    """One search parameter occurrence; `values` are ORed, separate Filters are ANDed.

    Each value is a tuple by parameter type: token (system, code) with system None for "any"
    and "" for "no system"; string (text,); date (prefix, low, high); reference (type, id, url);
    quantity (prefix, number, system, code); number (prefix, number); uri (text,);
    missing (bool,); composite (one value per component, by the types in `components`).
    """

    code: str
    type: str
    modifier: str | None
    values: tuple[tuple[Any, ...], ...]
    # A chain (subject:Patient.gender=f): `code` is the reference parameter, `target` the type
    # it points to and `chain` the filter on that type. Reverse (_has:Observation:subject:code=x):
    # type "has", `target` the referring type, `code` its reference parameter, `chain` its filter.
    target: str | None = None
    chain: Filter | None = None
    # Further filters on the chain's target, ANDed with `chain` on the same target resource
    # (the guard holds a chain to the client's site this way: adapter/auth/guard.py).
    also: tuple[Filter, ...] = ()
    components: tuple[str, ...] = ()  # a composite's component types, e.g. ("token", "quantity")


@dataclass(frozen=True)
class Include:
    """_include=Observation:subject[:Patient] (reverse: _revinclude), with or without :iterate.
    `param` "*" means every reference parameter of the source type."""

    source: str
    param: str
    target: str | None
    reverse: bool = False
    iterate: bool = False


@dataclass(frozen=True)
class SortKey:
    code: str
    type: str
    descending: bool = False


@dataclass(frozen=True)
class SearchRequest:
    resource_type: str
    filters: tuple[Filter, ...] = ()
    sort: tuple[SortKey, ...] = ()
    count: int = DEFAULT_COUNT
    total: str = "estimate"  # none | estimate | accurate (estimate: exact up to a bound, then none)
    cursor: tuple[Any, ...] | None = None
    ignored: tuple[str, ...] = field(default=())  # unknown parameters left out (lenient)
    includes: tuple[Include, ...] = ()
    summary: str | None = None  # _summary: true | text | data | count (false: None)
    elements: tuple[str, ...] = ()  # _elements
    notes: tuple[Issue, ...] = ()  # warnings for the Bundle, e.g. a _count that was capped
    # The page before `cursor` rather than after it (a `previous` link's cursor).
    before: bool = False
    # Only resources in this patient's compartment (GET Patient/[id]/[type]).
    compartment: str | None = None

    def used_params(self) -> list[tuple[str, str]]:
        """The parameters the search really applied, for the Bundle's self link."""
        return [(k, v) for k, v in self._raw if k.split(":")[0] not in self.ignored]

    _raw: tuple[tuple[str, str], ...] = ()


def parse_search(resource_type: str, params: list[tuple[str, str]], strict: bool = False) -> SearchRequest:
    """Parse query parameters; unknown ones are ignored, or rejected under `strict` handling."""
    if len(params) > MAX_PARAMETERS:
        raise too_many(params[MAX_PARAMETERS][0], "parameters", MAX_PARAMETERS)
    parsed = _Parsing(resource_type)
    for name, raw in params:
        if "\x00" in name or "\x00" in raw:  # PostgreSQL text cannot hold it: no value could match
            raise bad_request(f"{name!r} holds the NUL character (%00), which no stored value holds",
                              name.replace("\x00", "%00"))
        parsed.take(name, raw)
    if strict and parsed.unknown:
        raise FhirError(400, parsed.unknown)
    if parsed.cursor is not None and not _fits(parsed.cursor, parsed.sort):
        raise bad_request("_cursor: not a cursor of this search (its _sort differs)", "_cursor")
    if parsed.summary == "count":  # a count request always counts, whatever _total says
        parsed.count, parsed.total = 0, "accurate"
    if parsed.notes:  # the self link shows the count used
        params = [(k, str(MAX_COUNT) if k.partition(":")[0] == "_count" else v) for k, v in params]
    return SearchRequest(resource_type, tuple(parsed.filters), tuple(parsed.sort), parsed.count, parsed.total,
                         parsed.cursor, tuple(parsed.ignored), tuple(parsed.includes), parsed.summary,
                         parsed.elements, tuple(parsed.notes), parsed.before, _raw=tuple(params))


class _Parsing:
    """What a search's parameters said so far: each result parameter (_count, _sort, ...) by
    its own method, every other one as a filter."""

    def __init__(self, resource_type: str) -> None:
        self.resource_type = resource_type
        self.filters: list[Filter] = []
        self.sort: list[SortKey] = []
        self.ignored: list[str] = []
        self.includes: list[Include] = []
        self.count, self.total, self.before = DEFAULT_COUNT, "estimate", False
        self.cursor: tuple[Any, ...] | None = None
        self.summary: str | None = None
        self.elements: tuple[str, ...] = ()
        self.unknown: list[Issue] = []
        self.notes: list[Issue] = []

    def take(self, name: str, raw: str) -> None:
        base, _, modifier = name.partition(":")
        if base in ("_format", "_pretty"):  # how the answer is written, not what it holds
            return
        control = getattr(self, f"_{base.lstrip('_')}", None) if base in _CONTROLS else None
        if control is not None:
            control(name, modifier, raw)
            return
        try:
            self.filters.append(_parse_filter(self.resource_type, name, raw))
        except _Unknown as exc:
            self.ignored.append(base)
            self.unknown.append(Issue("not-supported", str(exc), base))
            return
        if len(self.filters) > MAX_FILTERS:
            raise too_many(name, "filters (search parameters other than _sort, _count, ...)", MAX_FILTERS)

    def _count(self, _name: str, _modifier: str, raw: str) -> None:
        self.count = parse_count(raw)
        if self.count == MAX_COUNT and raw.lstrip("0") != str(MAX_COUNT):  # capped (no int(): any length)
            self.notes.append(Issue("too-costly", f"_count {raw} is above the maximum; {MAX_COUNT} used",
                                    "_count", severity="warning"))

    def _total(self, _name: str, _modifier: str, raw: str) -> None:
        if raw not in ("none", "estimate", "accurate"):
            raise bad_request(f"_total: {raw!r} is not none, estimate or accurate", "_total")
        self.total = raw

    def _sort(self, _name: str, _modifier: str, raw: str) -> None:
        self.sort = list(_parse_sort(self.resource_type, raw))

    def _cursor(self, _name: str, _modifier: str, raw: str) -> None:
        self.cursor, self.before = decode_search_cursor(raw)

    def _include(self, name: str, modifier: str, raw: str) -> None:
        if modifier not in ("", "iterate", "recurse"):
            raise bad_request(f"{name}: unknown modifier {modifier!r} (only :iterate)", name)
        self.includes.append(_parse_include(self.resource_type, name, raw, name.startswith("_revinclude"),
                                            bool(modifier)))
        if len(self.includes) > MAX_INCLUDES:
            raise too_many(name.partition(":")[0], "_include and _revinclude parameters", MAX_INCLUDES)

    _revinclude = _include

    def _summary(self, _name: str, _modifier: str, raw: str) -> None:
        if raw not in SUMMARY_MODES:
            raise bad_request(f"_summary: {raw!r} is not one of {', '.join(SUMMARY_MODES)}", "_summary")
        self.summary = None if raw == "false" else raw

    def _elements(self, _name: str, _modifier: str, raw: str) -> None:
        self.elements = tuple(e.strip() for e in raw.split(",") if e.strip())
        if len(self.elements) > MAX_ELEMENTS:
            raise too_many("_elements", "element names", MAX_ELEMENTS)


# The result parameters: what a search returns, not what it matches (each a _Parsing method).
_CONTROLS = frozenset({"_count", "_total", "_sort", "_cursor", "_include", "_revinclude", "_summary", "_elements"})


class _Unknown(AdapterError):
    """A parameter this type does not have (ignored, or refused under strict handling)."""


def _parse_filter(rtype: str, name: str, raw: str, depth: int = 0) -> Filter:
    """One parameter, possibly chained (a.b=) or reverse-chained (_has:T:ref:p=)."""
    if depth > 3:
        raise bad_request(f"{name}: chains are limited to 3 levels", name)
    known = search_params(rtype)
    if name.startswith("_has:"):
        parts = name.split(":", 3)
        if len(parts) < 4:
            raise bad_request(f"{name}: expected _has:Type:reference:parameter", name)
        _, source, via, inner = parts
        ref = search_params(source).get(via) if source in SERVED_TYPES else None
        if ref is None or ref.type != "reference":
            raise bad_request(f"{name}: {source}.{via} is not a reference search parameter", name)
        if ref.target and rtype not in ref.target:
            raise bad_request(f"{name}: {source}.{via} cannot point to {rtype}", name)
        return Filter(via, "has", None, (), target=source, chain=_parse_filter(source, inner, raw, depth + 1))
    head, dot, rest = name.partition(".")
    base, _, modifier = head.partition(":")
    if base not in known:
        raise _Unknown(f"unknown search parameter {base!r} for {rtype}")
    param = known[base]
    if dot:
        if param.type != "reference":
            raise bad_request(f"{name}: only reference parameters can be chained", name)
        targets = (modifier,) if modifier else param.target
        if modifier and modifier not in param.target:
            raise bad_request(f"{name}: {rtype}.{base} cannot point to {modifier}", name)
        inner = rest.split(".", 1)[0].split(":", 1)[0]
        served = [t for t in targets if t in SERVED_TYPES
                  and (inner == "_has" or inner in search_params(t))]  # the types the chain can go on
        if len(served) != 1:
            choices = ", ".join(served) or "no served type with that parameter"
            raise bad_request(f"{name}: {rtype}.{base} may point to {choices}; name one, e.g. "
                              f"{base}:{(served or ['Patient'])[0]}.{rest}", name)
        return Filter(base, "chain", None, (), target=served[0],
                      chain=_parse_filter(served[0], rest, raw, depth + 1))
    if param.type == "composite" and modifier != "missing":
        if modifier:
            raise bad_request(f"{name}: composite parameters take no modifier but :missing", name,
                              code="not-supported")
        kinds = tuple(c.type for c in param.components)
        values = tuple(composite_value(v, name, kinds) for v in values_of(raw, name, keep_escapes=True))
        return Filter(base, "composite", None, values, components=kinds)
    return _filter(base, param.type, modifier or None, raw, param.target)


def _parse_include(rtype: str, name: str, raw: str, reverse: bool, iterate: bool) -> Include:
    parts = raw.split(":")
    if len(parts) not in (2, 3):
        raise bad_request(f"{name}: expected Type:parameter[:targetType], e.g. Observation:subject", name)
    source, param = parts[0], parts[1]
    target = parts[2] if len(parts) == 3 else None
    if source not in SERVED_TYPES:
        raise bad_request(f"{name}: {source!r} is not a type served here", name)
    if not reverse and not iterate and source != rtype:
        raise bad_request(f"{name}: _include names the searched type ({rtype}) unless :iterate", name)
    if param != "*":
        ref = search_params(source).get(param)
        if ref is None or ref.type != "reference":
            raise bad_request(f"{name}: {source}.{param} is not a reference search parameter", name)
    if target is not None and target not in SERVED_TYPES:
        raise bad_request(f"{name}: {target!r} is not a type served here", name)
    return Include(source, param, target, reverse, iterate)


def _filter(code: str, ptype: str, modifier: str | None, raw: str, targets: tuple[str, ...]) -> Filter:
    name = f"{code}:{modifier}" if modifier else code
    if modifier == "missing":
        if raw not in ("true", "false"):
            raise bad_request(f"{name}: must be true or false", name)
        return Filter(code, ptype, modifier, ((raw == "true",),))
    if modifier == "of-type":  # identifier:of-type=type-system|type-code|value, matched whole
        if raw.count("|") != 2:
            raise bad_request(f"{name}: expected type-system|type-code|value", name)
        return Filter(code, ptype, modifier, tuple((None, v) for v in values_of(raw, name)))
    if modifier == "identifier":  # subject:identifier=system|value: Reference.identifier
        return Filter(code, "token", modifier, tuple(value_of("token", v, name) for v in values_of(raw, name)))
    if modifier and modifier not in MODIFIERS.get(ptype, ()):
        if not (ptype == "reference" and modifier in targets):
            raise bad_request(f"{name}: modifier {modifier!r} is not supported for {ptype} "
                              "parameters", name, code="not-supported")
    if raw == "":
        raise bad_request(f"{name}: empty value", name)
    values = []
    for part in values_of(raw, name):
        value = value_of(ptype, part, name)
        if ptype == "reference" and modifier:  # subject:Patient=123
            value = (modifier, value[1], f"{modifier}/{value[1]}")
        values.append(value)
    if ptype == "reference" and modifier in targets:
        modifier = None
    return Filter(code, ptype, modifier, tuple(values))


def _parse_sort(resource_type: str, raw: str) -> list[SortKey]:
    known = search_params(resource_type)
    keys = []
    if raw.count(",") >= MAX_SORT_KEYS:
        raise bad_request(f"_sort: at most {MAX_SORT_KEYS} keys", "_sort", code="too-costly")
    for item in raw.split(","):
        descending = item.startswith("-")
        code = item.lstrip("-")
        param = known.get(code)
        if param is None or param.type not in SORTABLE:
            raise bad_request(f"_sort: cannot sort {resource_type} by {code!r}", "_sort",
                              code="not-supported")
        keys.append(SortKey(code, param.type, descending))
    return keys


def _fits(cursor: tuple[Any, ...], sort: list[SortKey]) -> bool:
    """A search cursor holds one value per sort key, of the key's type (or null), then an id:
    a value of another type would compare a text column with a number."""
    if len(cursor) != len(sort) + 1 or not isinstance(cursor[-1], str):
        return False
    numeric = ("number", "quantity")
    return all(v is None or (isinstance(v, (int, float)) if k.type in numeric else isinstance(v, str))
               for k, v in zip(sort, cursor, strict=False))


