"""FHIR JSON in and out, keeping decimals exactly as written.

FHIR decimals carry their precision (`6.30` is not `6.3`, https://hl7.org/fhir/R4/json.html#primitive),
so bodies are parsed with `decimal.Decimal` and written back with orjson, the Decimal text spliced
in as a raw fragment.
"""
from __future__ import annotations

import decimal
import json
import re
from typing import Any

import orjson

from adapter.errors import AdapterError
from adapter.fhir.bounds import MAX_DEPTH, depth as _depth
from adapter.fhir.outcomes import bad_request

__all__ = ["parse", "dumps", "MAX_NUMBER_LENGTH", "MAX_NUMBER_EXPONENT"]

# Numbers are bounded before any conversion: an integer element given `1E+999999999` would
# otherwise become a billion-digit int in the validator (30 s of CPU for 60 bytes). The exponent
# bound keeps every number finite as a float (the search index stores floats).
MAX_NUMBER_LENGTH = 64  # characters of one number literal
MAX_NUMBER_EXPONENT = 300  # |exponent| once normalised: 1e300 passes, 1e301 does not


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise ValueError(f"duplicate property {dup!r}")
    return result


class _NumberOutOfRange(AdapterError, ValueError):
    pass


def _decimal(text: str) -> decimal.Decimal:
    if len(text) > MAX_NUMBER_LENGTH:
        raise _NumberOutOfRange(text)
    try:
        value = decimal.Decimal(text)
    except decimal.InvalidOperation:  # an exponent beyond even Decimal's range
        raise _NumberOutOfRange(text) from None
    if abs(value.adjusted()) > MAX_NUMBER_EXPONENT:
        raise _NumberOutOfRange(text)
    return value


def _integer(text: str) -> int | decimal.Decimal:
    if len(text) > MAX_NUMBER_LENGTH:
        raise _NumberOutOfRange(text)
    # orjson writes 64-bit integers only; larger ones travel as Decimal text fragments.
    value = int(text)
    return value if -(2 ** 63) <= value < 2 ** 63 else decimal.Decimal(text)


_decoder = json.JSONDecoder(
    parse_float=_decimal, parse_int=_integer, parse_constant=_no_constant,
    object_pairs_hook=_unique_keys,
)


def parse(body: bytes | str) -> Any:
    """Parse a JSON body; malformed JSON raises a 400 FhirError naming line and column.

    Beyond JSON, refused: numbers past the bounds above, nesting past MAX_DEPTH levels, and
    strings no store here keeps alike (NUL, which PostgreSQL cannot hold, and lone surrogates
    such as `"\\ud800"`, which are no UTF-8).

    Examples:
        >>> parse(b'{"value": 6.30}')
        {'value': Decimal('6.30')}
    """
    try:
        text = body.decode("utf-8") if isinstance(body, bytes) else body
        value = _decoder.decode(text)
    except RecursionError:
        raise bad_request(f"the JSON is nested more than {MAX_DEPTH} levels deep", code="too-costly") from None
    except UnicodeDecodeError as exc:
        raise bad_request(f"body is not valid UTF-8: {exc}", code="structure") from exc
    except json.JSONDecodeError as exc:
        raise bad_request(f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                          code="structure") from exc
    except _NumberOutOfRange as exc:
        literal = str(exc)
        shown = literal if len(literal) <= 24 else f"{literal[:20]}... ({len(literal)} characters)"
        raise bad_request(
            f"number {shown} is out of range: at most {MAX_NUMBER_LENGTH} characters and a "
            f"magnitude between 1e-{MAX_NUMBER_EXPONENT} and 1e{MAX_NUMBER_EXPONENT}",
            _number_path(text), code="value") from None
    except ValueError as exc:
        raise bad_request(f"malformed JSON: {exc}", code="structure") from exc
    # Each walk runs only when the text could hold what it looks for: parse is on every write.
    if text.count("{") + text.count("[") > MAX_DEPTH and _depth(value) > MAX_DEPTH:
        raise bad_request(f"the JSON is nested more than {MAX_DEPTH} levels deep", code="too-costly")
    if _ESCAPES.search(text) and (where := _unstorable(value, "")) is not None:
        rtype = value.get("resourceType") if isinstance(value, dict) else None
        where = f"{rtype}{where}" if isinstance(rtype, str) and _storable(rtype) else where.lstrip(".")
        raise bad_request("a string or name holds NUL (U+0000) or a lone surrogate, which no store here keeps",
                          where or None, code="structure")
    return value


_ESCAPES = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")  # NUL, or half of a surrogate pair


def _storable(text: str) -> bool:
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")  # a lone surrogate cannot be encoded; a pair was joined by the parser
        return True
    except UnicodeEncodeError:
        return False


def _unstorable(node: Any, path: str) -> str | None:
    """The path of the first string (or key) that no store keeps."""
    if isinstance(node, str):
        return None if _storable(node) else path
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in items:
        if isinstance(key, str) and not _storable(key):
            # escaped as JSON writes it: the path goes into the answer, which cannot hold the key itself
            return f"{path}.{json.dumps(key)[1:-1]}"
        here = f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}"
        if (found := _unstorable(child, here)) is not None:
            return found
    return None


class _Marker:
    pass


def _mark(text: str) -> Any:
    try:
        return _decimal(text)
    except _NumberOutOfRange:
        return _Marker()


# Run again only on that error path, to name the element: the hooks of the first pass cannot
# know where they are.
_locator = json.JSONDecoder(parse_float=_mark, parse_int=lambda t: _mark(t) if len(t) > MAX_NUMBER_LENGTH else 0)


def _number_path(text: str) -> str | None:
    """The FHIRPath of the first out-of-range number, e.g. Patient.multipleBirthInteger."""
    root = _locator.decode(text)
    stack: list[tuple[Any, str]] = [(root, root.get("resourceType", "") if isinstance(root, dict) else "")]
    while stack:
        node, path = stack.pop()
        if isinstance(node, _Marker):
            return path or None
        if isinstance(node, dict):
            stack.extend((v, f"{path}.{k}" if path else k) for k, v in reversed(node.items()))
        elif isinstance(node, list):
            stack.extend((v, f"{path}[{i}]") for i, v in reversed(list(enumerate(node))))
    return None


def _default(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return orjson.Fragment(str(value))
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(value: Any, sort_keys: bool = False, indent: bool = False) -> bytes:
    """Serialise to compact JSON bytes (keys sorted on request, e.g. to hash a record; indented
    for _pretty).

    Examples:
        >>> dumps({'value': decimal.Decimal('6.30')})
        b'{"value":6.30}'
    """
    option = (orjson.OPT_SORT_KEYS if sort_keys else 0) | (orjson.OPT_INDENT_2 if indent else 0)
    return orjson.dumps(value, default=_default, option=option or None)
