"""FHIR JSON in and out, keeping decimals exactly as written.

FHIR decimals carry their precision (`6.30` is not `6.3`, https://hl7.org/fhir/R4/json.html#primitive),
so bodies are parsed with `decimal.Decimal` and written back with orjson, the Decimal text spliced
in as a raw fragment.
"""
from __future__ import annotations

import decimal
import json
from typing import Any

import orjson

from adapter.fhir.outcomes import bad_request

__all__ = ["parse", "dumps"]


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise ValueError(f"duplicate property {dup!r}")
    return result


def _integer(text: str) -> int | decimal.Decimal:
    # orjson writes 64-bit integers only; larger ones travel as Decimal text fragments.
    value = int(text)
    return value if -(2 ** 63) <= value < 2 ** 63 else decimal.Decimal(text)


_decoder = json.JSONDecoder(
    parse_float=decimal.Decimal, parse_int=_integer, parse_constant=_no_constant,
    object_pairs_hook=_unique_keys,
)


MAX_DEPTH = 64  # nesting levels of a body: FHIR resources need ~20; recursion past ~1,000 crashes


def _depth(node: Any) -> int:
    deepest, stack = 0, [(node, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def parse(body: bytes | str) -> Any:
    """Parse a JSON body; malformed JSON raises a 400 FhirError naming line and column.

    orjson reads it first, at C speed, as a gate: it refuses lone surrogates (`"\\ud800"`, which
    no UTF-8 store can hold), nesting past 1,024 levels and numbers beyond a double before the
    exact-decimal parse runs; then nesting past MAX_DEPTH is refused.

    >>> parse(b'{"value": 6.30}')
    {'value': Decimal('6.30')}
    """
    try:
        orjson.loads(body)
        refused = None
    except orjson.JSONDecodeError as exc:
        refused = exc  # said below, unless the exact parse names the problem better
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
    except ValueError as exc:
        raise bad_request(f"malformed JSON: {exc}", code="structure") from exc
    if refused is not None:
        raise bad_request(f"malformed JSON: {refused}", code="structure")
    if _depth(value) > MAX_DEPTH:
        raise bad_request(f"the JSON is nested more than {MAX_DEPTH} levels deep", code="too-costly")
    if "\\u0000" in text and (where := _nul(value, "")) is not None:
        raise bad_request("a string holds the NUL character (U+0000), which no store here keeps",
                          where.lstrip(".") or None)
    return value


def _nul(node: Any, path: str) -> str | None:
    """The path of the first string (or key) holding U+0000: PostgreSQL cannot store one, so
    both stores refuse it alike."""
    if isinstance(node, str):
        return path if "\x00" in node else None
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in items:
        here = f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}"
        if isinstance(key, str) and "\x00" in key:
            return here
        if (found := _nul(child, here)) is not None:
            return found
    return None


def _default(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return orjson.Fragment(str(value))
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(value: Any, sort_keys: bool = False) -> bytes:
    """Serialise to compact JSON bytes (keys sorted on request, e.g. to hash a record).

    >>> dumps({'value': decimal.Decimal('6.30')})
    b'{"value":6.30}'
    """
    return orjson.dumps(value, default=_default, option=orjson.OPT_SORT_KEYS if sort_keys else None)
