"""The keyset cursors of search and history pages: opaque to clients, checked when they come
back (a forged or damaged one is a 400, never a value a query could misread)."""
from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson

from adapter.fhir.outcomes import bad_request

__all__ = ["encode_cursor", "decode_cursor", "decode_search_cursor"]


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
