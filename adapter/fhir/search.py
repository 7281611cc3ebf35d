"""A FHIR search parsed into plain data (https://hl7.org/fhir/R4/search.html).

The gateway hands query parameters in; the store turns the resulting `SearchRequest` into SQL.
Neither Flask nor SQLAlchemy is imported here.
"""
from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from adapter.errors import AdapterError
from adapter.fhir.dates import date_range
from adapter.fhir.definitions import SERVED_TYPES, search_params
from adapter.fhir.extract import parse_reference
from adapter.fhir.outcomes import FhirError, Issue, bad_request

__all__ = [
    "Filter", "SortKey", "Include", "SearchRequest", "parse_search", "encode_cursor", "decode_cursor",
    "decode_search_cursor", "parse_count", "parse_since", "PREFIXES", "MODIFIERS", "DEFAULT_COUNT", "MAX_COUNT", "SUMMARY_MODES",
    "MAX_PARAMETERS", "MAX_FILTERS", "MAX_VALUES", "MAX_SORT_KEYS", "MAX_INCLUDES", "MAX_ELEMENTS",
]

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
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
DEFAULT_COUNT, MAX_COUNT = 20, 1000
SUMMARY_MODES = ("true", "false", "text", "data", "count")
# What one search may ask; past these the SQL grows until it takes seconds (200 `status:not`
# took 28 s on PostgreSQL, 64 sort keys 19 s) or SQLite refuses it ("Expression tree is too
# large" from about 500 ORed dates). Each is a 400 naming the parameter; docs/limits.md.
MAX_PARAMETERS = 100  # query or form parameters of one search, unknown ones included
MAX_FILTERS = 20  # filters ANDed: repeated and chained parameters each count
MAX_VALUES = 100  # comma-separated values ORed in one parameter
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


def _split_values(raw: str) -> list[str]:
    """Split on commas not escaped with a backslash, then drop the escapes (search.html#escaping).

    Examples:
        >>> _split_values(r"a\\,b,c\\$d")
        ['a,b', 'c$d']
    """
    return [_UNESCAPE.sub(r"\1", part) for part in _split_escaped(raw, ",")]


_UNESCAPE = re.compile(r"\\([,$|\\])")


def _split_escaped(raw: str, separator: str) -> list[str]:
    """Split on `separator` where no backslash escapes it, keeping every escape for the next
    split: a composite's `$` first, then each component's own commas and bars."""
    out, current, i = [], "", 0
    while i < len(raw):
        if raw[i] == "\\" and i + 1 < len(raw):
            current += raw[i:i + 2]
            i += 2
            continue
        if raw[i] == separator:
            out.append(current)
            current = ""
        else:
            current += raw[i]
        i += 1
    out.append(current)
    return out


def _composite(raw: str, name: str, components: tuple[str, ...]) -> tuple[Any, ...]:
    """`http://loinc.org|29463-7$gt50|http://unitsofmeasure.org|kg`: one value per component."""
    parts = _split_escaped(raw, "$")
    if len(parts) != len(components) or not all(parts):
        raise bad_request(f"{name}: {raw!r} needs {len(components)} values joined by $ "
                          f"({' $ '.join(components)})", name)
    return tuple(_value(kind, _split_values(part)[0], name) for kind, part in zip(components, parts, strict=True))


def _bounded_values(raw: str, name: str, keep_escapes: bool = False) -> list[str]:
    """The ORed values of a parameter, at most MAX_VALUES (a composite's keep their escapes
    for the split into components)."""
    values = _split_escaped(raw, ",") if keep_escapes else _split_values(raw)
    if len(values) > MAX_VALUES:
        raise bad_request(f"{name}: {len(values)} values; at most {MAX_VALUES} may be ORed in one "
                          "parameter", name, code="too-costly")
    return values


def _too_many(name: str, what: str, limit: int) -> FhirError:
    return bad_request(f"{name}: more than {limit} {what} in one search", name, code="too-costly")


def _prefix(raw: str) -> tuple[str, str]:
    if raw[:2] in PREFIXES and len(raw) > 2 and not raw[2].isalpha():
        return raw[:2], raw[2:]
    return "eq", raw


