"""UCUM units: is a unit valid, and the factor that turns a value in one unit into another.

ucumvert parses UCUM into pint units; its registry takes ~0.6 s to build (seconds on a busy
machine), and every command that loads a mapping asks a few dozen of these questions. So the
answers (valid or why not, factor or why not) are kept in a small JSON file under var/cache/,
named by a digest of what decides them (ucumvert's UCUM table and grammar, pint's definitions,
their versions, this module's source): when any of them changes, the name changes and the
answers are worked out again. The registry is built only for a question not answered there.
The file is JSON, not a pickle (reading it runs nothing), written 0600 in a 0700 folder, and
ignored unless this user owns it and nobody else may write it.
`FHIR_ADAPTER_UCUM_CACHE`: another folder for it, or `off`.
"""
from __future__ import annotations

import decimal
import functools
import hashlib
import json
import os
import pathlib
import stat
from typing import Any

from adapter.errors import AdapterError

__all__ = ["UnitError", "factor", "check_unit", "cache_path"]


class UnitError(AdapterError, ValueError):
    """Not a UCUM unit, or two units UCUM cannot convert between (the reason says which)."""

    status, code = 422, "value"


@functools.cache
def _registry() -> Any:
    from ucumvert import PintUcumRegistry  # heavy: only when a question is not answered in the cache
    return PintUcumRegistry()


@functools.cache
def _parsed(code: str) -> Any:
    registry = _registry()  # outside the try: a registry that cannot be built is no answer to keep
    try:
        return registry.from_ucum(code)
    except Exception as exc:  # ucumvert raises its own parse errors
        raise UnitError(f"{code!r} is not a UCUM unit") from exc


def _fingerprint() -> str:
    """A digest of everything the answers depend on."""
    import importlib.util
    digest = hashlib.sha256()
    for package, patterns in (("ucumvert", ("*.py", "*.txt", "*.lark", "vendor/*.xml")), ("pint", ("*_en.txt",))):
        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            return ""
        root = pathlib.Path(spec.origin).parent
        for pattern in patterns:
            for path in sorted(root.glob(pattern)):
                digest.update(f"{package}/{path.relative_to(root)}\0".encode() + path.read_bytes())
    digest.update(pathlib.Path(__file__).read_bytes())
    return digest.hexdigest()[:32]


def cache_path() -> pathlib.Path | None:
    """The answers' file for the installed UCUM table, or None when the cache is off."""
    folder = os.environ.get("FHIR_ADAPTER_UCUM_CACHE", "var/cache")
    if folder == "off":
        return None
    fingerprint = _fingerprint()
    return pathlib.Path(os.path.abspath(folder)) / f"ucum-{fingerprint}.json" if fingerprint else None


class _Answers:
    """The answers of earlier runs (a JSON object: question -> [ok, value or reason])."""

    def __init__(self) -> None:
        self.path = cache_path()
        self.known: dict[str, list[Any]] = {}
        if self.path is None:
            return
        try:
            with open(self.path, encoding="utf-8") as handle:
                info = os.fstat(handle.fileno())
                if info.st_uid != os.geteuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                    return  # someone else's, or writable by others: not trusted
                known = json.load(handle)
        except (OSError, ValueError):
            return  # none yet, or unreadable: worked out again and rewritten
        if isinstance(known, dict):
            self.known = {k: v for k, v in known.items() if isinstance(v, list) and len(v) == 2
                          and isinstance(v[0], bool) and isinstance(v[1], str)}

    def answer(self, question: str, work: Any) -> str:
        """The answer's value (a UnitError with its reason if it is one), worked out if not known."""
        if question not in self.known:
            try:
                self.known[question] = [True, str(work())]
            except UnitError as exc:
                self.known[question] = [False, str(exc)]
            self._save()
        ok, value = self.known[question]
        if not ok:
            raise UnitError(value)
        return str(value)

    def _save(self) -> None:
        if self.path is None:
            return
        from adapter.private import open_private, private_dir
        try:
            private_dir(self.path.parent)
            partial = self.path.with_name(f"{self.path.name}.{os.getpid()}")
            with open_private(partial, encoding="utf-8") as handle:
                json.dump(self.known, handle, sort_keys=True)
            os.replace(partial, self.path)  # readers see the old file or the new one, whole
        except OSError:
            pass  # a read-only working directory: answers are worked out again next time


@functools.cache
def _answers() -> _Answers:
    return _Answers()


@functools.cache
def check_unit(code: str) -> None:
    """UnitError if `code` is not UCUM (`cells/uL` is not: `/uL` is)."""
    def parse() -> str:
        _parsed(code)
        return ""
    _answers().answer(f"unit {code}", parse)


@functools.cache
def factor(source: str, target: str) -> decimal.Decimal:
    """Multiply a value in `source` by this to have it in `target` (both UCUM codes).

    Examples:
        >>> factor("mg/dL", "g/L"), factor("10*9/L", "10*9/L"), factor("/100", "%")
        (Decimal('0.01'), Decimal('1'), Decimal('1'))
    """
    if source == target:
        check_unit(source)
        return decimal.Decimal(1)
    return decimal.Decimal(_answers().answer(f"factor {source} -> {target}", lambda: _factor(source, target)))


def _factor(source: str, target: str) -> decimal.Decimal:
    registry = _registry()
    # ucumvert gives a quantity: a UCUM code's plain numbers are its magnitude (`/100` is 1/100
    # of one, `10*3/uL` is 1000 per uL, `mg/(24.h)` is 1/24 mg/h), not to be dropped.
    parsed = [_parsed(source), _parsed(target)]
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
