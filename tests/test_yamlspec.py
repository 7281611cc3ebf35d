"""YAML specs (adapter/yamlspec.py): aliases are bounded, so a few lines cannot stand for billions
of values (a "billion laughs" mapping or protocol grew to 3.2 GB and a MemoryError)."""
from __future__ import annotations

import resource
import time

import pytest

from adapter.mapping.spec import load_mapping
from adapter.protocol.spec import load_spec
from adapter.yamlspec import MAX_ALIASES, SpecError

LAUGHS = "\n".join(['lol0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
                   + [f"lol{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 9)]) + "\n"


@pytest.mark.parametrize("load", [load_mapping, load_spec], ids=["mapping", "protocol"])
@pytest.mark.parametrize("text, says", [
    (LAUGHS + "mapping: *l8\n", "expands to more than 100,000 values"),
    ("a: &a [1]\n" + "".join(f"b{i}: *a\n" for i in range(MAX_ALIASES + 1)), f"more than {MAX_ALIASES} aliases"),
    ("a: &a [1, *a]\n", "a cycle"),
], ids=["billion laughs", "many aliases", "cycle"])
def test_alias_bombs_are_refused_before_anything_walks_them(tmp_path, load, text, says):
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    with pytest.raises(SpecError) as refused:
        load(path)
    assert time.perf_counter() - started < 2
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KB: nothing expanded
    assert refused.value.problems == [f"{path}:1: (YAML): {refused.value.problems[0].split('(YAML): ')[1]}"]
    assert says in refused.value.problems[0]
