"""The shape-cached validator gives `validate`'s verdict on every resource (issue 30): it runs
where validate would cost most, on a site's files at the centre (hostile input) and on an
ingest's output, so a resource it lets through that validate refuses would be a hole.

Differential: every scalar of every valid R4 example and golden site resource, replaced by
values of the same JSON type (so the shape stays the one the validator has seen valid, and only
the cached path answers), must be refused exactly when validate refuses it, at the same
elements. Then the broken-resource set of bench/validation.py and hostile shapes."""
from __future__ import annotations

import copy
import pathlib
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from adapter.fhir.jsonio import parse
from adapter.fhir.validation import ShapeValidator, signature, validate
from bench.validation import BROKEN

ROOT = pathlib.Path(__file__).resolve().parent.parent
STRINGS = ["", " ", "x ", "a b", "a\u0000b", "2026-02-30", "2026-13-01", "2026-02-29T10:00:00Z", "2024-02-29",
           "2026-01-01T10:00:00", "2026-01-01T23:59:60Z", "2026-04-31", "1900-02-29", "25:00:00", "10:00:00",
           "http://x y", "urn:uuid:1", "Patient/1", "#x", "ABC-1.2", "x" * 70, "\t", "é", "final", "1.0", "-1",
           "<div>x</div>", "aGVsbG8=", "not base64!", "abc", "2026", "2026-01", "0000-01-01",
           "2026-01-01T10:00:00+15:00", "2026-01-01T10:00:00.123456789Z"]
NUMBERS: list[Any] = [0, -1, 2 ** 31, 2 ** 40, parse(b"1.0"), parse(b"0.5"), parse(b"-0.0"), parse(b"1e299")]


def _valid_resources() -> list[dict[str, Any]]:
    found = [orjson.loads(p.read_bytes()) for p in sorted((ROOT / "fixtures" / "r4-examples").glob("*.json"))]
    for golden in sorted((ROOT / "mappings" / "sites" / "golden").glob("*/expected.ndjson")):
        seen: set[tuple[Any, ...]] = set()
        for line in golden.read_bytes().splitlines():
            resource = orjson.loads(line)
            if (shaped := signature(resource)) not in seen:  # one of each shape: the mutations do the rest
                seen.add(shaped)
                found.append(resource)
    return [parse(orjson.dumps(r)) for r in found if not validate(parse(orjson.dumps(r)))]


def _leaves(node: Any, loc: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, (*loc, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _leaves(value, (*loc, index))
    else:
        yield loc, node


def _candidates(value: Any, turn: int) -> list[Any]:
    """A few values of the same JSON type for one scalar, rotating through the lists (every
    value gets its turn over the examples; all of them everywhere took 9 minutes), and always a
    day no calendar has where the scalar was a date."""
    if isinstance(value, bool):
        return []
    pool = STRINGS if isinstance(value, str) else NUMBERS
    picked = [pool[(turn * 3 + i) % len(pool)] for i in range(3 if isinstance(value, str) else 2)]
    if isinstance(value, str) and value[:4].isdigit() and value[4:5] == "-":
        picked.append(value[:4] + "-02-30" + value[10:] if len(value) >= 10 else value[:4] + "-13")
    return picked


def _mutants(resource: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for turn, (loc, value) in enumerate(_leaves(resource)):
        if loc[-1] == "resourceType":
            continue
        for candidate in _candidates(value, turn + len(str(resource.get("id")))):
            mutant = copy.deepcopy(resource)
            node = mutant
            for part in loc[:-1]:
                node = node[part]
            node[loc[-1]] = candidate
            if signature(mutant) == signature(resource):
                yield mutant


def _verdict(issues: list[Any]) -> set[str]:
    return {i.expression or "" for i in issues}


@pytest.mark.slow  # ~50 s: 31,112 mutants, each validated twice
def test_the_cached_path_refuses_exactly_what_validate_refuses():
    resources = _valid_resources()
    assert len(resources) > 150
    compared = refused = 0
    for resource in resources:
        check = ShapeValidator()
        assert check(resource) == []
        for mutant in _mutants(resource):
            full, cached = validate(mutant), check(mutant)
            assert bool(cached) == bool(full), (mutant, [i.diagnostics for i in full], cached)
            assert _verdict(cached) == _verdict(full), (mutant, full, cached)
            compared += 1
            refused += bool(full)
    assert compared > 30_000 and refused > 7_500  # measured 31,112 and 7,875: none skipped


@pytest.mark.parametrize("label, broken", BROKEN, ids=[label for label, _ in BROKEN])
def test_the_broken_resource_set_is_refused_alike(label, broken):
    """Each broken resource, after a valid resource of its shape where one exists (so that the
    cached path answers whenever it can), gets validate's verdict and elements."""
    check = ShapeValidator()
    for twin in _twins(broken):
        check(twin)
    assert _verdict(check(broken)) == _verdict(validate(broken)) != set()


def _twins(broken: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Valid resources of the broken one's shape, found by putting back the values of bench's
    valid Observation (`_OBS`) where the shapes agree."""
    from bench.validation import _OBS
    if signature(broken) == signature(_OBS):
        yield _OBS
    for loc, _ in _leaves(broken):
        twin = copy.deepcopy(broken)
        node = twin
        for part in loc[:-1]:
            node = node[part]
        for candidate in ("final", "2026-03-01", "o1", "x", 1):
            node[loc[-1]] = candidate
            if signature(twin) == signature(broken) and not validate(twin):
                yield copy.deepcopy(twin)


def test_hostile_shapes_never_take_a_valid_shapes_place():
    check = ShapeValidator()
    patient = {"resourceType": "Patient", "id": "p1", "gender": "female"}
    assert check(patient) == []
    # another type of the very same keys and scalar types: its own shape
    assert _verdict(check({**patient, "resourceType": "Basic"})) == _verdict(validate({**patient, "resourceType": "Basic"}))
    assert check({**patient, "resourceType": "NoSuchType"})
    # a contained resource's type is shape too; one the value layers cannot check is never cached
    plan = {"resourceType": "CarePlan", "status": "active", "intent": "plan", "subject": {"reference": "Patient/p1"},
            "contained": [{"resourceType": "CareTeam", "id": "t", "name": "x"}]}
    assert check(plan) == [] and check(plan) == []
    hostile = copy.deepcopy(plan)
    hostile["contained"][0]["name"] = ""
    assert _verdict(check(hostile)) == _verdict(validate(hostile)) != set()
    swapped = copy.deepcopy(plan)
    swapped["contained"][0]["resourceType"] = "Group"
    assert _verdict(check(swapped)) == _verdict(validate(swapped)) != set()
    # nested past the stack: refused as validate refuses it, never a RecursionError
    deep: dict[str, Any] = {"url": "http://x.org/e"}
    for _ in range(5_000):
        deep = {"url": "http://x.org/e", "extension": [deep]}
    nested = {**patient, "extension": [deep]}
    assert _verdict(check(nested)) == _verdict(validate(nested)) != set()
