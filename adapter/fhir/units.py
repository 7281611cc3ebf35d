"""UCUM units: is a unit valid, and the factor that turns a value in one unit into another.

ucumvert parses UCUM into pint units; its registry takes ~0.6 s to build, so it is built once,
on first use, and a spec's factors are computed when the spec is compiled, never per row.
"""
from __future__ import annotations

import decimal
import functools
from typing import Any

__all__ = ["UnitError", "factor", "check_unit"]


class UnitError(ValueError):
    """Not a UCUM unit, or two units UCUM cannot convert between (the reason says which)."""


@functools.cache
def _registry() -> Any:
    from ucumvert import PintUcumRegistry  # heavy: only when a conversion is asked for
    return PintUcumRegistry()


@functools.cache
def check_unit(code: str) -> Any:
    """The parsed unit; UnitError if `code` is not UCUM (`cells/uL` is not: `/uL` is)."""
    try:
        return _registry().from_ucum(code)
    except Exception as exc:  # ucumvert raises its own parse errors
        raise UnitError(f"{code!r} is not a UCUM unit") from exc


@functools.cache
def factor(source: str, target: str) -> decimal.Decimal:
    """Multiply a value in `source` by this to have it in `target` (both UCUM codes).

    >>> factor("mg/dL", "g/L"), factor("10*9/L", "10*9/L"), factor("/100", "%")
    (Decimal('0.01'), Decimal('1'), Decimal('1'))
    """
    if source == target:
        check_unit(source)
        return decimal.Decimal(1)
    registry = _registry()
    # ucumvert gives a quantity: a UCUM code's plain numbers are its magnitude (`/100` is 1/100
    # of one, `10*3/uL` is 1000 per uL, `mg/(24.h)` is 1/24 mg/h), not to be dropped.
    parsed = [check_unit(source), check_unit(target)]
    sizes = [getattr(p, "magnitude", 1) for p in parsed]
    units = [getattr(p, "units", p) for p in parsed]
    try:
        one = registry.Quantity(sizes[0], units[0]).to(units[1]).magnitude / sizes[1]
        zero = registry.Quantity(0, units[0]).to(units[1]).magnitude
    except Exception as exc:  # pint: DimensionalityError, OffsetUnitCalculusError
        raise UnitError(f"UCUM cannot convert {source!r} to {target!r}") from exc
    if zero != 0:
        raise UnitError(f"{source!r} to {target!r} has an offset (e.g. Cel/[degF]): not a factor")
    # 12 significant digits: beyond them pint's float arithmetic shows (0.45359237000000001)
    exact = decimal.Context(prec=12).create_decimal(repr(float(one))).normalize()
    return exact.quantize(decimal.Decimal(1)) if exact.as_tuple().exponent > 0 else exact  # type: ignore[operator]

