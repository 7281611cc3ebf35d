"""UCUM answers kept between runs (adapter/fhir/units.py): the same answers as the registry
gives, the registry not built when they are known, worked out again when the UCUM table changes,
and a file that others could have written is not trusted."""
from __future__ import annotations

import decimal
import importlib.util
import json
import os
import pathlib
import shutil
import stat
from collections.abc import Iterator
from typing import Any

import pytest

from adapter.fhir import units


def _fresh() -> None:
    for cached in (units._answers, units.check_unit, units.factor):
        cached.cache_clear()


@pytest.fixture
def cache(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[pathlib.Path]:
    monkeypatch.setenv("FHIR_ADAPTER_UCUM_CACHE", str(tmp_path / "cache"))
    _fresh()
    yield tmp_path / "cache"
    _fresh()


def _no_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse() -> Any:
        raise AssertionError("the registry was built although the answer was known")
    monkeypatch.setattr(units, "_registry", refuse)
    units._parsed.cache_clear()


def test_answers_are_kept_and_reused(cache: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert units.factor("mg/dL", "g/L") == decimal.Decimal("0.01")
    assert units.factor("[lb_av]", "kg") == decimal.Decimal("0.45359237")
    units.check_unit("g/L")
    with pytest.raises(units.UnitError, match="not a UCUM unit"):
        units.check_unit("cells/uL")
    with pytest.raises(units.UnitError, match="cannot convert"):
        units.factor("kg", "g/L")
    [path] = cache.glob("ucum-*.json")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(cache.stat().st_mode) == 0o700
    _fresh()
    _no_registry(monkeypatch)
    assert units.factor("mg/dL", "g/L") == decimal.Decimal("0.01")
    assert str(units.factor("[lb_av]", "kg")) == "0.45359237"
    units.check_unit("g/L")
    with pytest.raises(units.UnitError, match="not a UCUM unit"):
        units.check_unit("cells/uL")
    with pytest.raises(units.UnitError, match="cannot convert"):
        units.factor("kg", "g/L")


def test_worked_out_again_when_the_ucum_table_changes(cache: pathlib.Path, tmp_path: pathlib.Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    units.factor("mg/dL", "g/L")
    before = units.cache_path()
    assert before is not None and before.exists()
    real = importlib.util.find_spec("ucumvert")
    assert real is not None and real.origin is not None
    copy = tmp_path / "ucumvert"
    shutil.copytree(pathlib.Path(real.origin).parent, copy, ignore=shutil.ignore_patterns("__pycache__"))
    table = copy / "vendor" / "ucum-essence.xml"
    table.write_bytes(table.read_bytes() + b"\n<!-- a new edition -->\n")
    find_spec = importlib.util.find_spec

    class Spec:
        origin = str(copy / "__init__.py")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: Spec() if name == "ucumvert" else find_spec(name, *a))
    _fresh()
    after = units.cache_path()
    assert after is not None and after != before and not after.exists()
    assert units.factor("mg/dL", "g/L") == decimal.Decimal("0.01")  # worked out with the registry
    assert after.exists()


def test_a_file_others_could_write_is_not_trusted(cache: pathlib.Path) -> None:
    path = units.cache_path()
    assert path is not None
    cache.mkdir(mode=0o700)
    path.write_text(json.dumps({"factor mg/dL -> g/L": [True, "1000"]}))
    os.chmod(path, 0o666)
    assert units.factor("mg/dL", "g/L") == decimal.Decimal("0.01")
    assert json.loads(path.read_text())["factor mg/dL -> g/L"] == [True, "0.01"]  # rewritten, 0600
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FHIR_ADAPTER_UCUM_CACHE", "off")
    _fresh()
    assert units.cache_path() is None
    assert units.factor("mg/dL", "g/L") == decimal.Decimal("0.01")
    _fresh()
