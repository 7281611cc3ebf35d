"""A search parameter's values as a client writes them (https://hl7.org/fhir/R4/search.html):
comma-separated ORed values with `\\` escapes, prefixes (ge2020, lt5), numbers, dates, the
parts of a composite, and _count and _since."""
from __future__ import annotations

import re
from typing import Any

from adapter.fhir.dates import date_range
from adapter.fhir.extract import parse_reference
from adapter.fhir.outcomes import FhirError, bad_request

__all__ = ["PREFIXES", "DEFAULT_COUNT", "MAX_COUNT", "MAX_VALUES", "parse_since", "parse_count", "values_of",
           "composite_value", "value_of", "too_many"]

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
DEFAULT_COUNT, MAX_COUNT = 20, 1000
MAX_VALUES = 100  # comma-separated values ORed in one parameter


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


def composite_value(raw: str, name: str, components: tuple[str, ...]) -> tuple[Any, ...]:
    """`http://loinc.org|29463-7$gt50|http://unitsofmeasure.org|kg`: one value per component."""
    parts = _split_escaped(raw, "$")
    if len(parts) != len(components) or not all(parts):
        raise bad_request(f"{name}: {raw!r} needs {len(components)} values joined by $ "
                          f"({' $ '.join(components)})", name)
    return tuple(value_of(kind, _split_values(part)[0], name) for kind, part in zip(components, parts, strict=True))


def values_of(raw: str, name: str, keep_escapes: bool = False) -> list[str]:
    """The ORed values of a parameter, at most MAX_VALUES (a composite's keep their escapes
    for the split into components)."""
    values = _split_escaped(raw, ",") if keep_escapes else _split_values(raw)
    if len(values) > MAX_VALUES:
        raise bad_request(f"{name}: {len(values)} values; at most {MAX_VALUES} may be ORed in one "
                          "parameter", name, code="too-costly")
    return values


def too_many(name: str, what: str, limit: int) -> FhirError:
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


def value_of(ptype: str, raw: str, name: str) -> tuple[Any, ...]:
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
