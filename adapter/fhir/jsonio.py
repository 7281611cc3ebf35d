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


def parse(body: bytes | str) -> Any:
    """Parse a JSON body; malformed JSON raises a 400 FhirError naming line and column.

    >>> parse(b'{"value": 6.30}')
    {'value': Decimal('6.30')}
    """
    try:
        text = body.decode("utf-8") if isinstance(body, bytes) else body
        return _decoder.decode(text)
    except UnicodeDecodeError as exc:
        raise bad_request(f"body is not valid UTF-8: {exc}", code="structure") from exc
    except json.JSONDecodeError as exc:
        raise bad_request(f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                          code="structure") from exc
    except ValueError as exc:
        raise bad_request(f"malformed JSON: {exc}", code="structure") from exc


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
