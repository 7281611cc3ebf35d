"""Derived values: sum, difference, product, ratio, mean, min, max of values (nested), each with
a unit that is worked out when the spec is loaded, so that a spec deriving a percentage from a
mean of 0-3 scores is refused before any row is read.

A field whose expression says no `unit:` is taken to be in the unit of wherever the value goes
(as a plain field is, outside arithmetic); a constant without one is a plain number (UCUM `1`).
Sum, difference, mean, min and max take operands of one unit and keep it (a field without a
unit takes the others'); a product multiplies units, a ratio divides them (a field without a
unit counts as a plain number there). UCUM treats annotations such as `{score}` as 1, which would let a
mean of scores pass as `%`: here annotations count, as powers (a ratio of two `{score}` values
is a plain number, a mean of them is still `{score}`), and must match the target's.
"""
from __future__ import annotations

import collections
import decimal
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["OPERATIONS", "ANY", "Unit", "unit_of", "is_arithmetic", "operation", "combine"]

# difference and ratio take two values, the others one or more (mean two or more)
OPERATIONS = ("sum", "difference", "product", "ratio", "mean", "min", "max")
_ANNOTATION = re.compile(r"\{[^}]*\}")
_EMPTY_TERM = re.compile(r"(^|[(./])(?=[)./]|$)")  # where a term was only an annotation


@dataclass(frozen=True)
class Unit:
    """A UCUM code and, apart, its annotations with their powers."""

    code: str
    annotations: tuple[tuple[str, int], ...] = ()

    @classmethod
    def parse(cls, code: str) -> Unit:
        """Annotations with their powers, read as UCUM reads: left to right, `/` dividing by
        the one term after it (`kg/{x}.{x}` is kg), a bracketed term as one."""
        found: collections.Counter[str] = collections.Counter()
        _powers(code, 0, 1, found)
        return cls(code, tuple(sorted((k, v) for k, v in found.items() if v)))

    def times(self, other: Unit, power: int = 1) -> Unit:
        found = collections.Counter(dict(self.annotations))
        for name, n in other.annotations:
            found[name] += power * n
        joined = f"({self.code}).({other.code})" if power > 0 else f"({self.code})/({other.code})"
        return Unit(joined, tuple(sorted((k, v) for k, v in found.items() if v)))

    def __str__(self) -> str:
        return self.code

    @property
    def open(self) -> bool:
        """No unit said: the unit of wherever the value goes."""
        return self is ANY or self.code == ANY.code

    @property
    def ucum(self) -> str:
        """The code without annotations, for UCUM to convert (`{score}` is 1 to UCUM); a term
        that was only an annotation becomes 1 (`{score}/{item}` is `1/1`)."""
        return _EMPTY_TERM.sub(r"\g<1>1", _ANNOTATION.sub("", self.code)) or "1"

    def factor_to(self, target: str) -> decimal.Decimal:
        """Multiply by this to have the value in `target`; UnitError if it cannot be."""
        from adapter.fhir.units import UnitError, factor
        if self.open:
            return decimal.Decimal(1)
        wanted = Unit.parse(target)
        if self.annotations != wanted.annotations:
            raise UnitError(f"a value in {self.code} is not in {target} "
                            f"({_describe(self.annotations)} where {target} counts {_describe(wanted.annotations)})")
        return factor(self.ucum, wanted.ucum)


def _describe(annotations: tuple[tuple[str, int], ...]) -> str:
    return " ".join(f"{name}^{power}" if power != 1 else name for name, power in annotations) or "none"


ANY = Unit("*")


def is_arithmetic(expr: Any) -> bool:
    return isinstance(expr, dict) and any(op in expr for op in OPERATIONS)


def operation(expr: dict[str, Any]) -> str:
    return next(op for op in OPERATIONS if op in expr)


def unit_of(expr: Any, problems: list[str], where: str = "") -> Unit:
    """The unit an expression's value is in; a mismatch is added to `problems`."""
    if isinstance(expr, str):
        return ANY
    if not is_arithmetic(expr):
        if "unit" not in expr:
            return Unit("1") if "const" in expr else ANY
        from adapter.fhir.units import UnitError
        try:
            return Unit.parse(expr["unit"])
        except UnitError as error:
            problems.append(f"{where}{error}")
            return ANY
    op = operation(expr)
    units = [unit_of(part, problems, where) for part in expr[op]]
    if op in ("difference", "ratio") and len(units) != 2:
        problems.append(f"{where}{op} takes two values, not {len(units)}")
        return units[0] if units else Unit("1")
    if op in ("product", "ratio"):
        units = [Unit("1") if u.open else u for u in units]
    else:
        said = [u for u in units if not u.open]
        units = said or [ANY]
    if op == "product":
        result = units[0]
        for unit in units[1:]:
            result = result.times(unit)
        return result
    if op == "ratio":
        return units[0].times(units[1], -1)
    different = [u for u in units[1:] if not _same(u, units[0])]
    if different:
        problems.append(f"{where}{op} of values in different units ({units[0]} and {different[0]}): "
                        "bring them to one unit first (a product by a constant with a unit)")
    return units[0]


def _same(one: Unit, other: Unit) -> bool:
    """One unit however written (kg, (kg).(1), (kg)/(1), (g).(kg/g)): no conversion needed."""
    if one.open or other.open or (one.code, one.annotations) == (other.code, other.annotations):
        return True
    from adapter.fhir.units import UnitError
    try:
        return one.factor_to(other.code) == 1
    except UnitError:
        return False


def _powers(code: str, at: int, sign: int, found: collections.Counter[str]) -> int:
    """Count the annotations of the terms from `at` to the end or a closing bracket, each term
    with `sign` (negated for the term after a `/`); returns where it stopped."""
    term_sign = sign
    while at < len(code):
        char = code[at]
        if char == ")":
            return at + 1
        if char in "./":
            term_sign = -sign if char == "/" else sign
            at += 1
        elif char == "(":
            at = _powers(code, at + 1, term_sign, found)
        elif char == "{":
            end = code.find("}", at)
            if end < 0:
                from adapter.fhir.units import UnitError
                raise UnitError(f"{code!r}: the annotation opened by '{{' is not closed")
            found[code[at:end + 1]] += term_sign
            at = end + 1
        else:
            at += 1
    return at


def combine(op: str, numbers: list[decimal.Decimal]) -> decimal.Decimal:
    """One operation over numbers (operands already checked to be there). ZeroDivisionError for
    a ratio over 0."""
    functions: dict[str, Callable[[list[decimal.Decimal]], decimal.Decimal]] = {
        "sum": lambda ns: sum(ns, decimal.Decimal(0)),
        "difference": lambda ns: ns[0] - ns[1],
        "product": _product,
        "ratio": lambda ns: ns[0] / ns[1],
        "mean": lambda ns: sum(ns, decimal.Decimal(0)) / len(ns),
        "min": min, "max": max}
    return functions[op](numbers)


def _product(numbers: list[decimal.Decimal]) -> decimal.Decimal:
    result = decimal.Decimal(1)
    for number in numbers:
        result *= number
    return result
