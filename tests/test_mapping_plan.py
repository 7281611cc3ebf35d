"""Rules compiled once (adapter/mapping/plan.py): the same results as running every rule on
every row, rejections, warnings and coverage included."""
from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

import pytest

from adapter.mapping.scopes import root_scope, unique_key
from adapter.mapping.fields import Scope, text_of
from adapter.mapping.run import _Duplicates, records
from adapter.mapping.sources import SourceRow
from adapter.mapping.spec import load_mapping

ROOT = pathlib.Path(__file__).resolve().parent.parent
SITES = ROOT / "mappings" / "sites"
KEY = b"k" * 16


def _unplanned(spec: Any) -> Any:
    """The spec with no rule skipped for its empty columns."""
    return dataclasses.replace(spec, rules=tuple(dataclasses.replace(r, idle=None, idle_seen=frozenset())
                                                 for r in spec.rules))


def _inputs(site: str) -> list[pathlib.Path]:
    return [ROOT / "fixtures" / "sites" / site / name for name in ("export.csv", "export.ndjson", "export.json")
            if (ROOT / "fixtures" / "sites" / site / name).exists()] + \
        sorted((SITES / "golden" / site).glob("input.*"))


@pytest.mark.parametrize("site", ["site-a", "site-b", "site-c", "site-d"])
def test_skipping_idle_rules_changes_nothing(site: str) -> None:
    spec = load_mapping(SITES / f"{site}.yaml")
    files = _inputs(site)
    assert files
    planned = list(records(spec, files, KEY, "2026-01-01T00:00:00Z"))
    plain = list(records(_unplanned(spec), files, KEY, "2026-01-01T00:00:00Z"))
    assert len(planned) == len(plain) > 0
    for (_, one), (_, other) in zip(planned, plain, strict=True):
        assert one == other  # resources, rejections, warnings, fired rules, coverage (seen)
    if spec.tabular:
        assert any(r.idle for r in spec.rules)
    rejected = sum(bool(result.rejections) for _, result in planned)
    assert site == "site-b" or rejected  # the fixtures' bad rows are in: rejections compared too


def _reference_holds(when: dict[str, Any] | None, scope: Scope) -> bool:
    """`when:` as the engine read it before it was compiled."""
    if not when:
        return True
    if "visit" in when:
        wanted = when["visit"] if isinstance(when["visit"], list) else [when["visit"]]
        if scope.visit not in wanted:
            return False
    for name, expected in when.get("equals", {}).items():
        if text_of(scope.get(name).raw).strip() != expected:
            return False
    return all(not scope.get(name).empty for name in when.get("present", []))


def test_compiled_when_holds_where_the_spec_says() -> None:
    spec = load_mapping(SITES / "site-a.yaml")
    rows = [{"redcap_repeat_instrument": instrument, "inj_date": date, "ae_onset": onset}
            for instrument in ("", "adverse_event", " adverse_event ") for date in ("", "2025-01-01", "  ")
            for onset in ("", "2025-02-02")]
    whens = [r.data.get("when") for r in spec.rules] + [{"present": ["inj_date", "ae_onset"]},
                                                         {"visit": ["baseline", "month-3"], "equals": {"inj_date": ""}}]
    from adapter.mapping.plan import compile_when
    for values in rows:
        for visit in ("baseline", "injection-1", "month-3", None):
            for when in whens:
                scope = Scope(values, True, visit=visit)
                compiled = compile_when({"when": when} if when else {})
                assert (compiled is None or compiled.holds(scope)) == _reference_holds(when, scope), (when, values, visit)


def test_record_key_worked_out_once_is_the_same_key() -> None:
    spec = load_mapping(SITES / "site-a.yaml")
    row = SourceRow("x.csv", 2, {"record_id": " A1 ", "redcap_event_name": "screening_arm_1",
                                 "redcap_repeat_instrument": "", "redcap_repeat_instance": ""})
    key = unique_key(spec, row)
    assert key == ("A1", "screening_arm_1", "", "")
    # the column fast path of a tabular source reads what the scope path reads
    names = spec.source.get("unique") or [spec.source["record_key"], spec.source["visit"]["field"]]
    scope = root_scope(spec, row)
    assert key == tuple(text_of(scope.get(name).raw).strip() for name in names)
    # the duplicate check hands the row on with that key, which the Provenance then reuses
    checked = _Duplicates(spec).check(row)
    assert isinstance(checked, SourceRow) and checked.key == key
