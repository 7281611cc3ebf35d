"""The protocol spec: the shipped one is valid; bad ones are refused with file, line and key."""
from __future__ import annotations

import pathlib

import pytest
import yaml

from adapter.protocol.spec import SpecError, load_spec
from conftest import ROOT

SPEC = ROOT / "mappings" / "protocol" / "ucmsc-cp-v1.yaml"


def test_the_shipped_spec_is_valid():
    spec = load_spec(SPEC)
    assert set(spec.data["arms"]) == {"arm-1", "arm-2"}
    assert spec.data["parameters"]["dose"]["unit"] == "10*6/kg"


def _bad(tmp_path: pathlib.Path, change) -> SpecError:
    data = yaml.safe_load(SPEC.read_text())
    change(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    return caught.value


def _line_of(path: pathlib.Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


@pytest.mark.parametrize("change,key,words", [
    (lambda d: d["parameters"].pop("dose"), "parameters", "'dose' is a required property"),
    (lambda d: d["parameters"]["dose"].update(unit="cells/kg"), "parameters.dose.unit", "is not one of"),
    (lambda d: d["arms"]["arm-1"].update(courses=0), "arms.arm-1.courses", "less than the minimum"),
    (lambda d: d["activities"]["adl"].update(kind="survey"), "activities.adl.kind", "is not one of"),
    (lambda d: d["activities"]["adl"].update(colour="blue"), "activities.adl.colour", "unknown key"),
    (lambda d: d["arms"]["arm-1"]["visits"][1].update(activities=["massage"]),
     "arms.arm-1.visits[1].activities[0]", "unknown activity 'massage'"),
    (lambda d: d["follow_up"][0].update(activities=["adl", "tea"]), "follow_up[0].activities[1]",
     "unknown activity 'tea'"),
    (lambda d: d["activities"]["gmfm"]["codes"][0].update(code="gmfm-99"),
     "activities.gmfm.codes[0].code", "local code 'gmfm-99' is not in local_codes"),
    (lambda d: d["baseline"].update(day=-20), "baseline.day", "outside its window"),
    (lambda d: d["arms"]["arm-1"]["visits"].reverse(), "arms.arm-1.visits", "must start at 0 and increase"),
    (lambda d: d["activities"]["intrathecal-injection"].pop("route"), "activities.intrathecal-injection",
     "'route' is a required property"),
    (lambda d: d["sites"]["site-a"].pop("location"), "sites.site-a", "'location' is a required property"),
    (lambda d: d["sites"].update({"Site E": {"name": "E", "location": "E"}}), "sites", "does not match"),
    (lambda d: d["sponsor"].update(id="site-b"), "sponsor.id", "the sponsor's id 'site-b' is also a site code"),
])
def test_bad_specs_name_file_line_and_key(tmp_path, change, key, words):
    error = _bad(tmp_path, change)
    problem = next((p for p in error.problems if f": {key}: " in p), None)
    assert problem, error.problems
    assert words in problem
    file, line, _ = problem.split(":", 2)
    assert file == str(tmp_path / "bad.yaml") and int(line) >= 1


def test_the_line_points_at_the_key(tmp_path):
    error = _bad(tmp_path, lambda d: d["activities"]["adl"].update(colour="blue"))
    [problem] = error.problems
    assert int(problem.split(":")[1]) == _line_of(tmp_path / "bad.yaml", "colour:")


def test_malformed_yaml_is_reported_with_its_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("protocol:\n  id: x\n  title: [unclosed\n")
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert caught.value.problems[0].startswith(f"{path}:")