def _number(text: str, name: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise bad_request(f"{name}: {text!r} is not a number", name) from None


def _value(ptype: str, raw: str, name: str) -> tuple[Any, ...]:
    if ptype == "token":
        if "|" in raw:
            system, code = raw.split("|", 1)
            return system, code or None
        return None, raw
    if ptype in ("string", "uri"):
        return (raw,)
    if ptype == "date":
        prefix, text = _prefix(raw)
        try:
            return (prefix, *date_range(text))
        except ValueError:
            raise bad_request(f"{name}: {text!r} is not a valid date (use YYYY, YYYY-MM, "
                              "YYYY-MM-DD or a dateTime with a time zone)", name) from None
    if ptype == "reference":
        if raw.startswith(("http://", "https://")) or raw.count("/") != 1:
            rtype, rid = parse_reference(raw) if "/" in raw else (None, raw)
            return rtype, rid, raw
        rtype, rid = raw.split("/")
        return rtype, rid, raw
    if ptype == "quantity":
        prefix, text = _prefix(raw)
        number, _, unit = text.partition("|")
        system, _, code = unit.partition("|")
        return prefix, _number(number, name), system or None, code or None
    if ptype == "number":
        prefix, text = _prefix(raw)
        return prefix, _number(text, name)
    raise bad_request(f"{name}: search parameters of type {ptype} are not supported", name)


def parse_since(raw: str, name: str = "_since") -> str:
    """`_since`: an instant (or a partial date), as the stored instants' text form of its start."""
    try:
        return date_range(raw)[0]
    except ValueError:
        raise bad_request(f"{name}: {raw!r} is not an instant", name) from None


def parse_count(raw: str) -> int:
    """`_count`: a non-negative integer, capped at MAX_COUNT."""
    if not (raw.isascii() and raw.isdigit()):  # '²'.isdigit() is True, and int() refuses it
        raise bad_request(f"_count: {raw!r} is not a non-negative integer", "_count")
    return MAX_COUNT if len(raw) > 9 else min(int(raw), MAX_COUNT)  # int() refuses 4,300 digits


def parse_search(resource_type: str, params: list[tuple[str, str]], strict: bool = False) -> SearchRequest:
    """Parse query parameters; unknown ones are ignored, or rejected under `strict` handling."""
    filters: list[Filter] = []
    sort: list[SortKey] = []
    ignored: list[str] = []
    includes: list[Include] = []
    count, total, cursor, before = DEFAULT_COUNT, "estimate", None, False
    summary: str | None = None
    elements: tuple[str, ...] = ()
    unknown: list[Issue] = []
    notes: list[Issue] = []
    if len(params) > MAX_PARAMETERS:
        raise _too_many(params[MAX_PARAMETERS][0], "parameters", MAX_PARAMETERS)
    for name, raw in params:
        if "\x00" in name or "\x00" in raw:  # PostgreSQL text cannot hold it: no value could match
            raise bad_request(f"{name!r} holds the NUL character (%00), which no stored value holds",
                              name.replace("\x00", "%00"))
        base, _, modifier = name.partition(":")
        if base == "_count":
            count = parse_count(raw)
            if count == MAX_COUNT and raw.lstrip("0") != str(MAX_COUNT):  # capped (no int(): any length)
                notes.append(Issue("too-costly", f"_count {raw} is above the maximum; {MAX_COUNT} used",
                                   "_count", severity="warning"))
        elif base == "_total":
            if raw not in ("none", "estimate", "accurate"):
                raise bad_request(f"_total: {raw!r} is not none, estimate or accurate", "_total")
            total = raw
        elif base == "_sort":
            sort = list(_parse_sort(resource_type, raw))
        elif base == "_cursor":
            cursor, before = decode_search_cursor(raw)
        elif base in ("_format", "_pretty"):  # how the answer is written, not what it holds
            continue
        elif base in ("_include", "_revinclude"):
            if modifier not in ("", "iterate", "recurse"):
                raise bad_request(f"{name}: unknown modifier {modifier!r} (only :iterate)", name)
            includes.append(_parse_include(resource_type, name, raw, base == "_revinclude", bool(modifier)))
            if len(includes) > MAX_INCLUDES:
                raise _too_many(base, "_include and _revinclude parameters", MAX_INCLUDES)
        elif base == "_summary":
            if raw not in SUMMARY_MODES:
                raise bad_request(f"_summary: {raw!r} is not one of {', '.join(SUMMARY_MODES)}", "_summary")
            summary = None if raw == "false" else raw
        elif base == "_elements":
            elements = tuple(e.strip() for e in raw.split(",") if e.strip())
            if len(elements) > MAX_ELEMENTS:
                raise _too_many("_elements", "element names", MAX_ELEMENTS)
        else:
            try:
                filters.append(_parse_filter(resource_type, name, raw))
                if len(filters) > MAX_FILTERS:
                    raise _too_many(name, "filters (search parameters other than _sort, _count, ...)",
                                    MAX_FILTERS)
            except _Unknown as exc:
                ignored.append(base)
                unknown.append(Issue("not-supported", str(exc), base))
    if strict and unknown:
        raise FhirError(400, unknown)
    if cursor is not None and not _fits(cursor, sort):
        raise bad_request("_cursor: not a cursor of this search (its _sort differs)", "_cursor")
    if summary == "count":  # a count request always counts, whatever _total says
        count, total = 0, "accurate"
    if notes:  # the self link shows the count used
        params = [(k, str(MAX_COUNT) if k.partition(":")[0] == "_count" else v) for k, v in params]
    return SearchRequest(resource_type, tuple(filters), tuple(sort), count, total, cursor,
                         tuple(ignored), tuple(includes), summary, elements, tuple(notes), before,
                         _raw=tuple(params))


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
        values = tuple(_composite(v, name, kinds) for v in _bounded_values(raw, name, keep_escapes=True))
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
        return Filter(code, ptype, modifier, tuple((None, v) for v in _bounded_values(raw, name)))
    if modifier == "identifier":  # subject:identifier=system|value: Reference.identifier
        return Filter(code, "token", modifier, tuple(_value("token", v, name) for v in _bounded_values(raw, name)))
    if modifier and modifier not in MODIFIERS.get(ptype, ()):
        if not (ptype == "reference" and modifier in targets):
            raise bad_request(f"{name}: modifier {modifier!r} is not supported for {ptype} "
                              "parameters", name, code="not-supported")
    if raw == "":
        raise bad_request(f"{name}: empty value", name)
    values = []
    for part in _bounded_values(raw, name):
        value = _value(ptype, part, name)
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


def encode_cursor(values: tuple[Any, ...], before: bool = False) -> str:
    """An opaque keyset cursor: the sort values and id of the last entry of a page (`before`:
    of the first, for the page that precedes it)."""
    shape: Any = {"before": list(values)} if before else list(values)
    return base64.urlsafe_b64encode(orjson.dumps(shape)).decode().rstrip("=")


def _cursor_json(raw: str) -> Any:
    try:
        return orjson.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (ValueError, binascii.Error, orjson.JSONDecodeError):
        return None


def decode_search_cursor(raw: str) -> tuple[tuple[Any, ...], bool]:
    """A search cursor's values, and whether it asks for the page before them."""
    shape = _cursor_json(raw)
    if isinstance(shape, dict) and list(shape) == ["before"]:
        return _checked(shape["before"]), True
    return _checked(shape), False


def decode_cursor(raw: str) -> tuple[Any, ...]:
    """A cursor's values: a list of strings, 64-bit integers, floats and nulls, as
    `encode_cursor` writes them; anything else (a forged or damaged cursor) is a 400."""
    return _checked(_cursor_json(raw))


def _checked(values: Any) -> tuple[Any, ...]:
    if not isinstance(values, list) or not values or not all(
            v is None or (isinstance(v, str) and "\x00" not in v) or isinstance(v, float)
            or (type(v) is int and -2 ** 63 <= v < 2 ** 63) for v in values):
        raise bad_request("_cursor: not a cursor this server issued", "_cursor")
    return tuple(values)
